"""``logdet``: the flow's log-det equals ``log|det J|`` of the autograd Jacobian, per sample, in float64.

``J = ∂x/∂z`` (forward, at base points) and ``∂z/∂x`` (inverse, at data points) are computed by reverse-mode
autograd through the flow's own ``forward`` / ``inverse``; ``torch.linalg.slogdet`` gives ``log|det J|``. For a
conditional flow, at the case's drawn context (one per row), held fixed: the Jacobian is in ``z`` (or ``x``) only.
Runs in eval mode, so it applies to every flow whose eval mode is deterministic (``FlowSpec.eval_deterministic``,
verified by ``determinism``), a flow with a stochastic training-mode estimate included (its eval-mode log-det is
checked here, the estimate by ``logdet_estimator``). Also in training mode where that is exact per row
(``logdet="exact"`` and ``min_train_batch == 1``: no batch statistics): a log-det wrong only in ``train()`` fails.
The log-det and the Jacobian come from one call, so randomness a training mode draws (dropout) is the same in both.
That call records (the Jacobian needs autograd); in a case drawn without autograd (``Case.autograd``) the eval-mode
log-det of a call that records nothing is held to the same reference too, so a no-grad path cannot differ.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import torch

from flowlab import FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    Direction,
    Measurement,
    apply,
    batch_jacobian,
    build_case_bijector,
    case_context,
    case_points,
    judge,
    row_errors,
    with_context,
)


def applies(spec: FlowSpec) -> bool | str:
    if spec.eval_deterministic:
        return True
    return "its eval-mode log-det is random (FlowSpec.eval_deterministic=False): logdet_estimator checks its mean"


def _points_of(
    bijector: torch.nn.Module,
    direction: Direction,
    context: torch.Tensor | None,
    ladjs: list[torch.Tensor],
    points: torch.Tensor,
) -> torch.Tensor:
    out, ladj = apply(bijector, points, direction, context)
    ladjs.append(ladj.detach())
    return out


def modes(spec: FlowSpec) -> tuple[bool, ...]:
    """``train`` flags of the modes checked: eval mode, and training mode where its log-det is exact per row."""
    return (False, True) if spec.logdet == "exact" and spec.min_train_batch == 1 else (False,)


def run(spec: FlowSpec, case: Case) -> CheckResult:
    case = replace(case, dtype="float64")
    measurements = []
    directions: tuple[tuple[Direction, str, int], ...] = (("forward", "z", 0), ("inverse", "x", 1))
    context = case_context(case)
    for train in modes(spec):
        bijector = build_case_bijector(spec, case, train=train)
        mode = " in training mode (declare FlowSpec.min_train_batch for batch statistics)" if train else ""
        for direction, name, salt in directions:
            points = case_points(case, salt=salt, side="base" if direction == "forward" else "data")
            ladjs: list[torch.Tensor] = []
            jacobian = batch_jacobian(partial(_points_of, bijector, direction, context, ladjs), points)
            reference = torch.linalg.slogdet(jacobian).logabsdet
            measured = [("", ladjs[0])]
            if not train and not torch.is_grad_enabled():  # eval mode is deterministic: a second call may differ
                measured.append((" (called without autograd)", apply(bijector, points, direction, context)[1]))
            for how, ladj in measured:
                measurements.append(
                    Measurement(
                        f"{direction} log-det{how} vs log|det| of the autograd Jacobian{mode}",
                        row_errors(ladj, reference),
                        with_context({name: points, "flow log-det": ladj, "autograd log|det|": reference}, context),
                    )
                )
    return judge(measurements, CHECK.tolerance_for(spec))


CHECK = CheckSpec(
    name="logdet",
    summary="forward and inverse log-dets equal slogdet of the autograd Jacobian (float64)",
    run=run,
    applies=applies,
    tolerance=1e-8,
)
