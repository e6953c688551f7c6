"""``batch_independence``: row ``i``'s outputs do not change when other rows change.

A flow is a map of one point at a time. Batch statistics (e.g. normalising by the batch mean in ``forward``) make
``f(z)_i`` depend on ``z_j``; then ``log_prob`` depends on what else is in the batch and sampling is wrong.
Each direction runs on the case's points alone, with other rows appended, and with other rows in front; the case's
rows must come out the same.
"""

from __future__ import annotations

import torch

from flowlab.checks.base import Case, CheckResult, CheckSpec
from flowlab.checks.cases import build_case_bijector, case_points
from flowlab.checks.measure import Direction, Measurement, apply, judge, row_errors
from flowlab.spec import FlowSpec


def run(spec: FlowSpec, case: Case) -> CheckResult:
    bijector = build_case_bijector(spec, case)
    rows = case.batch
    others = case_points(case, salt=2, scale=3 * case.scale + 1)
    measurements = []
    directions: tuple[tuple[Direction, int], ...] = (("forward", 0), ("inverse", 1))
    for direction, salt in directions:
        points = case_points(case, salt=salt)
        alone, ladj_alone = apply(bijector, points, direction)
        after, ladj_after = apply(bijector, torch.cat([points, others]), direction)
        before, ladj_before = apply(bijector, torch.cat([others, points]), direction)
        for label, out, ladj in (
            ("appended", after[:rows], ladj_after[:rows]),
            ("in front", before[rows:], ladj_before[rows:]),
        ):
            measurements.append(
                Measurement(
                    f"{direction} output changes when other rows are {label}",
                    torch.maximum(row_errors(out, alone), row_errors(ladj, ladj_alone)),
                    {"input": points, "alone": alone, "with other rows": out},
                )
            )
    return judge(measurements, CHECK.tolerance_for(spec))


CHECK = CheckSpec(
    name="batch_independence",
    summary="each row's outputs and log-dets do not depend on the other rows of the batch",
    run=run,
    tolerance=1e-10,
)
