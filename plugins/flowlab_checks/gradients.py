"""``gradients``: ``log_prob`` has finite gradients with respect to every parameter and every input, and every
trainable parameter has a path to it, in training mode.

Training follows ``∇_θ Σ log p(x)``; a NaN in it (e.g. ``torch.where`` evaluating ``sqrt`` of a negative number in
the branch it discards: ``0 · NaN = NaN`` in the backward pass) or a parameter that is cut off from the loss (a stray
``detach``) breaks training silently.

- **Modes.** The flow is differentiated in training mode (where it is trained: a layer may route its parameters
  differently there, e.g. a CNF whose solver sees its parameters only when training) and in eval mode; non-finite
  gradients fail in either, a parameter without a path is judged in training mode.
- **Detached vs zero.** A parameter is cut off only if autograd finds no path from ``log_prob`` to it
  (``torch.autograd.grad(..., allow_unused=True)`` returns ``None``); a gradient that is exactly zero at the drawn
  points (a spline's identity tails) has a path and passes. A path that exists only for some inputs (a branch on
  the data) is looked for again on ``SPREADS``: points of several scales, before a parameter is called cut off.

A conditional flow is differentiated at the case's drawn contexts, and ``∂ log_prob / ∂context`` must be finite
too (an embedding network trained upstream of the flow follows it).

The error is the number of offending rows and parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowlab import Flow, FlowSpec
from flowlab.checks import Case, CheckResult, CheckSpec, build_case_flow, case_context, case_points

#: input scales and rows of the extra points on which a parameter without a path is looked for again
SPREADS, SPREAD_ROWS = (0.1, 1.0, 10.0), 16


def _gradients(flow: Flow, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor | None]]:
    """``∂ Σ log_prob / ∂[x, context]`` (the context's columns appended, when there is one) and
    ``∂ Σ log_prob / ∂θ`` (``None``: no path) for every trainable parameter."""
    named = [(name, p) for name, p in flow.named_parameters() if p.requires_grad]
    inputs = [x.detach().requires_grad_(True)]
    if context is not None:
        inputs.append(context.detach().requires_grad_(True))
    with torch.enable_grad():
        total = flow.log_prob(*inputs).sum()
        grads = torch.autograd.grad(total, [*inputs, *(p for _, p in named)], allow_unused=True)
    by_input = torch.cat([torch.zeros_like(v) if g is None else g for v, g in zip(inputs, grads, strict=False)], 1)
    return by_input, {name: g for (name, _), g in zip(named, grads[len(inputs) :], strict=True)}


def run(spec: FlowSpec, case: Case) -> CheckResult:
    problems, data = [], {}
    count = 0
    parameters = 0
    for train in (True, False):
        mode = "training" if train else "eval"
        flow = build_case_flow(spec, case, train=train)
        rows = max(case.batch, spec.min_train_batch) if train else case.batch  # batch statistics need enough rows
        x, context = case_points(case, batch=rows), case_context(case, batch=rows)
        grad_x, grads = _gradients(flow, x, context)
        parameters = len(grads)
        bad_rows = (~torch.isfinite(grad_x).all(dim=1)).nonzero().flatten().tolist()
        non_finite = [name for name, g in grads.items() if g is not None and not bool(torch.isfinite(g).all())]
        if bad_rows:
            wrt = "dx" if context is None else "d[x, context]"
            problems.append(f"{mode} mode: non-finite d log_prob/{wrt} in rows {bad_rows}")
            data[f"{mode}_rows"], data[f"{mode}_x"] = bad_rows, x[bad_rows].cpu().tolist()
        if non_finite:
            problems.append(f"{mode} mode: non-finite gradients of parameters {non_finite}")
            data[f"{mode}_non_finite_parameters"] = non_finite
        count += len(bad_rows) + len(non_finite)
        if train:
            cut_off = [name for name, g in grads.items() if g is None]
            for scale in SPREADS if cut_off else ():
                spread = case_points(case, salt=7, batch=SPREAD_ROWS, scale=scale)
                _, again = _gradients(flow, spread, case_context(case, salt=7, batch=SPREAD_ROWS))
                cut_off = [name for name in cut_off if again[name] is None]
            if cut_off:
                problems.append(
                    f"training mode: no path from log_prob to parameters {cut_off} (at the case's points and at "
                    f"{SPREAD_ROWS} points of each scale {', '.join(f'{s:g}' for s in SPREADS)}): a stray detach?"
                )
                data["parameters_without_path"] = cut_off
                count += len(cut_off)
    if problems:
        return CheckResult("failed", max_error=count, tolerance=0, detail="; ".join(problems), data=data)
    detail = f"finite gradients in training and eval mode for {case.batch} rows and {parameters} parameter tensors"
    return CheckResult("passed", max_error=0, tolerance=0, detail=detail)


CHECK = CheckSpec(
    name="gradients",
    summary="log_prob has finite gradients for every parameter and input (training and eval mode), none cut off",
    run=run,
    tolerance=0,
)
