"""``time_embedding``: the vector field of a continuous flow takes one time per row, as flow matching calls it.

An ODE solver calls ``f(t, z)`` with one time for the whole batch (a 0-d ``t``, torchdiffeq's convention), and every
solve-based check runs that way. A flow-matching loss evaluates the field at a different time on every row:
``f(t, z)`` with ``t`` of shape ``[batch]`` (``flowlab_objectives.paths.regression_loss``), or ``[batch, 1]``
(:class:`flowlab.ode.ContinuousFlow` promises both). A time embedding written for the solver alone breaks there:
``t.view(1, 1).expand(batch, 1)`` raises for a batch of times, ``t.reshape(-1)[0]`` gives every row the first
row's time, silently.

The check takes the field of the case's flow (a :class:`flowlab.ode.ContinuousFlow`; a continuous flow that is none
has no field to call, and makes no promise about it: the case is skipped, saying so), ``ROWS`` or more points
``z_b`` of the case and distinct times ``t_b ∈ [0, 1]``, and compares the field at the times as ``[batch]`` and as
``[batch, 1]`` with one call per row at a 0-d time, ``f(t_b, z_b)``; then one 0-d time for the whole batch with the
same per-row calls. Mixed relative errors (``flowlab.checks.row_errors``), float64 on the CPU: the same arithmetic
row by row, so any difference beyond rounding is a time given to the wrong row.
"""

from __future__ import annotations

import torch

from flowlab import FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    Measurement,
    build_case_bijector,
    case_points,
    float64_cpu,
    judge,
    row_errors,
)
from flowlab.errors import ShapeError
from flowlab.ode import continuous_flow

#: at least this many rows, so a time of shape [batch] never has the one element a scalar-only embedding accepts
ROWS = 3
NO_FIELD = (
    "the bijector is not a flowlab.ode.ContinuousFlow: it exposes no vector field to call (and flow matching cannot "
    "train it either)"
)


def applies(spec: FlowSpec) -> bool | str:
    return True if spec.kind == "continuous" else "applies to continuous (ODE) flows, which have a vector field"


def run(spec: FlowSpec, case: Case) -> CheckResult:
    case = float64_cpu(case)
    flow = continuous_flow(build_case_bijector(spec, case))
    if flow is None:
        return CheckResult("skipped", detail=NO_FIELD)
    field = flow.field
    z = case_points(case, batch=max(case.batch, ROWS))
    times = torch.rand(z.shape[0], generator=torch.Generator().manual_seed(case.seed), dtype=z.dtype)
    shared = times[:1].expand(z.shape[0])  # one time for the batch: the first row's
    measurements = []
    with torch.no_grad():
        for label, t, per_row in (
            ("t of shape [batch]", times, times),
            ("t of shape [batch, 1]", times[:, None], times),
            ("one 0-d t for the batch", times[0], shared),
        ):
            got = field(t, z)
            if tuple(got.shape) != tuple(z.shape):
                raise ShapeError(f"the field with {label} returned shape {list(got.shape)}, expected {list(z.shape)}")
            expected = torch.cat([field(t_b, z_b[None]) for t_b, z_b in zip(per_row, z, strict=True)])
            measurements.append(
                Measurement(
                    f"f(t, z) with {label} vs f(t_b, z_b) one row at a time",
                    row_errors(got, expected),
                    {"t": per_row, "z": z, "f(t, z) of the batch": got, "f(t_b, z_b) row by row": expected},
                )
            )
    return judge(measurements, CHECK.tolerance_for(spec))


CHECK = CheckSpec(
    name="time_embedding",
    summary="the vector field takes one time per row (t of shape [batch] or [batch, 1]) as flow matching calls it",
    run=run,
    applies=applies,
    # the same float64 arithmetic per row, batched or not: measured ≤ 1.5e-16 over the built-in ODE flows (quick
    # and thorough profiles)
    tolerance=1e-12,
    max_examples=3,
)
