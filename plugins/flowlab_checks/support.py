"""``support``: the flow maps its base's support onto its data support and back.

For a flow that declares a support other than all of R^d (``FlowSpec.support``, e.g. ``(0, 1)^d`` for a
logit/sigmoid chain; ``FlowSpec.base_support`` or its base distribution's constraint on the base side):

- ``forward(z)`` of base points drawn inside the base support and near its edges lies inside the data support
  (samples never land where the density is 0), and is finite;
- ``inverse(x)`` of data points drawn inside the data support and near its edges lies inside the base support.

Points outside the data support are refused by ``flowlab.Flow(..., support=...)``'s ``log_prob`` with a
:class:`~flowlab.errors.DomainError` (the kit builds its flows with ``FlowSpec.support``), so the flow itself is
never asked about them.

Every other property draws its points inside the supports (:func:`flowlab.checks.case_points`), so a flow that is
correct on its support is never failed for what it does outside it. Not applicable to a flow on all of R^d on both
sides.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowlab import FlowSpec, Support
from flowlab.checks import Case, CheckResult, CheckSpec, Direction, apply, build_case_flow, case_context, case_points


def applies(spec: FlowSpec) -> bool | str:
    if spec.support.is_real and spec.base_support_at(spec.min_dim).is_real:
        return "the flow lives on all of R^d on both sides (FlowSpec.support, base_support)"
    return True


def run(spec: FlowSpec, case: Case) -> CheckResult:
    flow = build_case_flow(spec, case)
    context = case_context(case)
    problems = []
    z, x = case_points(case, salt=0, side="base"), case_points(case, salt=1, side="data")
    sides: tuple[tuple[str, Tensor, Direction, Support], ...] = (
        ("forward(z)", z, "forward", case.support),
        ("inverse(x)", x, "inverse", case.base_support),
    )
    for name, points, direction, target in sides:
        out, _ = apply(flow.bijector, points.clone(), direction, context)
        outside = (~(target.contains(out) & torch.isfinite(out).all(dim=-1))).nonzero().flatten().tolist()
        if outside:
            row = outside[0]
            problems.append(
                f"{name} leaves {target.describe()} in {len(outside)} of {len(points)} row(s), e.g. row {row}: "
                f"{points[row].tolist()} -> {out[row].tolist()}"
            )
    if problems:
        return CheckResult("failed", detail="; ".join(problems))
    return CheckResult(
        "passed",
        detail=f"forward maps {case.base_support.describe()} into {case.support.describe()}, inverse back "
        f"({case.batch} points each, near the edges at scale {case.scale:g})",
    )


CHECK = CheckSpec(
    name="support",
    summary="forward maps the base's support into the data support, and inverse maps it back",
    run=run,
    applies=applies,
)
