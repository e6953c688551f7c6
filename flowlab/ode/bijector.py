"""``ODEBijector``: the flow map of ``dz/dt = f(t, z)`` from t=0 (base) to t=1 (data), with its log-det.

Convention (the one place it is defined; the CNF plugins' explanations repeat it):

- ``forward(z)`` integrates t = 0 → 1 and returns ``(x, log|det ∂x/∂z|)`` with ``log|det ∂x/∂z| = ∫₀¹ tr ∂f/∂z dt``;
- ``inverse(x)`` integrates t = 1 → 0 and returns ``(z, log|det ∂z/∂x|)`` with
  ``log|det ∂z/∂x| = ∫₁⁰ tr ∂f/∂z dt = −∫₀¹ tr ∂f/∂z dt``.

Both come out of one accumulator ``a`` with ``da/dt = +tr ∂f/∂z`` started at 0 (see ``dynamics.py``), so no sign is
flipped by hand, and ``Flow.log_prob(x) = log p_z(z) + a(0)``. (FFJORD writes ``log p(x) = log p(z) − Δ`` with
``Δ = ∫₀¹ tr dt`` integrated the other way; the two agree, and the ``ode_logdet`` check pins ours down against the
autograd Jacobian of the solution in both directions.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from flowlab.bijector import Bijector
from flowlab.errors import OptionError, ShapeError
from flowlab.ode.dynamics import AugmentedDynamics
from flowlab.ode.solver import SolverConfig, solve
from flowlab.ode.trace import ExactTrace, TraceEstimator
from flowlab.vector_field import VectorField


class ODEBijector(Bijector):
    """A continuous normalizing flow's bijector (see the module docstring for the convention).

    - ``field``: the :class:`~flowlab.VectorField` ``f(t, z)`` (an ``nn.Module`` with ``.dim``).
    - ``trace``: the estimator in training mode; ``eval_trace`` the one in eval mode (default: the same).
    - ``solver``: a :class:`SolverConfig` (method, tolerances, step size, adjoint, max NFE).
    - ``kinetic``, ``jacobian``: RNODE weights; in training mode with a weight > 0 the solve also integrates
      ``∫‖f‖² dt`` and ``∫‖∂f/∂z‖²_F dt`` and :meth:`regularization` returns their weighted batch mean.
    - ``compile``: ``torch.compile`` the field together with its Jacobian for the exact trace (see ``dynamics.py``;
      the first solve compiles, later ones reuse it).
    - ``seed``: seeds the ``torch.Generator`` (on the CPU) that stochastic estimators draw their probes from, once
      per solve.

    After every call ``nfe`` holds the number of function evaluations of that solve and ``nfe_backward`` those of
    the adjoint solve run by the last backward pass (0 without ``adjoint``: backpropagation then goes through the
    stored operations of the forward solve and evaluates nothing).
    """

    def __init__(
        self,
        field: nn.Module,
        *,
        trace: TraceEstimator | None = None,
        eval_trace: TraceEstimator | None = None,
        solver: SolverConfig | None = None,
        kinetic: float = 0.0,
        jacobian: float = 0.0,
        seed: int = 0,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if kinetic < 0 or jacobian < 0:
            raise OptionError(
                f"ODEBijector: regularisation weights must be >= 0, got kinetic={kinetic}, jacobian={jacobian}"
            )
        self.field = field
        self.dim = int(cast(VectorField, field).dim)
        self.dynamics = AugmentedDynamics(field, compile=compile)
        self.train_trace = trace if trace is not None else ExactTrace()
        self.eval_trace = eval_trace if eval_trace is not None else self.train_trace
        self.solver = solver if solver is not None else SolverConfig()
        self.kinetic = float(kinetic)
        self.jacobian = float(jacobian)
        self.generator = torch.Generator().manual_seed(seed)
        self.nfe = 0
        self._regularization: Tensor | None = None

    @property
    def trace_estimator(self) -> TraceEstimator:
        """The estimator the next solve uses: ``trace`` in training mode, ``eval_trace`` in eval mode."""
        return self.train_trace if self.training else self.eval_trace

    @property
    def nfe_backward(self) -> int:
        """Function evaluations of the adjoint solve of the last backward pass (0 if none since the last solve)."""
        return self.dynamics.nfe

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.integrate(z, reverse=False)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.integrate(x, reverse=True)

    def integrate(self, y: Tensor, *, reverse: bool, probe: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Solve from t=0 to 1 (``reverse=False``) or 1 to 0; returns the end point and its log-det ``a``.

        ``probe`` replaces the stochastic estimator's draw for this solve (``[batch, dim]``; e.g. a probe set
        whose mean ``v vᵀ`` is ``I``, as the checks do); it is ignored by the exact trace.
        """
        if y.dim() != 2 or y.shape[-1] != self.dim:
            raise ShapeError(f"ODEBijector: expected a tensor of shape [batch, {self.dim}], got {list(y.shape)}")
        if torch.is_inference_mode_enabled():
            # the trace differentiates f, which inference mode forbids: solve as under no_grad, on normal tensors
            with torch.inference_mode(False), torch.no_grad():
                return self.integrate(y.clone(), reverse=reverse, probe=None if probe is None else probe.clone())
        estimator = self.trace_estimator
        if probe is None:
            probe = estimator.draw(y, self.generator)
        elif probe.shape != y.shape:
            raise ShapeError(f"ODEBijector: expected a probe of shape {list(y.shape)}, got {list(probe.shape)}")
        regularize = self.training and (self.kinetic > 0 or self.jacobian > 0)
        self.dynamics.configure(estimator, probe, regularize)
        state = torch.cat([y, y.new_zeros(y.shape[0], self.dynamics.carried())], dim=1)
        times = torch.tensor([1.0, 0.0] if reverse else [0.0, 1.0], dtype=y.dtype, device=y.device)
        end = solve(self.dynamics, state, times, self.solver, controlled=(self.dim, 1))[-1]  # z, the log-det
        self.nfe, self.dynamics.nfe = self.dynamics.nfe, 0
        if regularize:
            sign = -1.0 if reverse else 1.0  # integrated backwards, the accumulators end at minus the integrals
            kinetic, frobenius = sign * end[:, self.dim + 1], sign * end[:, self.dim + 2]
            self._regularization = (self.kinetic * kinetic + self.jacobian * frobenius).mean()
        else:
            self._regularization = None
        return end[:, : self.dim], end[:, self.dim]

    def trajectory(self, z: Tensor, times: Sequence[float] | Tensor) -> Tensor:
        """``z(t)`` for each of ``times`` (increasing, in [0, 1]) starting from ``z`` at t=0: ``[len(times), batch,
        dim]``. No log-det is computed."""
        ts = torch.as_tensor(times, dtype=z.dtype, device=z.device).flatten()
        if ts.numel() == 0 or bool((ts < 0).any() or (ts > 1).any()) or bool((ts.diff() <= 0).any()):
            raise OptionError(f"trajectory: expected increasing times in [0, 1], got {ts.tolist()}")
        start = bool(ts[0] == 0)
        grid = ts if start else torch.cat([ts.new_zeros(1), ts])
        self.dynamics.configure(None, None, False)
        path = solve(self.dynamics, z, grid, self.solver)
        self.nfe, self.dynamics.nfe = self.dynamics.nfe, 0
        return path if start else path[1:]

    def regularization(self) -> Tensor:
        """The weighted RNODE term of the last forward/inverse call in training mode: ``kinetic · mean ∫‖f‖² dt +
        jacobian · mean ∫‖∂f/∂z‖²_F dt`` (the Frobenius term estimated with the solve's probe for Hutchinson);
        a zero scalar when the weights are 0, in eval mode, or before any call."""
        if self._regularization is not None:
            return self._regularization
        parameter = next(self.field.parameters(), None)
        return torch.zeros(
            (),
            dtype=None if parameter is None else parameter.dtype,
            device=None if parameter is None else parameter.device,
        )

    def extra_repr(self) -> str:
        trace = repr(self.train_trace)
        if self.eval_trace is not self.train_trace:
            trace += f" (eval: {self.eval_trace!r})"
        solver = self.solver.describe()
        return f"dim={self.dim}, trace={trace}, solver={solver}, kinetic={self.kinetic}, jacobian={self.jacobian}"
