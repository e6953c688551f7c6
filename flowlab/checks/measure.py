"""Measurements the property checks share: calling a bijector with shape checks, per-row Jacobians, errors.

Errors are *mixed* relative errors, ``|got − expected| / (1 + |expected|)``: absolute near 0, relative for large
values, so one tolerance fits inputs of any magnitude. A non-finite value on either side is an infinite error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from flowlab.checks.base import CheckResult, Status
from flowlab.errors import ShapeError

Direction = Literal["forward", "inverse"]


def apply(bijector: nn.Module, points: Tensor, direction: Direction) -> tuple[Tensor, Tensor]:
    """``bijector.forward`` or ``.inverse`` on ``points``, checking the shapes ``[batch, dim]`` and ``[batch]``."""
    out, ladj = bijector(points) if direction == "forward" else bijector.inverse(points)  # type: ignore[operator]
    batch, dim = points.shape
    if tuple(out.shape) != (batch, dim):
        raise ShapeError(f"{direction} returned points of shape {list(out.shape)}, expected [{batch}, {dim}]")
    if tuple(ladj.shape) != (batch,):
        raise ShapeError(f"{direction} returned a log-det of shape {list(ladj.shape)}, expected [{batch}]")
    return out, ladj


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


def judge(measurements: list[Measurement], tolerance: float) -> CheckResult:
    """Pass if every error is ``<= tolerance``; the result names the worst measurement, its row and its values."""
    worst: tuple[float, int, Measurement] | None = None
    for measurement in measurements:
        errors = torch.nan_to_num(measurement.errors.detach().double(), nan=math.inf)
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
    return CheckResult(status, max_error=error, tolerance=tolerance, detail=detail, data=data)
