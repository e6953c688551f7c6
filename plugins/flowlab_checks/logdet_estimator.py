"""``logdet_estimator``: a stochastic log-det is an unbiased estimate of the exact one.

For a discrete flow whose log-det is an estimate (``FlowSpec.logdet == "stochastic"``: e.g. a truncated power
series with a random truncation, Hutchinson probes; the estimator is used in training mode), and for any flow whose
eval mode draws randomness (``eval_deterministic=False``), in the mode(s) where it is random: the log-det of one
data point is estimated ``CALLS × COPIES`` times (``CALLS`` separate calls, each on ``COPIES`` copies of the point:
an estimator that draws once per batch makes the copies of one call dependent, so the standard error is taken
across calls only) and the mean is compared with ``log|det ∂z/∂x|`` of the autograd Jacobian of the same
(deterministic) inverse map, in float64: ``|mean − exact| ≤ 5·SE`` (central limit theorem; a correct estimator
fails with probability below one in a million). The result states the smallest bias it would detect
(``detectable``). Continuous flows have their own, ``hutchinson_solve_unbiased``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import torch
from torch import Tensor

from flowlab import FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    apply,
    batch_jacobian,
    build_case_bijector,
    case_context,
    case_points,
    float64_cpu,
    seeded,
)

Z_BOUND = 5.0
#: independent calls, and copies of the point per call (see the module docstring)
CALLS = {"quick": 16, "thorough": 128}
COPIES = 16


def applies(spec: FlowSpec) -> bool | str:
    if spec.kind == "discrete" and (spec.logdet == "stochastic" or not spec.eval_deterministic):
        return True
    return "applies to discrete flows with a random log-det (logdet='stochastic' or eval_deterministic=False)"


def _inverse_points(bijector: torch.nn.Module, context: Tensor | None, points: Tensor) -> Tensor:
    return apply(bijector, points, "inverse", context)[0]


def run(spec: FlowSpec, case: Case) -> CheckResult:
    case = replace(float64_cpu(case), batch=1)
    modes = [True] if spec.eval_deterministic else [True, False]
    tolerance = CHECK.tolerance_for(spec)
    x, context = case_points(case, side="data"), case_context(case)
    results, worst, detectable = [], 0.0, 0.0
    for train in modes:
        bijector = build_case_bijector(spec, case, train=train)
        inverse = partial(_inverse_points, bijector, context)
        exact = float(torch.linalg.slogdet(batch_jacobian(inverse, x)).logabsdet)
        calls = CALLS.get(case.profile, CALLS["quick"])
        rows = max(COPIES, spec.min_train_batch)
        means = []
        for call in range(calls):
            with seeded(case.seed * 7919 + call, case.device):
                copies_context = None if context is None else context.expand(rows, -1)
                _, ladj = apply(bijector, x.expand(rows, -1).clone(), "inverse", copies_context)
            means.append(float(ladj.detach().mean()))
        mean = sum(means) / calls
        spread = math.sqrt(sum((m - mean) ** 2 for m in means) / (calls - 1) / calls)
        score = abs(mean - exact) / max(spread, 1e-12)
        worst, detectable = max(worst, score), max(detectable, tolerance * spread)
        mode = "training" if train else "eval"
        results.append(
            f"{mode} mode: mean {mean:.6g} ± {spread:.2g} (SE over {calls} calls × {rows} copies) vs exact "
            f"{exact:.6g}: {score:.2f} SE"
        )
    return CheckResult(
        "passed" if worst <= tolerance else "failed",
        worst,
        tolerance,
        f"inverse log-det estimates of one point (d={case.dim}) against slogdet of the autograd Jacobian: "
        + "; ".join(results)
        + f"; detects a bias of {detectable:.2g}",
        detectable=detectable,
    )


CHECK = CheckSpec(
    name="logdet_estimator",
    summary="a stochastic log-det averages to the exact one (|z| ≤ 5, float64 autograd reference)",
    run=run,
    applies=applies,
    tolerance=Z_BOUND,
    max_examples=2,
)
