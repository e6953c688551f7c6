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


@runtime_checkable
class JacobianField(VectorField, Protocol):
    """A :class:`VectorField` that also computes its Jacobian ``∂f/∂z`` along with its value, in one pass.

    ``jacobian(t, z)`` returns ``(f(t, z), J)`` with ``J[b, i, j] = ∂f_i/∂z_j`` at row ``b``, shape
    ``[batch, dim, dim]`` (same ``t`` conventions as ``__call__``). The exact trace of a continuous flow uses it
    instead of ``dim`` vector-Jacobian products through autograd (:class:`flowlab.ode.ExactTrace`), so it must be
    differentiable by autograd in ``z`` and in the parameters (training differentiates the trace). Optional: a field
    without it gets the autograd Jacobian. The conformance kit's ``ode_logdet`` compares the flow's log-det with the
    autograd Jacobian of the whole solution map, so a wrong ``jacobian`` fails it.
    """

    def jacobian(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]: ...


@runtime_checkable
class JVPField(VectorField, Protocol):
    """A :class:`VectorField` that also computes a Jacobian-vector product ``(∂f/∂z) v`` along with its value, in one
    pass (forward mode).

    ``jvp(t, z, v)`` returns ``(f(t, z), J v)`` with ``(J v)[b] = ∂f/∂z (t, z_b) · v_b`` per row, both ``[batch, dim]``
    (``v`` has the shape of ``z``). The Hutchinson trace of a continuous flow uses it, ``vᵀ J v = v · (J v)``,
    instead of a vector-Jacobian product through autograd (:class:`flowlab.ode.Hutchinson`): no autograd call per
    evaluation, and training differentiates it with a first-order backward instead of a double one. It must be
    differentiable by autograd in ``z`` and in the parameters. Optional: a field without it gets the autograd
    product. The conformance kit's ``hutchinson_solve_unbiased`` compares the mean of many Hutchinson solves with
    the exact log-det, so a wrong ``jvp`` fails it.
    """

    def jvp(self, t: Tensor, z: Tensor, v: Tensor) -> tuple[Tensor, Tensor]: ...
