"""``stress``: at a large dimension and large input magnitudes, float32 agrees with float64 and nothing overflows.

The drawn cases stay near ``min_dim`` and a few standard deviations, where a log-det computed as ``log(∏ exp(s_i))``
or ``log|det J|`` from a float32 determinant is still finite. Here the flow is built at ``dim = STRESS_DIM``
(``FlowSpec.max_dim`` if that is smaller) with the case's parameters rounded to float32, and ``forward`` (at base
points) and ``inverse`` (at data points) are compared with the same flow in float64, at the case's input scale and
at ``STRESS_SCALE``. Errors are mixed relative errors of the points and the log-dets; a non-finite value on either
side fails, with the magnitudes reached (to tell overflow from a wrong formula).
"""

from __future__ import annotations

from dataclasses import replace

from flowlab.checks.base import Case, CheckResult, CheckSpec
from flowlab.checks.cases import build_case_bijector, case_points
from flowlab.checks.measure import Direction, Measurement, apply, judge, row_errors
from flowlab.spec import FlowSpec

STRESS_DIM = 32
STRESS_SCALE = 25.0


def stress_dim(spec: FlowSpec) -> int:
    """The dimension of the stress case: ``STRESS_DIM`` within the flow's declared ``[min_dim, max_dim]``."""
    dim = max(STRESS_DIM, spec.min_dim)
    return dim if spec.max_dim is None else min(dim, spec.max_dim)


def run(spec: FlowSpec, case: Case) -> CheckResult:
    case = replace(case, dim=stress_dim(spec))
    single = build_case_bijector(spec, replace(case, dtype="float32"))
    double = build_case_bijector(spec, replace(case, dtype="float64"))
    measurements = []
    directions: tuple[tuple[Direction, str, int], ...] = (("forward", "z", 0), ("inverse", "x", 1))
    for scale in (case.scale, STRESS_SCALE):
        for direction, name, salt in directions:
            points = case_points(replace(case, dtype="float64"), salt=salt, scale=scale)
            out64, ladj64 = apply(double, points, direction)
            out32, ladj32 = apply(single, points.float(), direction)
            measurements.append(
                Measurement(
                    f"float32 vs float64 {direction} at d={case.dim}, input scale {scale:g}",
                    row_errors(out32.double(), out64).maximum(row_errors(ladj32.double(), ladj64)),
                    {name: points, "float32 log-det": ladj32, "float64 log-det": ladj64, "float32 out": out32},
                )
            )
    return judge(measurements, CHECK.tolerance_for(spec))


CHECK = CheckSpec(
    name="stress",
    summary=f"at d={STRESS_DIM} and inputs of scale {STRESS_SCALE:g}: float32 matches float64, nothing overflows",
    run=run,
    # float32 keeps ~7 digits, and a deep stack at inputs of ~100 amplifies its rounding (stacked, 8 blocks: 3.8e-4
    # measured); the bugs this targets (overflow, a float32 determinant, cancellation) give inf or errors of O(1)
    tolerance=1e-2,
    max_examples=2,
)
