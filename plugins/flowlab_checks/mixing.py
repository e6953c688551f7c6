"""``mixing``: a flow that claims to mix (``FlowSpec.mixes``) has a Jacobian with no structurally zero entry.

``∂x_i/∂z_j ≠ 0`` for every output ``i`` and input ``j`` at some of the case's points. A coupling layer keeps half
the coordinates (``x_a = z_a``); a stack of them without permutations between the layers keeps them forever, and its
Jacobian keeps rows of the identity. A zero at the case's points alone is not structural (a spline's identity
tails give ``∂x_i/∂z_j = 0`` far out): a pair is reported only if it has no dependence at the case's points nor
at ``SPREAD_ROWS`` points of each scale in ``SPREADS``. The error is the number of ``(output, input)`` pairs with
no dependence. A conditional flow is differentiated in ``z`` at the drawn contexts, held fixed.

A ``mixes=True`` claim is about the flow at its default sizes (a stack cut down to one coupling layer by the
kit's size grid cannot mix, and claimed nothing about it): the sizes the case drew go back to their defaults here.
A predicate ``mixes(options)`` says for itself which sizes mix, so it is asked with the drawn ones.
"""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor

from flowlab import FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    apply,
    batch_jacobian,
    build_case_bijector,
    case_context,
    case_points,
    drawn_sizes,
)

#: input scales and rows of the extra points on which a pair without dependence is looked at again
SPREADS, SPREAD_ROWS = (0.1, 1.0), 16


def applies(spec: FlowSpec) -> bool | str:
    return True if spec.mixes else "the flow does not claim to mix its coordinates (FlowSpec.mixes)"


def run(spec: FlowSpec, case: Case) -> CheckResult:
    if not callable(spec.mixes) and (sizes := drawn_sizes(spec, dict(case.options))):
        case = replace(case, options={**case.options, **{name: spec.options[name].default for name in sizes}})
    if not spec.mixes_with(spec.resolve_options(case.options)):
        return CheckResult("skipped", detail=f"with options {dict(case.options)} the flow does not claim to mix")
    case = replace(case, dtype="float64")
    bijector = build_case_bijector(spec, case)
    points = case_points(case, side="base")

    def dependence(at: Tensor, context: Tensor | None) -> Tensor:
        return batch_jacobian(lambda p: apply(bijector, p, "forward", context)[0], at).abs().amax(dim=0)

    seen = dependence(points, case_context(case))
    for scale in SPREADS:
        if bool((seen == 0).any()):
            spread = case_points(case, salt=7, batch=SPREAD_ROWS, scale=scale, side="base")
            seen = seen.maximum(dependence(spread, case_context(case, salt=7, batch=SPREAD_ROWS)))
    independent = (seen == 0).nonzero().tolist()
    count = len(independent)
    if count == 0:
        return CheckResult("passed", max_error=0, tolerance=0, detail="every output depends on every input")
    shown = ", ".join(f"(x_{i}, z_{j})" for i, j in independent[:8]) + (", ..." if count > 8 else "")
    return CheckResult(
        "failed",
        max_error=count,
        tolerance=0,
        detail=f"{count} of {case.dim**2} (output, input) pairs have no dependence: {shown}",
        data={"independent_pairs": independent, "z": points.cpu().tolist()},
    )


CHECK = CheckSpec(
    name="mixing",
    summary="a flow that claims to mix has every output depend on every input (FlowSpec.mixes)",
    run=run,
    applies=applies,
    tolerance=0,
    # which pairs are structurally independent depends on the architecture (options, dim), not on the points or
    # parameters: a few drawn dims and options find it; more cost 1 s each on an ODE flow (a Jacobian through a solve)
    max_examples=4,
)
