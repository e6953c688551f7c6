"""``context_dependence``: a conditional flow's density really depends on its context, and integrates to 1 at each.

Applies to the flows that have a ``context_dim`` option (``docs/conditioning.md``). The flow is built with the case's
``context_dim``, or ``CONTEXT_DIMS[-1]`` when the case drew 0 (this check is about the conditional flow), and:

1. the bijector built must say so: ``bijector.context_dim`` equals the option (a build that drops the option
   gives an unconditional flow, which the other checks would then check without a context);
2. ``log p(x | c₁)`` and ``log p(x | c₂)`` at the case's points ``x`` and two independent drawn contexts (one per
   row each) must differ: ``max_rows |log p(x | c₁) − log p(x | c₂)| > MIN_DEPENDENCE``. A conditioner that ignores
   its context gives exactly 0; on the kit's perturbed parameters the built-ins' quick cases give 9e-4 (``maf``,
   one row at input scale 0.1) to 5 (``nsf``), so 1e-6 separates the two by three orders of magnitude;
3. the density at a second context integrates to 1 (``normalization``'s procedure, statistical power and tolerance,
   at the context of salt 1; ``normalization`` itself checks the one of salt 0).

The error of a failure in 1 or 2 is the number of failed criteria; otherwise the result is that of 3.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from flowlab import FlowSpec
from flowlab.checks import (
    CONTEXT_DIMS,
    CONTEXT_OPTION_NAME,
    Case,
    CheckResult,
    CheckSpec,
    build_case_flow,
    case_context,
    case_points,
    context_dim_of,
)
from flowlab_checks.normalization import normalization_at

#: the smallest ``max |Δ log p|`` between two contexts that counts as a dependence (rounding is ~1e-15)
MIN_DEPENDENCE = 1e-6


def applies(spec: FlowSpec) -> bool | str:
    if CONTEXT_OPTION_NAME in spec.options:
        return True
    return f"the flow has no {CONTEXT_OPTION_NAME} option: it is unconditional (and refuses a context)"


def run(spec: FlowSpec, case: Case) -> CheckResult:
    if not context_dim_of(case):
        case = replace(case, options={**case.options, CONTEXT_OPTION_NAME: CONTEXT_DIMS[-1]})
    case = replace(case, dtype="float64")
    k = context_dim_of(case)
    flow = build_case_flow(spec, case)
    if flow.context_dim != k:
        return CheckResult(
            "failed",
            max_error=1,
            tolerance=0,
            detail=f"built with {CONTEXT_OPTION_NAME}={k}, the bijector has context_dim {flow.context_dim}",
        )
    x = case_points(case)
    first, second = case_context(case, salt=0), case_context(case, salt=1)
    with torch.no_grad():
        difference = (flow.log_prob(x, first) - flow.log_prob(x, second)).abs()
    largest = float(difference.max())
    if not largest > MIN_DEPENDENCE:
        return CheckResult(
            "failed",
            max_error=1,
            tolerance=0,
            detail=f"log p(x | c) does not depend on the context (context_dim {k}): max |log p(x | c₁) − "
            f"log p(x | c₂)| = {largest:.3g} over {case.batch} row(s) (at most {MIN_DEPENDENCE:g}): the networks "
            "ignore the context?",
            data={"x": x.tolist(), "c1": _listed(first), "c2": _listed(second), "largest": largest},
        )
    result = normalization_at(spec, case, salt=1)
    result.detail = (
        f"context_dim {k}: max |log p(x | c₁) − log p(x | c₂)| = {largest:.3g}; normalization {result.detail}"
    )
    return result


def _listed(context: torch.Tensor | None) -> list[list[float]] | None:
    return None if context is None else context.tolist()


CHECK = CheckSpec(
    name="context_dependence",
    summary="a conditional flow's log_prob depends on the context and integrates to 1 at a second context",
    run=run,
    applies=applies,
    tolerance=MIN_DEPENDENCE,
    max_examples=2,
)
