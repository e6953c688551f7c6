"""``sample_consistency``: ``sample_and_log_prob`` returns ``log_prob`` of its own samples.

``sample_and_log_prob`` computes ``log p(x) = log p_z(z) − log|det ∂x/∂z|`` in the sampling direction, ``log_prob``
computes ``log p_z(f⁻¹(x)) + log|det ∂z/∂x|`` in the density direction: they must agree on the same ``x`` (for a
conditional flow, sample ``i`` drawn and evaluated at the case's context ``i``).
"""

from __future__ import annotations

from flowlab import FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    Measurement,
    build_case_flow,
    case_context,
    judge,
    row_errors,
    seeded,
    with_context,
)
from flowlab.errors import ShapeError


def run(spec: FlowSpec, case: Case) -> CheckResult:
    flow = build_case_flow(spec, case)
    context = case_context(case)
    with seeded(case.seed, case.device):
        samples, log_prob = flow.sample_and_log_prob(case.batch, context)
    if tuple(samples.shape) != (case.batch, case.dim) or tuple(log_prob.shape) != (case.batch,):
        raise ShapeError(
            f"sample_and_log_prob({case.batch}) returned shapes {list(samples.shape)} and {list(log_prob.shape)}, "
            f"expected [{case.batch}, {case.dim}] and [{case.batch}]"
        )
    reference = flow.log_prob(samples, context)
    measurement = Measurement(
        "sample_and_log_prob vs log_prob of the same samples",
        row_errors(log_prob, reference),
        with_context({"x": samples, "sample_and_log_prob": log_prob, "log_prob": reference}, context),
    )
    return judge([measurement], CHECK.tolerance_for(spec))


CHECK = CheckSpec(
    name="sample_consistency",
    summary="the log-density returned by sample_and_log_prob equals log_prob of the same samples",
    run=run,
    tolerance=1e-8,
)
