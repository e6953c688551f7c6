"""``invertibility``: ``inverse(forward(z)) = z``, ``forward(inverse(x)) = x``, and the two log-dets cancel.

For a bijection ``f`` with ``x = f(z)``: ``f⁻¹(f(z)) = z`` for base points and ``f(f⁻¹(x)) = x`` for data points,
and ``log|det ∂x/∂z| + log|det ∂z/∂x| = 0`` at corresponding points (the Jacobians are inverse matrices); for a
conditional flow all at the case's drawn context, one per row.
Errors are mixed relative errors (see ``flowlab.checks.measure``), computed in the case's dtype (float64).
"""

from __future__ import annotations

from flowlab import FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    Measurement,
    apply,
    build_case_bijector,
    case_context,
    case_points,
    judge,
    row_errors,
    with_context,
)


def run(spec: FlowSpec, case: Case) -> CheckResult:
    bijector = build_case_bijector(spec, case)
    z, x = case_points(case, salt=0, side="base"), case_points(case, salt=1, side="data")
    c = case_context(case)
    forward_z, ladj_forward = apply(bijector, z, "forward", c)
    back_z, ladj_back = apply(bijector, forward_z, "inverse", c)
    inverse_x, ladj_inverse = apply(bijector, x, "inverse", c)
    back_x, ladj_again = apply(bijector, inverse_x, "forward", c)
    measurements = [
        Measurement(
            "inverse(forward(z)) vs z", row_errors(back_z, z), with_context({"z": z, "inverse(forward(z))": back_z}, c)
        ),
        Measurement(
            "forward(inverse(x)) vs x", row_errors(back_x, x), with_context({"x": x, "forward(inverse(x))": back_x}, c)
        ),
    ]
    if not spec.eval_deterministic:  # the log-dets are random draws: their mean is checked by logdet_estimator
        return judge(measurements, CHECK.tolerance_for(spec))
    measurements += [
        Measurement(
            "log-dets of forward(z) and inverse(forward(z)) do not cancel",
            row_errors(ladj_back, -ladj_forward),
            with_context({"z": z, "forward log-det": ladj_forward, "inverse log-det": ladj_back}, c),
        ),
        Measurement(
            "log-dets of inverse(x) and forward(inverse(x)) do not cancel",
            row_errors(ladj_again, -ladj_inverse),
            with_context({"x": x, "inverse log-det": ladj_inverse, "forward log-det": ladj_again}, c),
        ),
    ]
    return judge(measurements, CHECK.tolerance_for(spec))


CHECK = CheckSpec(
    name="invertibility",
    summary="inverse(forward(z)) = z, forward(inverse(x)) = x, forward and inverse log-dets cancel",
    run=run,
    tolerance=1e-8,
)
