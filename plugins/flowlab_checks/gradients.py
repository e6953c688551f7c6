"""``gradients``: ``log_prob`` has finite gradients with respect to every parameter and every input.

Training follows ``∇_θ Σ log p(x)``; a NaN in it (e.g. ``torch.where`` evaluating ``sqrt`` of a negative number in
the branch it discards: ``0 · NaN = NaN`` in the backward pass) or a parameter that receives no gradient at all
(a stray ``detach``) breaks training silently. The error is the number of offending rows and parameters.
"""

from __future__ import annotations

import torch

from flowlab.checks.base import Case, CheckResult, CheckSpec
from flowlab.checks.cases import build_case_flow, case_points
from flowlab.spec import FlowSpec


def run(spec: FlowSpec, case: Case) -> CheckResult:
    flow = build_case_flow(spec, case)
    x = case_points(case).requires_grad_(True)
    flow.log_prob(x).sum().backward()
    assert x.grad is not None
    bad_rows = (~torch.isfinite(x.grad).all(dim=1)).nonzero().flatten().tolist()
    trainable = [(name, p) for name, p in flow.named_parameters() if p.requires_grad]
    missing = [name for name, p in trainable if p.grad is None]
    non_finite = [name for name, p in trainable if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
    problems = []
    if bad_rows:
        problems.append(f"non-finite d log_prob/dx in rows {bad_rows}")
    if non_finite:
        problems.append(f"non-finite gradients of parameters {non_finite}")
    if missing:
        problems.append(f"no gradient reaches parameters {missing}")
    count = len(bad_rows) + len(non_finite) + len(missing)
    data = {
        "rows": bad_rows,
        "x": x.detach()[bad_rows].cpu().tolist(),
        "non_finite_parameters": non_finite,
        "parameters_without_gradient": missing,
    }
    if problems:
        return CheckResult("failed", max_error=count, tolerance=0, detail="; ".join(problems), data=data)
    detail = f"finite gradients for {case.batch} rows and {len(trainable)} parameter tensors"
    return CheckResult("passed", max_error=0, tolerance=0, detail=detail)


CHECK = CheckSpec(
    name="gradients",
    summary="log_prob has finite gradients with respect to every parameter and input",
    run=run,
    tolerance=0,
)
