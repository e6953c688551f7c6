"""Measurements the property checks share: calling a bijector with shape checks, per-row Jacobians, errors.

Errors are *mixed* relative errors, ``|got − expected| / (1 + |expected|)``: absolute near 0, relative for large
values, so one tolerance fits inputs of any magnitude. A non-finite value on either side is an infinite error, and
the verdict then names the non-finite values and the largest magnitudes the flow reached on that row, so an
ill-conditioned flow (values that overflow) can be told from a wrong formula (finite values that disagree).

:func:`apply` is how every check calls a bijector: besides the shapes it verifies that the call left its input
(and its context) unchanged (a flow that writes into its argument corrupts the caller's data: ``x`` after
``log_prob(x)``). The context goes to the bijector only when there is one, so a bijector written without a
``context`` parameter is called as before. It calls the bijector on a fresh tensor (:func:`fresh`), never on the
object it was given: that may be the output of an earlier call, and a cache must not answer for the flow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from flowlab.errors import FlowlabError, ShapeError
from flowlab.spec import CheckResult, Status

Direction = Literal["forward", "inverse"]


class InputModifiedError(FlowlabError):
    """A bijector wrote into the tensor it was given."""


def apply(
    bijector: nn.Module, points: Tensor, direction: Direction, context: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``bijector.forward`` or ``.inverse`` on ``points`` (at ``context``, ``[batch, context_dim]``, if given),
    checking the shapes ``[batch, dim]`` and ``[batch]`` and that ``points`` and ``context`` are unchanged
    afterwards (:class:`InputModifiedError` otherwise)."""
    points, context = fresh(points), None if context is None else fresh(context)
    inputs = {"input": points} if context is None else {"input": points, "context": context}
    originals = {name: value.detach().clone() for name, value in inputs.items()}
    method = bijector if direction == "forward" else bijector.inverse
    out, ladj = method(points) if context is None else method(points, context=context)  # type: ignore[operator]
    for name, value in inputs.items():
        original = originals[name]
        changed = ~((value.detach() == original) | (value.detach().isnan() & original.isnan())).all(dim=1)
        if bool(changed.any()):
            rows = changed.nonzero().flatten().tolist()
            raise InputModifiedError(
                f"{direction} modified its {name} in place (rows {rows[:8]}{', ...' if len(rows) > 8 else ''}): a "
                "flow must not write into the tensor it is given (clone before an in-place operation)"
            )
    batch, dim = points.shape
    if tuple(out.shape) != (batch, dim):
        raise ShapeError(f"{direction} returned points of shape {list(out.shape)}, expected [{batch}, {dim}]")
    if tuple(ladj.shape) != (batch,):
        raise ShapeError(f"{direction} returned a log-det of shape {list(ladj.shape)}, expected [{batch}]")
    return out, ladj


def fresh(tensor: Tensor) -> Tensor:
    """A new tensor object with ``tensor``'s values and memory layout, part of its autograd graph: a copy (strides
    kept) where the layout is dense, else a view (a slice, an expanded row). A bijector never receives the object
    an earlier call returned, so a ``torch.distributions``-style ``(x, y)`` cache, which answers when it is given
    the very tensor it returned, cannot answer for the flow."""
    dense = tensor.is_contiguous() or (tensor.dim() == 2 and tensor.t().is_contiguous())
    return tensor.clone() if dense else tensor.view_as(tensor)


def with_context(values: dict[str, Tensor], context: Tensor | None) -> dict[str, Tensor]:
    """``values`` with the context added (when there is one), so a failure shows the context of its worst row."""
    return values if context is None else {**values, "context": context}


def mixed_error(got: Tensor, expected: Tensor) -> Tensor:
    """``|got − expected| / (1 + |expected|)`` elementwise; ``inf`` where either side is not finite."""
    got, expected = got.detach(), expected.detach().to(got.dtype)
    error = (got - expected).abs() / (1 + expected.abs())
    finite = torch.isfinite(got) & torch.isfinite(expected)
    return torch.where(finite, error, torch.full_like(error, float("inf")))


def row_errors(got: Tensor, expected: Tensor) -> Tensor:
    """The worst :func:`mixed_error` of each row: shape ``[batch]`` for ``[batch]`` or ``[batch, dim]`` inputs."""
    error = mixed_error(got, expected)
    return error.reshape(error.shape[0], -1).amax(dim=1) if error.dim() > 1 else error


def batch_jacobian(fn: Callable[[Tensor], Tensor], points: Tensor) -> Tensor:
    """``∂fn(z)_b/∂z_b`` for every row ``b``: shape ``[batch, dim_out, dim_in]``, by reverse-mode autograd.

    Uses ``∂(Σ_b y_{b,i})/∂z_{b,j} = ∂y_{b,i}/∂z_{b,j}``, true when rows do not influence each other (which the
    ``batch_independence`` check verifies): one backward pass per output coordinate, whatever the batch size.
    """
    z = points.detach().requires_grad_(True)
    with torch.enable_grad():
        y = fn(z)
        rows = [
            torch.autograd.grad(y[:, i].sum(), z, retain_graph=i + 1 < y.shape[1], allow_unused=True)[0]
            for i in range(y.shape[1])
        ]
    return torch.stack([torch.zeros_like(z) if r is None else r for r in rows], dim=1)


@dataclass
class Measurement:
    """One compared quantity: its per-row errors and the values to show for the worst row."""

    label: str
    errors: Tensor
    values: dict[str, Tensor] = field(default_factory=dict)


def nonfinite_as_inf(values: Tensor) -> Tensor:
    """``values`` in float64 with NaN and ±inf turned into ``+inf`` (``torch.nan_to_num`` alone would turn ``inf``
    into the largest finite float)."""
    values = values.detach().double()
    return torch.where(torch.isfinite(values), values, torch.full_like(values, math.inf))


def magnitudes(values: dict[str, Tensor], row: int) -> str:
    """What the quantities of a measurement look like on ``row``: which are not finite, and the largest finite
    magnitude of each (to tell overflow and ill-conditioning from a wrong formula)."""
    parts = []
    for name, value in values.items():
        entry = value.detach()[row].double().reshape(-1)
        finite = entry[torch.isfinite(entry)]
        largest = f"max |·| {float(finite.abs().max()):.3g}" if finite.numel() else "no finite value"
        bad = int((~torch.isfinite(entry)).sum())
        parts.append(f"{name}: {f'{bad} non-finite, ' if bad else ''}{largest}")
    return "; ".join(parts)


def judge(measurements: list[Measurement], tolerance: float) -> CheckResult:
    """Pass if every error is ``<= tolerance``; the result names the worst measurement, its row and its values
    (and, for a non-finite value, the magnitudes reached on that row)."""
    worst: tuple[float, int, Measurement] | None = None
    for measurement in measurements:
        errors = nonfinite_as_inf(measurement.errors)
        row = int(torch.argmax(errors))
        error = float(errors[row])
        if worst is None or error > worst[0]:
            worst = (error, row, measurement)
    if worst is None:
        return CheckResult("skipped", detail="nothing was measured")
    error, row, measurement = worst
    data: dict[str, Any] = {"measure": measurement.label, "row": row}
    data.update({name: value.detach()[row].cpu().tolist() for name, value in measurement.values.items()})
    status: Status = "passed" if error <= tolerance else "failed"
    detail = f"{measurement.label}: worst error {error:.3g} at row {row} (tolerance {tolerance:.3g})"
    if not math.isfinite(error):
        detail += f"; a value is not finite ({magnitudes(measurement.values, row)})"
    return CheckResult(status, max_error=error, tolerance=tolerance, detail=detail, data=data)
