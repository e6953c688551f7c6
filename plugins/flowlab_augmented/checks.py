"""``augmented_marginal_bound``: the importance-weighted ``log p̂_K(x)`` stays below the true ``log p(x)`` (found by
quadrature over ``u`` in 2D: ``x, u ∈ R``) and rises with ``K``, within 5 standard errors (fixed seed, CLT)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from flowlab import Flow, FlowlabError, FlowSpec
from flowlab.checks.base import Case, CheckResult, CheckSpec
from flowlab.checks.cases import build_case_bijector, case_points, float64_cpu

DRAWS = (1, 4, 16)
REPEATS = 100
U_HALF_WIDTH, U_GRID = 10.0, 401


def augmented(spec: FlowSpec) -> bool | str:
    if spec.kind != "continuous" or "augment" not in spec.options:
        return "applies to augmented continuous flows (an 'augment' option and marginal_log_prob)"
    return True


def run_marginal_bound(spec: FlowSpec, case: Case) -> CheckResult:
    tolerance = CHECK_MARGINAL_BOUND.tolerance_for(spec)
    case = float64_cpu(case, 2)
    module: Any = build_case_bijector(spec, case, augment=1, rtol=1e-7, atol=1e-7, method="dopri5")
    if not hasattr(module, "marginal_log_prob"):
        return CheckResult("skipped", detail="the bijector has no marginal_log_prob")
    x = case_points(replace(case, dim=1), batch=4)
    u = torch.linspace(-U_HALF_WIDTH, U_HALF_WIDTH, U_GRID, dtype=torch.float64)
    try:
        with torch.no_grad():
            joint = torch.cat([x.repeat_interleave(U_GRID, 0), u.repeat(x.shape[0])[:, None]], dim=-1)
            log_joint = Flow(module).log_prob(joint).reshape(x.shape[0], U_GRID)
            true = torch.logsumexp(log_joint, dim=1) + math.log(float(u[1] - u[0]))  # log ∫ p(x, u) du
            gaps, errors = [], []
            for k in DRAWS:
                estimate = module.marginal_log_prob(x.repeat(REPEATS, 1), samples=k).reshape(REPEATS, -1)
                gap = estimate - true
                gaps.append(float(gap.mean()))
                errors.append(float(gap.std()) / math.sqrt(gap.numel()))
    except FlowlabError as exc:
        return CheckResult("failed", math.inf, tolerance, f"the solve failed: {exc}")
    scores = [gap / max(se, 1e-12) for gap, se in zip(gaps, errors, strict=True)]  # > 0: above the true marginal
    for i in range(len(DRAWS) - 1):  # > 0: falling with K
        scores.append((gaps[i] - gaps[i + 1]) / max(math.hypot(errors[i], errors[i + 1]), 1e-12))
    worst = max(scores)
    table = ", ".join(f"K={k}: {g:+.4f} ± {e:.4f}" for k, g, e in zip(DRAWS, gaps, errors, strict=True))
    return CheckResult(
        "passed" if worst <= tolerance else "failed",
        worst,
        tolerance,
        f"mean of log p̂_K(x) − log p(x) (true marginal by quadrature over u): {table}; worst violation "
        f"{worst:.2f} standard errors (above the bound, or falling with K)",
        {"gaps": dict(zip(DRAWS, gaps, strict=True))},
    )


CHECK_MARGINAL_BOUND = CheckSpec(
    name="augmented_marginal_bound",
    summary="augmented: the importance-weighted log p̂_K(x) is below the true marginal and rises with K",
    run=run_marginal_bound,
    applies=augmented,
    tolerance=5.0,
    max_examples=1,
)

CHECKS = (CHECK_MARGINAL_BOUND,)
