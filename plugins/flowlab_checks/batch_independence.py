"""``batch_independence``: row ``i``'s outputs depend neither on the other rows of its batch nor on the batches the
instance was called on before.

A flow is a map of one point at a time. Batch statistics (e.g. normalising by the batch mean in ``forward``) make
``f(z)_i`` depend on ``z_j``; then ``log_prob`` depends on what else is in the batch and sampling is wrong. A layer
that initialises itself from the first batch it sees (an ActNorm that does so in eval mode) gives a map that depends
on that batch: two instances with the same parameters disagree.

For each direction, two fresh instances (the same seed, so the same parameters) are called: the first on the case's
rows alone, as its first call; the second first on other rows put in front of them, then with other rows appended.
The case's rows must come out the same from all three calls. A conditional flow gets each row's drawn context
with it (the other rows their own): a layer that reads another row's context fails here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowlab import FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    Direction,
    Measurement,
    Side,
    apply,
    build_case_bijector,
    case_context,
    case_points,
    judge,
    row_errors,
    with_context,
)


def _errors(spec: FlowSpec, out: Tensor, alone: Tensor, ladj: Tensor, ladj_alone: Tensor) -> Tensor:
    """Per row: the points' error, and the log-dets' where they are deterministic (``eval_deterministic``; random
    log-dets are checked in expectation by ``logdet_estimator``)."""
    errors = row_errors(out, alone)
    return torch.maximum(errors, row_errors(ladj, ladj_alone)) if spec.eval_deterministic else errors


def run(spec: FlowSpec, case: Case) -> CheckResult:
    rows = case.batch
    context, other_context = case_context(case), case_context(case, salt=2)
    measurements = []
    directions: tuple[tuple[Direction, int], ...] = (("forward", 0), ("inverse", 1))
    for direction, salt in directions:
        side: Side = "base" if direction == "forward" else "data"
        points = case_points(case, salt=salt, side=side)
        others = case_points(case, salt=2, scale=3 * case.scale + 1, side=side)
        alone, ladj_alone = apply(build_case_bijector(spec, case), points, direction, context)
        second = build_case_bijector(spec, case)
        before, ladj_before = apply(second, torch.cat([others, points]), direction, _cat(other_context, context))
        after, ladj_after = apply(second, torch.cat([points, others]), direction, _cat(context, other_context))
        for label, out, ladj in (
            ("put in front, on the first call of a second instance", before[rows:], ladj_before[rows:]),
            ("appended, on a later call", after[:rows], ladj_after[:rows]),
        ):
            measurements.append(
                Measurement(
                    f"{direction} output changes when other rows are {label}",
                    _errors(spec, out, alone, ladj, ladj_alone),
                    with_context({"input": points, "alone": alone, "with other rows": out}, context),
                )
            )
    return judge(measurements, CHECK.tolerance_for(spec))


def _cat(first: torch.Tensor | None, second: torch.Tensor | None) -> torch.Tensor | None:
    return None if first is None or second is None else torch.cat([first, second])


CHECK = CheckSpec(
    name="batch_independence",
    summary="each row's outputs and log-dets depend neither on the other rows nor on earlier calls",
    run=run,
    tolerance=1e-10,
)
