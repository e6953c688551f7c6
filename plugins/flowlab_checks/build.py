"""``build``: the flow builds at every drawn case (dimension, options), as what it says it is.

``build(dim, **options)`` must return an ``nn.Module`` bijector with ``.dim == dim``, finite parameters and buffers,
and ``context_dim`` equal to the ``context_dim`` option where the flow has one. This is the one property that runs
on a flow that cannot be built at all: the others are not run on it (``flowlab.checks.runner.preflight``), so a
broken build is one clear failure, not one per property. A dimension the flow does not exist in is never drawn
(``FlowSpec.min_dim``, ``max_dim``, ``allows_dim``); a build that fails at a drawn one says which field to declare
if the flow is not meant for it. A flow with ``fixed_parameters`` (a trained checkpoint) is built with nothing
drawn: a build it calls a skipped case (its parameters do not fit its own options) fails here, or the whole run
would be skipped cases and pass.
"""

from __future__ import annotations

import torch

from flowlab import FlowSpec
from flowlab.checks import CONTEXT_OPTION_NAME, Case, CheckResult, CheckSpec, SkipCase, build_case_bijector


def run(spec: FlowSpec, case: Case) -> CheckResult:
    try:
        bijector = build_case_bijector(spec, case)
    except SkipCase as exc:  # a case the flow says it cannot be built for: skipped, with its reason
        if spec.fixed_parameters:  # nothing was drawn: the flow cannot be built as it is
            return CheckResult("failed", detail=f"the flow with fixed parameters cannot be built as it is: {exc}")
        raise
    except Exception as exc:
        return CheckResult(
            "failed",
            detail=f"build({case.dim}, {dict(case.options)}) raised {type(exc).__name__}: {exc} (if {spec.name} is not "
            "defined in this dimension, declare the ones it is defined in: FlowSpec.allows_dim, min_dim, max_dim)",
        )
    problems = []
    tensors = [*bijector.named_parameters(), *bijector.named_buffers()]
    bad = [name for name, value in tensors if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if bad:
        problems.append(f"non-finite parameters or buffers after building: {bad}")
    wanted = int(case.options.get(CONTEXT_OPTION_NAME, 0))
    if CONTEXT_OPTION_NAME in spec.options and int(getattr(bijector, "context_dim", 0)) != wanted:
        problems.append(
            f"built with {CONTEXT_OPTION_NAME}={wanted}, the bijector has context_dim {bijector.context_dim}"
        )
    if problems:
        return CheckResult("failed", detail="; ".join(problems))
    return CheckResult("passed", detail=f"built {type(bijector).__name__} in {case.dim} dimensions")


CHECK = CheckSpec(
    name="build",
    summary="the flow builds at every drawn dimension and option: a bijector of that dim, finite parameters",
    run=run,
    builds_first=False,
    max_examples=5,
)
