"""Affine bijector ``x = A z + b`` with ``A`` invertible by construction (LU) or given and checked."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from flowlab import Bijector, NonFiniteError, ShapeError, SingularMatrixError

#: condition number above which a given matrix is refused as numerically singular (float64 keeps ~16 digits)
MAX_CONDITION = 1e12


class LUAffine(Bijector):
    """``x = L U z + b``: ``L`` unit lower-triangular, ``U`` upper-triangular with diagonal ``exp(log_diag)``.

    ``det A = Π exp(log_diag)`` > 0, so ``A`` is invertible for every parameter value and
    ``log|det ∂x/∂z| = Σ log_diag`` costs O(d). The inverse solves two triangular systems, O(d²) per point.
    """

    strict_lower_mask: Tensor

    def __init__(self, dim: int, *, identity_init: bool = True) -> None:
        super().__init__()
        self.dim = dim
        scale = 0.0 if identity_init else 0.3
        self.lower = nn.Parameter(torch.randn(dim, dim) * scale)
        self.upper = nn.Parameter(torch.randn(dim, dim) * scale)
        self.log_diag = nn.Parameter(torch.randn(dim) * scale)
        self.shift = nn.Parameter(torch.randn(dim) * scale)
        self.register_buffer("strict_lower_mask", torch.ones(dim, dim).tril(-1))

    def factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.dim, dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.strict_lower_mask + eye
        upper = self.upper * self.strict_lower_mask.T + torch.diag(self.log_diag.exp())
        return lower, upper

    def matrix(self) -> Tensor:
        """The matrix ``A = L U``."""
        lower, upper = self.factors()
        return lower @ upper

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        lower, upper = self.factors()
        x = z @ upper.T @ lower.T + self.shift
        return x, self.log_diag.sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        lower, upper = self.factors()
        y = torch.linalg.solve_triangular(lower, (x - self.shift).T, upper=False, unitriangular=True)
        z = torch.linalg.solve_triangular(upper, y, upper=True).T
        return z, (-self.log_diag.sum()).expand(x.shape[0])


class FixedAffine(Bijector):
    """``x = A z + b`` for a given square matrix ``A`` (refused if numerically singular) and shift ``b``.

    ``log|det ∂x/∂z| = log|det A|``, computed once with ``slogdet``; the inverse uses a stored LU factorisation.
    ``A`` and ``b`` are buffers (saved with the model, not trained).
    """

    weight: Tensor
    shift: Tensor
    logabsdet: Tensor

    def __init__(self, dim: int, matrix: Any, shift: Any = None) -> None:
        super().__init__()
        self.dim = dim
        a = torch.as_tensor(matrix, dtype=torch.float64)
        if a.shape != (dim, dim):
            raise ShapeError(f"affine: expected matrix of shape ({dim}, {dim}), got {tuple(a.shape)}")
        b = torch.zeros(dim, dtype=torch.float64) if shift is None else torch.as_tensor(shift, dtype=torch.float64)
        if b.shape != (dim,):
            raise ShapeError(f"affine: expected shift of shape ({dim},), got {tuple(b.shape)}")
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise NonFiniteError("affine: expected finite matrix and shift entries, got NaN or inf")
        sign, logabsdet = torch.linalg.slogdet(a)
        condition = float(torch.linalg.cond(a)) if sign != 0 else math.inf
        if sign == 0 or not math.isfinite(condition) or condition > MAX_CONDITION:
            raise SingularMatrixError(
                f"affine: expected an invertible matrix, got a singular one (det = {float(torch.linalg.det(a)):.3g}, "
                f"condition number {condition:.3g} > {MAX_CONDITION:.0e})"
            )
        dtype = torch.get_default_dtype()
        self.register_buffer("weight", a.to(dtype))
        self.register_buffer("shift", b.to(dtype))
        self.register_buffer("logabsdet", logabsdet.to(dtype))

    def matrix(self) -> Tensor:
        return self.weight

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z @ self.weight.T + self.shift, self.logabsdet.expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = torch.linalg.solve(self.weight, (x - self.shift).T).T
        return z, (-self.logabsdet).expand(x.shape[0])
