"""The augmented dynamics of a CNF: the state, its log-determinant and the RNODE accumulators in one ODE.

For ``dz/dt = f(t, z)`` the instantaneous change of variables (Chen et al. 2018) gives
``d/dt log|det ∂z(t)/∂z(s)| = tr(∂f/∂z (t, z(t)))``. The state integrated together is::

    d/dt [z, a, k, j] = [f(t, z), tr ∂f/∂z, ‖f‖², ‖∂f/∂z‖²_F]

with ``a = k = j = 0`` at the starting time. Integrated from ``s`` to ``e`` (either order), ``a(e)`` is
``log|det ∂z(e)/∂z(s)|`` of the solution map from ``s`` to ``e``: integrating backwards flips the sign of the
integral, which is exactly the log-det of the inverse map. ``k`` and ``j`` (RNODE's kinetic energy and Jacobian
Frobenius norm, Finlay et al. 2020) are carried only when asked for.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowlab.ode.solver import CountedDynamics
from flowlab.ode.trace import TraceEstimator


class AugmentedDynamics(CountedDynamics):
    """``(t, (z[, a[, k, j]])) -> (f[, tr J[, ‖f‖², ‖J‖²_F]])`` for a vector field ``f`` (see the module docstring).

    Before each solve :meth:`configure` sets the trace estimator and its probe (drawn once for the solve and held
    fixed through it, the adjoint solve included), and whether to carry the log-det and the regularisers.

    Works under ``torch.no_grad()``: autograd is enabled locally to differentiate ``f`` with respect to the state.
    When the caller records gradients and the state is part of its graph, the state is used as it is and the graph
    is kept (``create_graph``); otherwise the state is replaced by a detached leaf that requires grad (never
    ``requires_grad_`` on the solver's own tensor, which fails for non-leaves and for views made under no_grad).
    """

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field
        self.estimator: TraceEstimator | None = None
        self.probe: Tensor | None = None
        self.regularize = False

    def configure(self, estimator: TraceEstimator | None, probe: Tensor | None, regularize: bool) -> None:
        """``estimator=None`` integrates ``z`` alone (a trajectory); otherwise the log-det too."""
        self.estimator = estimator
        self.probe = probe
        self.regularize = regularize

    def forward(self, t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        self.tick(t)
        z = state[0]
        if self.estimator is None:
            return (self.field(t, z),)
        record = torch.is_grad_enabled()
        with torch.enable_grad():
            if not (record and z.requires_grad):  # a fresh leaf: also for no-grad views (odeint_adjoint's forward)
                z = z.detach().requires_grad_(True)
            f = self.field(t, z)
            trace, frobenius = self.estimator(f, z, self.probe, record)
        out = (f, trace, f.pow(2).sum(-1), frobenius) if self.regularize else (f, trace)
        return out if record else tuple(part.detach() for part in out)
