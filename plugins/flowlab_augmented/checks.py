"""``augmented_marginal_bound``: the importance-weighted estimate of the marginal, against the true ``log p(x)``
(found by quadrature over ``u`` in 2D: ``x, u ∈ R``), within 5 standard errors (fixed seed, CLT):

- one-sided, as a bound: ``E[log p̂_K(x)] ≤ log p(x)`` and it rises with ``K`` (Burda et al. 2016);
- two-sided, as an unbiased estimate: ``p̂_K(x) = (1/K) Σ_k p(x, u_k)/q(u_k | x)`` has ``E[p̂_K(x)/p(x)] = 1``
  exactly for every ``K``. A bound off by a constant (``log p̂_K − c``) still holds and still rises with ``K``;
  only this identity catches it. The result states the smallest relative error of ``p̂_K`` it would detect.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from flowlab import Flow, FlowlabError, FlowSpec
from flowlab.checks import Case, CheckResult, CheckSpec, build_ode, case_points, float64_cpu

DRAWS = (1, 4, 16)
REPEATS = 100
U_HALF_WIDTH, U_GRID = 10.0, 401


def marginal(spec: FlowSpec) -> bool | str:
    if "augment" in spec.options:
        return True
    return "applies to flows of augmented coordinates (an augment option)"


def marginal_estimate(spec: FlowSpec, bijector: Any) -> bool | str:
    if callable(getattr(bijector, "marginal_log_prob", None)):
        return True
    return (
        f"{spec.name} has augmented coordinates (option augment) but its bijector ({type(bijector).__name__}) has no "
        "marginal_log_prob(x, samples=K), the importance-weighted estimate of the marginal this property checks"
    )


def run_marginal_bound(spec: FlowSpec, case: Case) -> CheckResult:
    tolerance = CHECK_MARGINAL_BOUND.tolerance_for(spec)
    case = float64_cpu(case, 2)
    module: Any = build_ode(spec, case, augment=1, rtol=1e-7, atol=1e-7)
    x = case_points(replace(case, dim=1), batch=4)
    u = torch.linspace(-U_HALF_WIDTH, U_HALF_WIDTH, U_GRID, dtype=torch.float64)
    try:
        with torch.no_grad():
            joint = torch.cat([x.repeat_interleave(U_GRID, 0), u.repeat(x.shape[0])[:, None]], dim=-1)
            log_joint = Flow(module).log_prob(joint).reshape(x.shape[0], U_GRID)
            true = torch.logsumexp(log_joint, dim=1) + math.log(float(u[1] - u[0]))  # log ∫ p(x, u) du
            gaps, errors, ratios, ratio_errors = [], [], [], []
            for k in DRAWS:
                estimate = module.marginal_log_prob(x.repeat(REPEATS, 1), samples=k).reshape(REPEATS, -1)
                gap = estimate - true
                gaps.append(float(gap.mean()))
                errors.append(float(gap.std()) / math.sqrt(gap.numel()))
                ratio = gap.exp()  # p̂_K(x) / p(x), whose expectation is exactly 1
                ratios.append(float(ratio.mean()))
                ratio_errors.append(float(ratio.std()) / math.sqrt(ratio.numel()))
    except FlowlabError as exc:
        return CheckResult("failed", math.inf, tolerance, f"the solve failed: {exc}")
    scores = [gap / max(se, 1e-12) for gap, se in zip(gaps, errors, strict=True)]  # > 0: above the true marginal
    for i in range(len(DRAWS) - 1):  # > 0: falling with K
        scores.append((gaps[i] - gaps[i + 1]) / max(math.hypot(errors[i], errors[i + 1]), 1e-12))
    scores += [abs(r - 1) / max(se, 1e-12) for r, se in zip(ratios, ratio_errors, strict=True)]  # two-sided
    worst = max(scores)
    table = ", ".join(
        f"K={k}: gap {g:+.4f} ± {e:.4f}, ratio {r:.4f} ± {re:.4f}"
        for k, g, e, r, re in zip(DRAWS, gaps, errors, ratios, ratio_errors, strict=True)
    )
    detectable = tolerance * max(ratio_errors)
    return CheckResult(
        "passed" if worst <= tolerance else "failed",
        worst,
        tolerance,
        f"log p̂_K(x) − log p(x) and p̂_K(x)/p(x) (true marginal by quadrature over u): {table}; worst violation "
        f"{worst:.2f} standard errors (above the bound, falling with K, or a mean ratio other than 1); detects a "
        f"relative error of {detectable:.2g} in p̂_K",
        {"gaps": dict(zip(DRAWS, gaps, strict=True)), "ratios": dict(zip(DRAWS, ratios, strict=True))},
        detectable=detectable,
    )


CHECK_MARGINAL_BOUND = CheckSpec(
    name="augmented_marginal_bound",
    summary="augmented: log p̂_K(x) is a bound on log p(x) rising with K, and E[p̂_K(x)/p(x)] = 1",
    run=run_marginal_bound,
    applies=marginal,
    needs=marginal_estimate,
    tolerance=5.0,
    max_examples=1,
)

CHECKS = (CHECK_MARGINAL_BOUND,)
