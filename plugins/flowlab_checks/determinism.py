"""``determinism``: two eval-mode calls on the same input give the same result, as ``FlowSpec.eval_deterministic``
claims (the default).

``forward`` and ``inverse`` are called twice on copies of the same points, under different states of the global RNG
(what ``torch.rand``-style draws inside a flow read). With ``eval_deterministic=True`` outputs and log-dets must be
bit-identical: a flow that draws randomness in eval mode (a stochastic log-det estimate left on, dropout) and does
not say so would make every row-by-row comparison of the kit a comparison of noise, so this fails it, naming the
field to declare. A flow that declares ``eval_deterministic=False`` must still be a deterministic *map* (the points
agree; only its log-dets may be random): the kit then compares its points row by row and its log-dets in
expectation (``logdet_estimator``).
"""

from __future__ import annotations

import torch

from flowlab import FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    Direction,
    apply,
    build_case_bijector,
    case_context,
    case_points,
    seeded,
)


def run(spec: FlowSpec, case: Case) -> CheckResult:
    bijector = build_case_bijector(spec, case)
    context = case_context(case)
    problems = []
    directions: tuple[tuple[Direction, int], ...] = (("forward", 0), ("inverse", 1))
    for direction, salt in directions:
        points = case_points(case, salt=salt, side="base" if direction == "forward" else "data")
        with seeded(case.seed + 1, case.device):
            first, first_ladj = apply(bijector, points.clone(), direction, context)
        with seeded(case.seed + 2, case.device):
            second, second_ladj = apply(bijector, points.clone(), direction, context)
        if not torch.equal(first, second):
            problems.append(f"{direction}: two eval-mode calls on the same points returned different points")
        elif spec.eval_deterministic and not torch.equal(first_ladj, second_ladj):
            gap = float((first_ladj - second_ladj).detach().abs().max())
            problems.append(
                f"{direction}: two eval-mode calls on the same points returned log-dets {gap:.3g} apart (declare "
                "FlowSpec.eval_deterministic=False if the flow draws randomness in eval mode)"
            )
    if problems:
        return CheckResult("failed", detail="; ".join(problems))
    what = "points and log-dets" if spec.eval_deterministic else "points (log-dets are random: declared)"
    return CheckResult("passed", detail=f"two eval-mode calls agree bit for bit: {what}")


CHECK = CheckSpec(
    name="determinism",
    summary="two eval-mode calls on the same input agree (as FlowSpec.eval_deterministic claims)",
    run=run,
    max_examples=2,  # randomness left on in eval mode shows on any input
)
