"""The ``VectorField`` protocol of ODE (continuous) flows."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class VectorField(Protocol):
    """A time-dependent vector field ``f(t, z) = dz/dt`` on ``R^dim``.

    The argument order is torchdiffeq's: ``t`` is a 0-d tensor (one time for the whole batch) and ``z`` is
    ``[batch, dim]``; the result has the shape of ``z``. Implementations must work for every batch size and
    must not assume a particular shape, dtype or device for ``t`` beyond being 0-d and broadcastable.
    """

    dim: int

    def __call__(self, t: Tensor, z: Tensor) -> Tensor: ...
