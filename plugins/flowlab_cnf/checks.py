"""Property checks of ODE flows, registered for the conformance kit (``flowlab check`` runs them).

- ``ode_invertibility``: ``inverse(forward(z)) = z`` and the two log-dets cancel, within a multiple of the solver's
  ``rtol``/``atol`` (the error is measured in units of ``atol + rtol·|value|``).
- ``ode_logdet``: the log-det of the flow map in both directions vs ``slogdet`` of the autograd Jacobian of the
  odeint solution, in float64 at ``rtol = atol = 1e-9`` (measured error ≤ 1e-8; tolerance 1e-7).
- ``ode_normalization``: in 2D, ``∫ exp(log_prob) dx = 1`` by quadrature on a grid (exact trace at evaluation).
- ``hutchinson_estimator``: on the Jacobian ``A`` of the field at one point, the estimator is unbiased (z-score of
  the mean), its variance matches theory (Gaussian ``‖A‖²_F + tr(A²)``, Rademacher minus ``2 Σ A_ii²``), and a
  probe set whose mean ``v vᵀ`` is exactly ``I`` gives exactly ``tr A``.
- ``hutchinson_fixed_probe``: a whole Hutchinson solve with a fixed probe set averages to the exact-trace log-det,
  and costs about as many evaluations: a probe redrawn inside the solve fails both.
- ``hutchinson_solve_unbiased``: the log-dets of training-mode solves, with the probes the flow draws itself, average
  to the exact log-det (z-score of the mean over ``SOLVE_COPIES`` copies of a point): a bias anywhere between the
  flow's own draw and the integral fails, whatever the estimator object says of itself.

They apply to every continuous flow (``FlowSpec.kind``), the Hutchinson ones to every continuous flow with a
stochastic log-det, by what the flow is: what a check needs is asked of the flow itself
(:mod:`flowlab.checks.continuous`): solver tolerances it can pin (build options ``rtol``/``atol``, or a
:class:`flowlab.ode.ContinuousFlow`'s solver), a trace estimator to probe and a solve with a given probe (the
protocol). A flow that lacks them is *uncovered*, never silently passed.
Statistical checks run on few cases with fixed seeds; their bounds are 5 standard errors from the central limit
theorem, and each result states the smallest error it would have detected (``detectable``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from flowlab import Flow, FlowlabError, FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    Uncovered,
    build_case_bijector,
    build_ode,
    case_points,
    continuous_protocol,
    float64_cpu,
    solver_settable,
)
from flowlab.ode import continuous_flow

Z_BOUND = 5.0


def continuous(spec: FlowSpec) -> bool | str:
    return True if spec.kind == "continuous" else "applies to continuous (ODE) flows"


def stochastic_continuous(spec: FlowSpec) -> bool | str:
    if spec.kind != "continuous" or spec.logdet != "stochastic":
        return "applies to continuous flows with a stochastic (Hutchinson) log-det"
    return True


def continuous_2d(spec: FlowSpec) -> bool | str:
    if spec.kind != "continuous" or spec.min_dim > 2:
        return "applies to continuous flows that exist in 2D"
    return True


def _exact_at_eval(module: Any) -> CheckResult | None:
    module.eval()
    ode = continuous_flow(module)
    if ode is not None and ode.trace_estimator.stochastic:
        return CheckResult("skipped", detail="the trace is stochastic in eval mode; build with eval_trace='exact'")
    return None


def _solver_failure(exc: FlowlabError, tolerance: float) -> CheckResult:
    return CheckResult("failed", math.inf, tolerance, f"the solve failed: {exc}")


# -- ode_invertibility ---------------------------------------------------------------------------------------------
def run_invertibility(spec: FlowSpec, case: Case) -> CheckResult:
    tolerance = CHECK_INVERTIBILITY.tolerance_for(spec)
    rtol = float(case.options.get("rtol", 1e-6))
    atol = float(case.options.get("atol", 1e-6))
    if case.options.get("method", "dopri5") not in ("dopri5", "bosh3", "adaptive_heun"):
        return CheckResult("skipped", detail="a fixed-step method has no rtol/atol to tie the tolerance to")
    module: Any = build_ode(spec, case, rtol=rtol, atol=atol, method=case.options.get("method", "dopri5"))
    skipped = _exact_at_eval(module)
    if skipped is not None:
        return skipped
    z = case_points(case)
    try:
        with torch.no_grad():
            x, forward_ladj = module(z)
            back, inverse_ladj = module.inverse(x)
    except FlowlabError as exc:
        return _solver_failure(exc, tolerance)
    error = ((back - z).abs() / (atol + rtol * z.abs())).max()
    ladj = forward_ladj.abs().maximum(inverse_ladj.abs())
    ladj_error = ((forward_ladj + inverse_ladj).abs() / (atol + rtol * ladj)).max()
    worst = float(torch.maximum(error, ladj_error))
    return CheckResult(
        "passed" if worst <= tolerance else "failed",
        worst,
        tolerance,
        f"round-trip error {float(error):.3g} and log-det mismatch {float(ladj_error):.3g}, in units of "
        f"atol + rtol·|value| (rtol={rtol:g}, atol={atol:g}, {case.dtype})",
        {"nfe": None if (ode := continuous_flow(module)) is None else ode.nfe},
    )


CHECK_INVERTIBILITY = CheckSpec(
    name="ode_invertibility",
    summary="inverse(forward(z)) = z and the log-dets cancel, within a multiple of the solver's rtol/atol",
    run=run_invertibility,
    applies=continuous,
    needs=solver_settable,
    # global error of two adaptive solves in units of the local tolerance; it depends on the method's order
    # (measured over 36 cases each: dopri5 ≤ 50, bosh3 ≤ 500, adaptive_heun ≤ 1)
    tolerance=2000.0,
)


# -- ode_logdet ----------------------------------------------------------------------------------------------------
def solve_with_reference(fn: Any, point: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One solve ``fn(point)`` of one row with autograd on: its end point, the log-det the flow integrated, and the
    reference ``log|det ∂end/∂point|`` of the autograd Jacobian of that end point (``d`` backward passes through the
    very solve: a separate solve for each would compute the same numbers twice). One row: an adaptive solve couples
    the rows of a batch."""
    y = point.detach().requires_grad_(True)
    with torch.enable_grad():
        end, ladj = fn(y)
        dim = end.shape[1]
        grads = [torch.autograd.grad(end[0, i], y, retain_graph=i + 1 < dim, allow_unused=True)[0] for i in range(dim)]
    matrix = torch.stack([torch.zeros_like(y[0]) if g is None else g[0] for g in grads])
    return end.detach(), ladj.detach(), torch.linalg.slogdet(matrix).logabsdet.reshape(1)


#: the reference Jacobian costs d backward passes through a long float64 solve; larger d adds time, not coverage
MAX_LOGDET_DIM = 4


def run_logdet(spec: FlowSpec, case: Case) -> CheckResult:
    tolerance = CHECK_LOGDET.tolerance_for(spec)
    dim = min(case.dim, MAX_LOGDET_DIM)
    case = float64_cpu(case, dim)
    module: Any = build_ode(spec, case, rtol=1e-9, atol=1e-9, adjoint=False)
    skipped = _exact_at_eval(module)
    if skipped is not None:
        return skipped
    z = case_points(case, batch=1)
    try:
        x, forward_ladj, forward_ref = solve_with_reference(module, z)
        _, inverse_ladj, inverse_ref = solve_with_reference(module.inverse, x)
    except FlowlabError as exc:
        return _solver_failure(exc, tolerance)
    forward_error = float((forward_ladj - forward_ref).abs().max())
    inverse_error = float((inverse_ladj - inverse_ref).abs().max())
    worst = max(forward_error, inverse_error)
    return CheckResult(
        "passed" if worst <= tolerance else "failed",
        worst,
        tolerance,
        f"|log-det − slogdet(autograd Jacobian of the solution)|: forward {forward_error:.3g}, inverse "
        f"{inverse_error:.3g} (d={dim}, float64, rtol=atol=1e-9); forward log-dets {forward_ladj.tolist()} vs "
        f"{forward_ref.tolist()}",
    )


CHECK_LOGDET = CheckSpec(
    name="ode_logdet",
    summary="log-det of the ODE flow map = slogdet of the autograd Jacobian of the odeint solution (float64)",
    run=run_logdet,
    applies=continuous,
    needs=solver_settable,
    # the generic logdet compares the same two quantities at the flow's own solver tolerance (1e-2 for the built-in
    # ODE flows) and cost 10 s of cnf's 49 s: this one holds them to 1e-7 at rtol = atol = 1e-9
    supersedes=frozenset({"logdet"}),
    tolerance=1e-7,  # measured ≤ 1e-8 at rtol = atol = 1e-9 (≤ 1e-9 at 1e-10)
    max_examples=2,
)


# -- ode_normalization ---------------------------------------------------------------------------------------------
HALF_WIDTH, GRID = 8.0, 81


def run_normalization(spec: FlowSpec, case: Case) -> CheckResult:
    tolerance = CHECK_NORMALIZATION.tolerance_for(spec)
    module: Any = build_ode(spec, float64_cpu(case, 2), rtol=1e-7, atol=1e-7)
    skipped = _exact_at_eval(module)
    if skipped is not None:
        return skipped
    axis = torch.linspace(-HALF_WIDTH, HALF_WIDTH, GRID, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    cell = float(axis[1] - axis[0]) ** 2
    try:
        with torch.no_grad():
            log_prob = Flow(module).log_prob(grid)
    except FlowlabError as exc:
        return _solver_failure(exc, tolerance)
    mass = float(log_prob.exp().sum() * cell)
    edge = float(log_prob.reshape(GRID, GRID)[[0, -1]].exp().max())
    return CheckResult(
        "passed" if abs(mass - 1) <= tolerance else "failed",
        abs(mass - 1),
        tolerance,
        f"∫ p(x) dx ≈ {mass:.6f} on [-{HALF_WIDTH:g}, {HALF_WIDTH:g}]² ({GRID}² points, exact trace, rtol=atol=1e-7); "
        f"largest density on the top/bottom edges {edge:.2g}",
    )


CHECK_NORMALIZATION = CheckSpec(
    name="ode_normalization",
    summary="2D: the density integrates to 1 (grid quadrature, exact trace at evaluation)",
    run=run_normalization,
    applies=continuous_2d,
    needs=solver_settable,
    tolerance=1e-4,  # quadrature on a 0.2 grid of a smooth density plus solver error at 1e-7 (measured: < 2e-7)
    max_examples=1,
)


# -- hutchinson_estimator ------------------------------------------------------------------------------------------
PROBES = 20_000


def theoretical_variance(matrix: Tensor, distribution: str) -> float:
    """Variance of ``vᵀ A v``: Gaussian ``‖A‖²_F + tr(A²)``; Rademacher ``‖A‖²_F + tr(A²) − 2 Σ A_ii²``."""
    variance = matrix.pow(2).sum() + torch.trace(matrix @ matrix)
    if distribution == "rademacher":
        variance = variance - 2 * matrix.diagonal().pow(2).sum()
    return float(variance)


def run_hutchinson_estimator(spec: FlowSpec, case: Case) -> CheckResult:
    tolerance = CHECK_HUTCHINSON.tolerance_for(spec)
    dim = max(case.dim, 2)
    case = float64_cpu(case, dim)
    built = build_case_bijector(spec, case, train=True)
    module = continuous_flow(built)
    if module is None:  # what the runner's preflight found on the default build: a case with other options
        raise Uncovered(str(continuous_protocol(spec, built)))
    estimator, field = module.trace_estimator, module.field
    if not estimator.stochastic:
        return CheckResult(
            "failed",
            detail=f"{spec.name} declares a stochastic log-det, but its training-mode trace "
            f"estimator {estimator!r} says it is not stochastic",
        )
    distribution = getattr(estimator, "distribution", None)
    t = torch.tensor(0.5, dtype=torch.float64)
    point = case_points(case, batch=1)
    matrix = torch.autograd.functional.jacobian(lambda v: field(t, v[None])[0], point[0])
    exact = float(torch.trace(matrix))

    def estimates(z: Tensor, probe: Tensor | None) -> Tensor:
        with torch.enable_grad():  # as the dynamics calls it: f recorded with respect to z, whatever the case's mode
            z = z.clone().requires_grad_(True)
            return estimator(field(t, z), z, probe, False)[0].detach()

    generator = torch.Generator().manual_seed(case.seed)
    many = point.expand(PROBES, dim)
    samples = estimates(many, estimator.draw(many, generator))
    mean, variance = float(samples.mean()), float(samples.var())
    # exact probe set: √d e_i, whose mean v vᵀ is I, gives tr A exactly
    basis = torch.eye(dim, dtype=torch.float64) * math.sqrt(dim)
    set_error = abs(float(estimates(point.expand(dim, dim), basis).mean()) - exact)
    scores = {"probe set |mean − tr A|·1e9": set_error * 1e9}
    if distribution in ("gaussian", "rademacher"):
        theory = theoretical_variance(matrix, distribution)
        fourth = float((samples - mean).pow(4).mean())
        scores["unbiasedness z"] = abs(mean - exact) / math.sqrt(max(theory, 1e-300) / PROBES)
        # SE of the sample variance, √((μ₄ − σ⁴)/n); μ₄ = σ⁴ for a two-valued vᵀAv (Rademacher in 2D), where the
        # sample variance still moves by O(σ²/n): that term keeps the z-score finite and meaningful
        spread_of_variance = math.sqrt(max(fourth - variance**2, 0.0) / PROBES + (2 * theory / PROBES) ** 2)
        scores["variance z"] = abs(variance - theory) / max(spread_of_variance, 1e-300)
    else:
        scores["unbiasedness z"] = abs(mean - exact) / math.sqrt(max(variance, 1e-300) / PROBES)
    worst = max(scores.values())
    spread = math.sqrt(max(variance, 1e-300) / PROBES)
    return CheckResult(
        "passed" if worst <= tolerance else "failed",
        worst,
        tolerance,
        f"{estimator!r} on A = ∂f/∂z at t=0.5 (d={dim}, {PROBES} probes, seed {case.seed}): tr A = {exact:.6g}, "
        f"mean {mean:.6g}, variance {variance:.4g}"
        + (f" (theory {theoretical_variance(matrix, distribution):.4g})" if distribution else "")
        + "; "
        + ", ".join(f"{k} = {v:.3g}" for k, v in scores.items())
        + f"; detects a bias of {tolerance * spread:.2g} in tr A",
        detectable=tolerance * spread,
    )


CHECK_HUTCHINSON = CheckSpec(
    name="hutchinson_estimator",
    summary="Hutchinson: unbiased (|z| ≤ 5), variance as theory predicts, exact on a probe set with mean vvᵀ = I",
    run=run_hutchinson_estimator,
    applies=stochastic_continuous,
    needs=continuous_protocol,
    tolerance=Z_BOUND,
    max_examples=3,
)


# -- hutchinson_fixed_probe ----------------------------------------------------------------------------------------
#: a fixed probe costs about as much as the exact solve (measured ratios up to 2); a redrawn one hits max_nfe
NFE_RATIO = 5.0


def run_fixed_probe(spec: FlowSpec, case: Case) -> CheckResult:
    tolerance = CHECK_FIXED_PROBE.tolerance_for(spec)
    dim = case.dim
    case = float64_cpu(case, dim)
    module: Any = build_ode(spec, case, rtol=1e-8, atol=1e-8, eval_trace="exact")
    skipped = _exact_at_eval(module)
    if skipped is not None:
        return skipped
    batch = min(case.batch, 3)
    z = case_points(case, batch=batch)
    try:
        with torch.no_grad():
            _, exact = module.integrate(z, reverse=False)
    except FlowlabError as exc:
        return _solver_failure(exc, tolerance)
    exact_nfe = module.nfe
    module.train()
    # a redrawn probe would run on to max_nfe: stop it at the allowed ratio instead
    module.solver = replace(module.solver, max_nfe=math.ceil(NFE_RATIO * exact_nfe))
    # every row repeated d times, copy i with the probe √d e_i: the mean over copies of v vᵀ is I
    rows = z.repeat_interleave(dim, dim=0)
    probe = (torch.eye(dim, dtype=z.dtype) * math.sqrt(dim)).repeat(batch, 1)
    try:
        with torch.no_grad():
            _, estimated = module.integrate(rows, reverse=False, probe=probe)
    except FlowlabError as exc:
        return CheckResult(
            "failed",
            math.inf,
            tolerance,
            f"the Hutchinson solve with fixed probes needed more than {NFE_RATIO:g}× the {exact_nfe} evaluations of "
            f"the exact solve (is the probe redrawn inside the solve?): {exc}",
        )
    probe_nfe = module.nfe
    averaged = estimated.reshape(batch, dim).mean(dim=1)
    error = float((averaged - exact).abs().max())
    ratio = probe_nfe / max(exact_nfe, 1)
    passed = error <= tolerance and ratio <= NFE_RATIO
    return CheckResult(
        "passed" if passed else "failed",
        error,
        tolerance,
        f"mean of Hutchinson solves over the probe set √d·e_i vs the exact-trace solve: max error {error:.3g}; "
        f"NFE {probe_nfe} vs {exact_nfe} (ratio {ratio:.2f}, allowed ≤ {NFE_RATIO:g}; a probe redrawn inside the "
        "solve makes the dynamics rough in t and the NFE explode)",
        {"nfe": probe_nfe, "exact_nfe": exact_nfe},
    )


CHECK_FIXED_PROBE = CheckSpec(
    name="hutchinson_fixed_probe",
    summary="a Hutchinson solve holds its probe fixed: over a probe set with mean vvᵀ = I it equals the exact solve",
    run=run_fixed_probe,
    applies=stochastic_continuous,
    needs=continuous_protocol,
    tolerance=1e-5,  # two float64 solves at rtol=atol=1e-8 with different step sequences (measured: ~1e-7)
    max_examples=2,
)

# -- hutchinson_solve_unbiased --------------------------------------------------------------------------------------
#: copies of one point in one training-mode solve: each row draws its own probe, so its log-det is one estimate
SOLVE_COPIES = 256


def run_solve_unbiased(spec: FlowSpec, case: Case) -> CheckResult:
    tolerance = CHECK_SOLVE_UNBIASED.tolerance_for(spec)
    case = float64_cpu(case)
    module: Any = build_ode(spec, case, rtol=1e-7, atol=1e-7, eval_trace="exact")
    skipped = _exact_at_eval(module)
    if skipped is not None:
        return skipped
    z = case_points(case, batch=1)
    try:
        with torch.no_grad():
            _, exact = module(z)
            module.train()
            _, estimates = module(z.expand(SOLVE_COPIES, case.dim).clone())
    except FlowlabError as exc:
        return _solver_failure(exc, tolerance)
    mean, spread = float(estimates.mean()), float(estimates.std()) / math.sqrt(SOLVE_COPIES)
    score = abs(mean - float(exact[0])) / max(spread, 1e-12)
    return CheckResult(
        "passed" if score <= tolerance else "failed",
        score,
        tolerance,
        f"training-mode log-dets of {SOLVE_COPIES} solves of one point with the flow's own probes: mean "
        f"{mean:.6g} ± {spread:.2g} (SE) vs the exact-trace log-det {float(exact[0]):.6g}: {score:.2f} standard errors "
        f"(d={case.dim}); detects a bias of {tolerance * spread:.2g}",
        {"mean": mean, "standard_error": spread, "exact": float(exact[0])},
        detectable=tolerance * spread,
    )


CHECK_SOLVE_UNBIASED = CheckSpec(
    name="hutchinson_solve_unbiased",
    summary="Hutchinson: solves with the probes the flow draws itself average to the exact log-det (|z| ≤ 5)",
    run=run_solve_unbiased,
    applies=stochastic_continuous,
    needs=continuous_protocol,
    tolerance=Z_BOUND,
    max_examples=3,
)

CHECKS = (
    CHECK_INVERTIBILITY,
    CHECK_LOGDET,
    CHECK_NORMALIZATION,
    CHECK_HUTCHINSON,
    CHECK_FIXED_PROBE,
    CHECK_SOLVE_UNBIASED,
)
