"""``ContinuousFlow``: what training, sampling, plotting and the checks ask of a continuous (ODE) flow.

One declared protocol instead of attribute probes scattered through the code. :class:`~flowlab.ode.ODEBijector`
implements it, and so does any third-party bijector with these members (structural typing: no base class needed).
A bijector that wraps a learned one in fixed maps (``flowlab.preprocess.Preprocessed``) says so through
:meth:`flowlab.Bijector.unwrapped`, and :func:`continuous_flow` looks through it: what is read of a flow's field,
solver, NFE and regulariser is read of the continuous flow inside it (they describe model space).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from flowlab.bijector import Bijector
from flowlab.ode.solver import SolverConfig
from flowlab.ode.trace import TraceEstimator


@runtime_checkable
class ContinuousFlow(Protocol):
    """A bijector defined by an ODE ``dz/dt = f(t, z)`` from t = 0 (base) to t = 1 (data).

    - ``dim``; ``field``: the vector field ``f(t, z)`` (``t`` a 0-d tensor or one time per row);
    - ``solver``: its :class:`~flowlab.ode.SolverConfig` (a check or a sampler may replace it);
    - ``nfe``: function evaluations of the last solve; ``nfe_backward``: those of the last adjoint solve;
    - ``trace_estimator``: the estimator the next solve uses (``.stochastic`` for Hutchinson's);
    - ``integrate(y, reverse=..., probe=None)``: one solve, ``(end point, log-det)``, with a given probe;
    - ``trajectory(z, times)``: ``[len(times), batch, dim]`` points of the path from ``z`` at t = 0 (no log-det);
    - ``regularization()``: the training-loss term of the last solve (RNODE), a zero scalar where none.
    """

    dim: int
    field: Any
    solver: SolverConfig
    nfe: int

    @property
    def nfe_backward(self) -> int: ...

    @property
    def trace_estimator(self) -> TraceEstimator: ...

    def integrate(self, y: Tensor, *, reverse: bool, probe: Tensor | None = None) -> tuple[Tensor, Tensor]: ...

    def trajectory(self, z: Tensor, times: Sequence[float] | Tensor) -> Tensor: ...

    def regularization(self) -> Tensor: ...


def continuous_flow(bijector: object) -> ContinuousFlow | None:
    """The continuous flow ``bijector`` runs (itself, or what its ``unwrapped()`` returns), or ``None`` for a
    discrete flow."""
    inner = bijector.unwrapped() if isinstance(bijector, Bijector) else bijector
    return inner if isinstance(inner, ContinuousFlow) else None
