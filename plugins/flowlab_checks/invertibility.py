"""``invertibility``: ``inverse(forward(z)) = z``, ``forward(inverse(x)) = x``, and the two log-dets cancel.

For a bijection ``f`` with ``x = f(z)``: ``f⁻¹(f(z)) = z`` for base points and ``f(f⁻¹(x)) = x`` for data points,
and ``log|det ∂x/∂z| + log|det ∂z/∂x| = 0`` at corresponding points (the Jacobians are inverse matrices).
Errors are mixed relative errors (see ``flowlab.checks.measure``), computed in the case's dtype (float64).
"""

from __future__ import annotations

from flowlab.checks.base import Case, CheckResult, CheckSpec
from flowlab.checks.cases import build_case_bijector, case_points
from flowlab.checks.measure import Measurement, apply, judge, row_errors
from flowlab.spec import FlowSpec


def run(spec: FlowSpec, case: Case) -> CheckResult:
    bijector = build_case_bijector(spec, case)
    z, x = case_points(case, salt=0), case_points(case, salt=1)
    forward_z, ladj_forward = apply(bijector, z, "forward")
    back_z, ladj_back = apply(bijector, forward_z, "inverse")
    inverse_x, ladj_inverse = apply(bijector, x, "inverse")
    back_x, ladj_again = apply(bijector, inverse_x, "forward")
    measurements = [
        Measurement("inverse(forward(z)) vs z", row_errors(back_z, z), {"z": z, "inverse(forward(z))": back_z}),
        Measurement("forward(inverse(x)) vs x", row_errors(back_x, x), {"x": x, "forward(inverse(x))": back_x}),
        Measurement(
            "log-dets of forward(z) and inverse(forward(z)) do not cancel",
            row_errors(ladj_back, -ladj_forward),
            {"z": z, "forward log-det": ladj_forward, "inverse log-det": ladj_back},
        ),
        Measurement(
            "log-dets of inverse(x) and forward(inverse(x)) do not cancel",
            row_errors(ladj_again, -ladj_inverse),
            {"x": x, "inverse log-det": ladj_inverse, "forward log-det": ladj_again},
        ),
    ]
    return judge(measurements, CHECK.tolerance_for(spec))


CHECK = CheckSpec(
    name="invertibility",
    summary="inverse(forward(z)) = z, forward(inverse(x)) = x, forward and inverse log-dets cancel",
    run=run,
    tolerance=1e-8,
)
