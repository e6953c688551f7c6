"""The ``Bijector`` protocol and the bijectors every plugin may compose: ``Compose`` and ``Permutation``.

Sign convention (used everywhere in flowlab). A bijector maps base points ``z`` to data points ``x``;
``z -> x`` is the sampling direction (noise to data)::

    forward(z) -> (x, log|det ∂x/∂z|)
    inverse(x) -> (z, log|det ∂z/∂x|)

Both log-determinants have shape ``[batch]``, and for the same pair of points they are negatives of each other.
A :class:`~flowlab.flow.Flow` evaluates densities in the inverse direction:
``log p_x(x) = log p_z(z) + log|det ∂z/∂x|`` with ``z = inverse(x)``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from typing import cast

import torch
from torch import Tensor, nn

from flowlab.errors import ShapeError


class Bijector(nn.Module, abc.ABC):
    """An invertible map ``R^dim -> R^dim`` with a tractable log-determinant (see the module docstring).

    Subclasses set ``self.dim`` and implement :meth:`forward` and :meth:`inverse` on ``[batch, dim]`` tensors.
    Everything is an ``nn.Module``: parameters and buffers follow ``.to(device, dtype)``.
    """

    dim: int

    @abc.abstractmethod
    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Map base points to data points: ``(x, log|det ∂x/∂z|)``, the log-det of shape ``[batch]``."""

    @abc.abstractmethod
    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map data points to base points: ``(z, log|det ∂z/∂x|)``, the log-det of shape ``[batch]``."""


class Compose(Bijector):
    """``x = f_K(... f_2(f_1(z)))``: bijectors applied in order; the log-determinants add.

    ``log|det ∂x/∂z| = Σ_k log|det ∂f_k/∂(input of f_k)|`` (chain rule; determinants multiply).
    """

    def __init__(self, bijectors: Iterable[nn.Module]) -> None:
        super().__init__()
        self.bijectors = nn.ModuleList(bijectors)
        if len(self.bijectors) == 0:
            raise ShapeError("Compose: expected at least one bijector, got none")
        dims = {int(b.dim) for b in self.layers}
        if len(dims) != 1:
            raise ShapeError(f"Compose: expected bijectors of one dimension, got dims {sorted(dims)}")
        self.dim = dims.pop()

    @property
    def layers(self) -> list[Bijector]:
        """The bijectors, in the order ``forward`` applies them."""
        return cast("list[Bijector]", list(self.bijectors))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        total = z.new_zeros(z.shape[0])
        for bijector in self.layers:
            z, ladj = bijector(z)
            total = total + ladj
        return z, total

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        for bijector in reversed(self.layers):
            x, ladj = bijector.inverse(x)
            total = total + ladj
        return x, total


class Permutation(Bijector):
    """``x = z[:, perm]``: a fixed reordering of the coordinates. ``|det| = 1``, so both log-dets are 0."""

    perm: Tensor
    inverse_perm: Tensor

    def __init__(self, perm: Sequence[int] | Tensor) -> None:
        super().__init__()
        perm = torch.as_tensor(perm, dtype=torch.long)
        dim = perm.numel()
        if perm.dim() != 1 or not torch.equal(perm.sort().values, torch.arange(dim)):
            raise ShapeError(f"Permutation: expected a permutation of 0..{dim - 1}, got {perm.tolist()}")
        self.dim = dim
        self.register_buffer("perm", perm)
        self.register_buffer("inverse_perm", torch.argsort(perm))

    @classmethod
    def reverse(cls, dim: int) -> Permutation:
        """The permutation ``(dim-1, ..., 1, 0)``."""
        return cls(torch.arange(dim - 1, -1, -1))

    @classmethod
    def random(cls, dim: int, generator: torch.Generator) -> Permutation:
        """A fixed random permutation drawn from ``generator`` (stored as a buffer, so it is saved)."""
        return cls(torch.randperm(dim, generator=generator))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z.index_select(1, self.perm), z.new_zeros(z.shape[0])  # index_select: ~4x faster than z[:, perm]

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.index_select(1, self.inverse_perm), x.new_zeros(x.shape[0])
