"""``normalization``: the flow's density integrates to 1.

- **1–2 dims, quadrature.** A box ``B`` is fitted to samples of the flow (per-axis quantiles ``QUANTILE`` and
  ``1 − QUANTILE``). ``∫_B p`` by Simpson's rule is compared with the flow's own mass in ``B``, the fraction
  ``P̂`` of ``MASS_SAMPLES`` fresh samples that fall in it (a box never holds all the mass, so ``|∫p − 1|`` would be
  fragile). Pass if ``|∫_B p − P̂| ≤ 5·SE(P̂) + δ_quad + slack``, with ``SE(P̂) = √(P̂(1 − P̂)/n)`` (CLT) and
  ``δ_quad`` the quadrature error estimate; *inconclusive* if ``δ_quad > MAX_QUADRATURE_ERROR`` (the density is not
  resolved on the grid).
- **More dims, importance sampling.** ``Z = E_q[p/q]`` with a Student-t proposal fitted to the flow's samples.
  Pass if ``|Z − 1| ≤ 5·SE + slack``, only when the effective sample size is at least ``MIN_ESS_FRACTION`` of the
  draws; below that the standard error is not trustworthy and the result is *inconclusive*, never a silent pass.

A conditional flow is a density in ``x`` at each context: the check runs at one drawn context ``c`` (samples and
``log_prob`` at ``c``); ``context_dependence`` repeats it at another.

``slack`` is the check's tolerance (a FlowSpec may override it, with a reason). Every draw comes from fixed seeds
derived from the case, so a run is reproducible; at 5 standard errors a correct flow fails with probability below
one in a million per case.

**Power.** The smallest error each case would detect is its tolerance (``5·SE + δ + slack``), reported as
``detectable``. The sample sizes grow with the profile (``IS_SAMPLES``): under ``thorough``, a density off by 2 %
(``Z = 1.02``) fails up to d = 16 (measured SE of ``stacked`` at d = 16: 0.015 with 20 000 draws, so ≈ 0.0034
with 400 000; ``tests/test_checks_power.py`` plants that error).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import torch
from torch import Tensor

from flowlab import FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    ImportanceEstimate,
    LogDensity,
    Status,
    box_mass,
    box_quadrature,
    build_case_flow,
    case_context,
    importance_sampling,
    seeded,
)

QUANTILE = 0.005
FIT_SAMPLES = 4096
MASS_SAMPLES = 40_000
POINTS_PER_AXIS = {1: 2001, 2: 201}
MAX_QUADRATURE_ERROR = 0.01
#: importance-sampling draws per profile (see Power above)
IS_SAMPLES = {"quick": 20_000, "thorough": 400_000}
MIN_ESS_FRACTION = 0.05
Z_SCORE = 5.0


def run(spec: FlowSpec, case: Case) -> CheckResult:
    return normalization_at(spec, case, salt=0)


def normalization_at(spec: FlowSpec, case: Case, *, salt: int) -> CheckResult:
    """The check on ``case``; a conditional flow at the one context ``case_context(case, salt, batch=1)``."""
    case = replace(case, dtype="float64")
    flow = build_case_flow(spec, case)
    slack = CHECK.tolerance_for(spec)
    context = case_context(case, salt, batch=1)
    at = None if context is None else context[0]
    log_prob = partial(flow.log_prob, context=at)
    with torch.no_grad(), seeded(case.seed, case.device):
        fit = flow.sample(FIT_SAMPLES, at)
        if case.dim <= 2:
            result = _quadrature(log_prob, fit, flow.sample(MASS_SAMPLES, at), case, slack)
        else:
            generator = torch.Generator().manual_seed(case.seed)
            samples = IS_SAMPLES.get(case.profile, IS_SAMPLES["quick"])
            result = _importance(importance_sampling(log_prob, fit, samples, generator), slack)
    if at is not None:
        result.data["context"] = at.cpu().tolist()
        result.detail = f"at context {[round(v, 3) for v in at.tolist()]}: {result.detail}"
    return result


def _importance(estimate: ImportanceEstimate, slack: float) -> CheckResult:
    error = abs(estimate.normalizer - 1)
    tolerance = Z_SCORE * estimate.standard_error + slack
    data = {
        "Z": estimate.normalizer,
        "standard_error": estimate.standard_error,
        "effective_sample_size": estimate.effective_sample_size,
        "samples": estimate.samples,
    }
    summary = (
        f"importance sampling: Z = {estimate.normalizer:.4f} ± {estimate.standard_error:.1e} (SE), "
        f"ESS {estimate.effective_sample_size:.0f} of {estimate.samples}"
    )
    if not estimate.effective_sample_size >= MIN_ESS_FRACTION * estimate.samples:
        detail = f"{summary}: the ESS is below {MIN_ESS_FRACTION:.0%} of the draws, so the SE cannot be trusted"
        return CheckResult("inconclusive", max_error=error, tolerance=tolerance, detail=detail, data=data)
    status: Status = "passed" if error <= tolerance else "failed"
    detail = f"{summary}; |Z − 1| = {error:.2e} vs {Z_SCORE:g}·SE + {slack:g} = {tolerance:.2e}"
    return CheckResult(status, max_error=error, tolerance=tolerance, detail=detail, data=data, detectable=tolerance)


def _quadrature(log_prob: LogDensity, fit: Tensor, mass_samples: Tensor, case: Case, slack: float) -> CheckResult:
    low = torch.quantile(fit, QUANTILE, dim=0)
    high = torch.quantile(fit, 1 - QUANTILE, dim=0)
    quadrature = box_quadrature(log_prob, low, high, POINTS_PER_AXIS[case.dim])
    mass, standard_error = box_mass(mass_samples, low, high)
    error = abs(quadrature.integral - mass)
    tolerance = Z_SCORE * standard_error + quadrature.error_estimate + slack
    data = {
        "box_low": low.cpu().tolist(),
        "box_high": high.cpu().tolist(),
        "integral": quadrature.integral,
        "quadrature_error_estimate": quadrature.error_estimate,
        "sample_mass": mass,
        "sample_mass_standard_error": standard_error,
    }
    summary = (
        f"∫_box p = {quadrature.integral:.4f} (±{quadrature.error_estimate:.1e}, {quadrature.points_per_axis} points "
        f"per axis) vs the samples' mass in the box {mass:.4f} ± {standard_error:.1e} (SE)"
    )
    if not quadrature.error_estimate <= MAX_QUADRATURE_ERROR:
        detail = f"{summary}: the density is not resolved on the grid"
        return CheckResult("inconclusive", max_error=error, tolerance=tolerance, detail=detail, data=data)
    status: Status = "passed" if error <= tolerance else "failed"
    detail = f"{summary}; difference {error:.2e} vs tolerance {tolerance:.2e}"
    return CheckResult(status, max_error=error, tolerance=tolerance, detail=detail, data=data, detectable=tolerance)


CHECK = CheckSpec(
    name="normalization",
    summary="the density integrates to 1 (quadrature in 1–2 dims, importance sampling above)",
    run=run,
    tolerance=1e-3,
    max_examples=2,
)
