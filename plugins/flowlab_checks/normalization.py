"""``normalization``: the flow's density integrates to 1, with the flow's own sampler as the proposal.

``∫ q = Z_b · E_z[q(f(z)) / r(f(z))] + ∫_{A^c} q`` (the identity and what it rests on: ``flowlab.checks.flow_mass``
and ``docs/checks.md``), estimated from ``SAMPLES[profile]`` base draws ``z`` (seeded by the case):

1. ``Z_b``, the base's own mass over its support (``FlowSpec.base_support_at``; a product quadrature, or importance
   sampling for a base that is not a product), and the test that the base's sampler draws from its density (the
   mean of ``log p_b`` over its draws vs its expectation: within ``Z_SCORE`` standard errors);
2. ``E[q/r]``: ``x = f(z)`` forward with ``log r = log p_b(z) − log|det ∂x/∂z|``, ``log q = flow.log_prob(x)``
   (inverse), ``q = 0`` outside the flow's support. The log-det is the flow's own where ``logdet`` (``ode_logdet``
   for an ODE flow) compares it with autograd; for a discrete flow that declares a stochastic log-det (an
   estimator, whose eval-mode value this check does not lean on), or a forward log-det that changes from call to
   call, it is ``slogdet`` of the autograd Jacobian;
3. ``∫_{A^c} q``: ``SAMPLES // OUTSIDE_SHARE`` draws ``y`` from a heavy-tailed Student-t fitted to the samples,
   carried onto the flow's support (``FlowSpec.support``); ``f(f⁻¹(y)) = y`` (within ``invertibility``'s tolerance
   for this flow, at least ``ROUND_TRIP``) means ``y`` is in the image ``A`` and adds nothing; elsewhere
   ``q(y)/g(y)`` counts.

Pass if ``|Z − 1| + u ≤ Z_SCORE·SE + δ + slack`` (``SE`` the CLT standard error of ``Z``, ``δ`` the base
quadrature's error estimate, ``slack`` the check's tolerance, a FlowSpec may override it with a reason) and the
base's sampler test passes; never inconclusive. ``u`` is the share of the flow's own samples where ``x``, ``r`` or
``q`` is NaN or ``+inf``: those are counted at ratio 1, reported with their share of the mass, and fail the check
only when that share exceeds the tolerance. Draws outside the image where ``q`` is not finite are reported, not
counted.

**Power** (``detectable``): a constant error ``Z ≠ 1`` is seen when ``|Z − 1| > Z_SCORE·SE + δ + slack`` (``SE`` ≈ 0
for a correct flow); an error confined to a region of the flow's mass ``p`` shows in about ``p·n`` of the ``n``
ratios, and is detected (with probability ≥ ½) from ``|Z − 1| ≥ (Z_SCORE·SE + δ + slack) / (1 − Z_SCORE·√((1 − p) /
(p·n)))``; ``detectable`` states it at ``p = REGION_SHARE``. A conditional flow is checked at one drawn context
(``context_dependence`` repeats it at another).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from flowlab import Flow, FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    FlowMass,
    Status,
    build_case_flow,
    case_context,
    estimate_flow_mass,
    forward_logdet_is_deterministic,
    seeded,
)
from flowlab_checks import invertibility

#: base draws per case, per profile (see Power above)
SAMPLES = {"quick": 4096, "thorough": 16_384}
#: one draw outside the sampler's image per ``OUTSIDE_SHARE`` samples
OUTSIDE_SHARE = 8
#: the share of the mass at which ``detectable`` is stated for an error confined to a region
REGION_SHARE = 0.1
Z_SCORE = 5.0
#: the smallest round-trip error (mixed relative) that puts a draw off the sampler's image: a map that is not onto
#: misses by O(1), while far from its samples an ill-conditioned flow misses by rounding (maf with a random
#: initialisation, d = 16: up to 2.4e-7; at d = 64 by more, but only at draws where its log q is below −1e15, whose
#: q adds nothing when counted)
ROUND_TRIP = 1e-3
#: rows on which two forward calls are compared (a forward log-det that changes is not used)
DETERMINISM_ROWS = 8


def run(spec: FlowSpec, case: Case) -> CheckResult:
    return normalization_at(spec, case, salt=0)


def normalization_at(spec: FlowSpec, case: Case, *, salt: int) -> CheckResult:
    """The check on ``case``; a conditional flow at the one context ``case_context(case, salt, batch=1)``."""
    case = replace(case, dtype="float64")
    flow = build_case_flow(spec, case)
    flow.validate = False  # NaN rows are counted and reported, not raised
    context = case_context(case, salt, batch=1)
    at = None if context is None else context[0]
    rows = SAMPLES.get(case.profile, SAMPLES["quick"])
    generator = torch.Generator().manual_seed(case.seed * 1_000_003 + salt)
    with torch.no_grad(), seeded(case.seed, case.device):
        draws = flow.base.sample((rows,))
    mass = estimate_flow_mass(
        flow,
        draws,
        at,
        autograd=_autograd_logdet(spec, flow, draws, at),
        base_support=spec.base_support_at(case.dim),
        outside_rows=rows // OUTSIDE_SHARE,
        round_trip_tolerance=max(invertibility.CHECK.tolerance_for(spec), ROUND_TRIP),
        generator=generator,
    )
    result = _verdict(mass, CHECK.tolerance_for(spec))
    if at is not None:
        result.data["context"] = at.cpu().tolist()
        result.detail = f"at context {[round(v, 3) for v in at.tolist()]}: {result.detail}"
    return result


def _autograd_logdet(spec: FlowSpec, flow: Flow, draws: torch.Tensor, context: torch.Tensor | None) -> bool:
    """Whether ``r`` needs the autograd log-det: the flow declares its log-det an estimate (a discrete flow; an ODE
    flow's eval mode is held to its exact trace by ``ode_logdet``), or its forward log-det changes from call to
    call."""
    if spec.kind == "discrete" and spec.logdet == "stochastic":
        return True
    return not forward_logdet_is_deterministic(flow, draws[:DETERMINISM_ROWS], context)


def _verdict(mass: FlowMass, slack: float) -> CheckResult:
    base, inside, outside, autograd = mass.base, mass.inside, mass.outside, mass.autograd
    base_z = math.exp(base.log_normalizer)
    mean = inside.ratio.value
    normalizer = mass.normalizer
    variance = (base_z * inside.ratio.standard_error) ** 2 + outside.ratio.standard_error**2
    systematic = 0.0
    if base.method == "importance sampling":
        variance += (base_z * mean * base.error) ** 2
    else:
        systematic = abs(base_z * mean) * base.error
    standard_error = math.sqrt(variance)
    rows = inside.ratio.rows
    unresolved = inside.unresolved / rows
    error = abs(normalizer - 1) + unresolved
    tolerance = Z_SCORE * standard_error + systematic + slack
    dilution = 1 - Z_SCORE * math.sqrt((1 - REGION_SHARE) / (REGION_SHARE * rows))
    detectable = tolerance / dilution if dilution > 0 else math.inf
    sampler_z = abs(base.sampler_shift) / base.sampler_standard_error if base.sampler_standard_error > 0 else 0.0
    data = {
        "Z": normalizer,
        "standard_error": standard_error,
        "base_normalizer": base_z,
        "base_method": base.method,
        "base_error": base.error,
        "base_sampler_z_score": sampler_z,
        "sampler_mean_ratio": mean,
        "sampler_standard_error": inside.ratio.standard_error,
        "samples": rows,
        "unresolved_samples": inside.unresolved,
        "largest_log_ratio": inside.largest_log_error,
        "logdet": "autograd" if autograd else "flow",
        "outside_mass": outside.ratio.value,
        "outside_draws": outside.ratio.rows,
        "outside_image": outside.outside,
        "outside_unresolved": outside.unresolved,
        "detectable_constant": tolerance,
    }
    summary = (
        f"Z = Z_b·E[q/r] + ∫outside q = {base_z:.6g}·{mean:.6f} + {outside.ratio.value:.2g} = {normalizer:.6f} "
        f"± {standard_error:.1e} (SE); Z_b by {base.method}"
        f"{f' (±{base.error:.1e})' if base.error else ''}; E[q/r] over {rows} samples of the flow (r from "
        f"{'the autograd Jacobian' if autograd else 'the flow'}'s forward log-det, largest |log q − log r| "
        f"{inside.largest_log_error:.1e}); {outside.outside} of {outside.ratio.rows} heavy-tailed draws outside "
        "the sampler's image"
    )
    notes = []
    if inside.unresolved:
        notes.append(
            f"x, r or log_prob is NaN or inf at {inside.unresolved} of the flow's {rows} samples (a share "
            f"{unresolved:.2g} of its mass, counted at ratio 1 and added to the error)"
        )
    if outside.unresolved:
        notes.append(
            f"log_prob is NaN or inf (or the flow raised) at {outside.unresolved} heavy-tailed draws outside the "
            f"sampler's image (a share {outside.unresolved / max(outside.ratio.rows, 1):.2g} of those draws, "
            "not counted)"
        )
    verdict = (
        f"|Z − 1|{' + share' if inside.unresolved else ''} = {error:.2e} vs {Z_SCORE:g}·SE"
        f"{' + quadrature error' if systematic else ''} + {slack:g} = {tolerance:.2e}; detects |Z − 1| ≥ "
        f"{tolerance:.1e} (≥ {detectable:.1e} spread over {REGION_SHARE:.0%} of the mass)"
    )
    detail = "; ".join([summary, *notes, verdict])
    if sampler_z > Z_SCORE:
        detail = (
            f"the base's sampler does not draw from its density: the mean log p_b of its draws is off by "
            f"{base.sampler_shift:.3g} ({sampler_z:.1f} standard errors) from its expectation under p_b; {detail}"
        )
        return CheckResult("failed", max_error=sampler_z, tolerance=Z_SCORE, detail=detail, data=data)
    status: Status = "passed" if error <= tolerance else "failed"
    return CheckResult(status, max_error=error, tolerance=tolerance, detail=detail, data=data, detectable=detectable)


CHECK = CheckSpec(
    name="normalization",
    summary="the density integrates to 1 (the flow's own sampler as the proposal, the base's mass on its own)",
    run=run,
    tolerance=1e-3,
    max_examples=2,
)
