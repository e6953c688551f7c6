"""``NumericInverse``: the inverse of a forward-only layer (e.g. normflows' Planar with tanh, Radial), by root finding.

For each row, solve ``f(z) = x`` for ``z`` by damped Newton: the residual is ``r(z) = f(z) − x``, the Newton step
``δ = −J(z)⁻¹ r(z)`` with ``J = ∂f/∂z`` from autograd (``dim`` backward passes over the whole batch: the rows of a
bijector are independent, so one pass gives a Jacobian row for every batch row), and the step is halved (at most
``HALVINGS`` times) until ``‖r‖∞`` decreases, so a Newton step that overshoots cannot diverge. Start: ``z = x`` (the
layers this is for are perturbations of the identity). A row has converged when
``‖r‖∞ ≤ rtol · (1 + ‖x‖∞)`` with ``rtol = RTOL_EPS · eps(dtype)`` (≈ 2.2e-13 in float64, 1.2e-4 in float32);
after ``max_iter`` iterations (default 50), or on a singular Jacobian or a non-finite residual, the unconverged
rows are named in a :class:`~flowlab.errors.ConvergenceError`.

The solution is found without a graph; then one more Newton step is taken with the graph on
(``z* = ẑ − J(ẑ)⁻¹ (f(ẑ) − x)``, ``J`` detached), which changes ``z`` by less than the tolerance and gives the
implicit-function gradients ``∂z/∂x = J⁻¹`` and ``∂z/∂θ = −J⁻¹ ∂f/∂θ``. The log-det is that of the inverse map,
``log|det ∂z/∂x| = −log|det ∂x/∂z|`` at the solution: minus the forward log-det at ``z*``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowlab.bijector import Bijector
from flowlab.errors import ConvergenceError

#: convergence when ‖f(z) − x‖∞ ≤ RTOL_EPS · eps(dtype) · (1 + ‖x‖∞)
RTOL_EPS = 1000.0
#: step halvings per Newton iteration before the iteration gives up on decreasing the residual
HALVINGS = 30


class NumericInverse(Bijector):
    """``layer`` with its inverse computed by per-row damped Newton (see the module docstring).

    ``forward`` is ``layer.forward``: ``(x, log|det ∂x/∂z|)``; ``inverse(x)`` returns ``(z, −log|det ∂x/∂z|(z))``
    with ``f(z) = x`` to ``rtol · (1 + ‖x‖∞)``. ``layer.inverse`` is never called.
    """

    def __init__(self, layer: Bijector, *, max_iter: int = 50, rtol: float | None = None) -> None:
        super().__init__()
        self.layer = layer
        self.dim = int(layer.dim)
        self.max_iter = max_iter
        self.rtol = rtol

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.layer(z)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        grad = torch.is_grad_enabled()
        with torch.inference_mode(False):
            target = x.clone() if x.is_inference() else x
            with torch.no_grad():
                guess = self._solve(target.detach())
            with torch.set_grad_enabled(grad):
                z = self._polish(guess, target)  # the step with the graph: implicit-function gradients
                _, ladj = self.layer(z)
        return z, -ladj

    def _tolerance(self, x: Tensor) -> Tensor:
        rtol = self.rtol if self.rtol is not None else RTOL_EPS * torch.finfo(x.dtype).eps
        return rtol * (1 + x.abs().amax(dim=1))

    def _residual(self, z: Tensor, x: Tensor) -> Tensor:
        return (self.layer(z)[0] - x).abs().amax(dim=1)

    def _jacobian(self, z: Tensor) -> Tensor:
        """``∂f/∂z`` of every row, ``[batch, dim, dim]`` (rows are independent, so sums over the batch separate)."""
        with torch.enable_grad():
            leaf = z.detach().requires_grad_(True)
            out = self.layer(leaf)[0]
            rows = [
                torch.autograd.grad(out[:, i].sum(), leaf, retain_graph=i + 1 < self.dim)[0] for i in range(self.dim)
            ]
        return torch.stack(rows, dim=1)

    def _newton_step(self, z: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """``J(z)⁻¹ (f(z) − x)`` with ``J`` detached and the residual carrying the graph of ``f``'s parameters, and
        the rows whose Jacobian is singular (their step is 0)."""
        solution, info = torch.linalg.solve_ex(self._jacobian(z), (self.layer(z)[0] - x).unsqueeze(-1))
        singular = info != 0
        return torch.where(singular[:, None], 0.0, solution.squeeze(-1)), singular

    def _polish(self, z: Tensor, x: Tensor) -> Tensor:
        """The last Newton step, with the graph (see the module docstring)."""
        step, singular = self._newton_step(z, x)
        if bool(singular.any()):
            rows = singular.nonzero().flatten().tolist()
            raise ConvergenceError(
                f"NumericInverse: expected an invertible Jacobian ∂f/∂z at the solution, got a singular one in rows "
                f"{rows}",
                rows=rows,
            )
        return z - step

    def _solve(self, x: Tensor) -> Tensor:
        tolerance = self._tolerance(x)
        z = x.clone()
        residual = self._residual(z, x)
        stuck = torch.zeros_like(residual, dtype=torch.bool)  # a singular Jacobian: no Newton step exists
        for _ in range(self.max_iter):
            active = (residual > tolerance) & torch.isfinite(residual) & ~stuck
            if not bool(active.any()):
                break
            step = torch.zeros_like(z)
            step[active], stuck[active] = self._newton_step(z[active], x[active])
            scale = torch.ones_like(residual)
            for _ in range(HALVINGS):
                trial = z - scale[:, None] * step
                trial_residual = self._residual(trial, x)
                worse = active & ~(trial_residual < residual)
                if not bool(worse.any()):
                    break
                scale = torch.where(worse, scale / 2, scale)
            z = torch.where(active[:, None], trial, z)
            residual = torch.where(active, trial_residual, residual)
        failed = ~(residual <= tolerance)
        if bool(failed.any()):
            rows = failed.nonzero().flatten().tolist()
            raise ConvergenceError(
                f"NumericInverse: expected f(z) = x to within rtol·(1 + ‖x‖∞) (tolerance "
                f"{float(tolerance.max()):.3g}) after at most {self.max_iter} damped Newton iterations, got residuals "
                f"{residual[failed].tolist()} in rows {rows}"
                + (f" (singular Jacobian in rows {stuck.nonzero().flatten().tolist()})" if bool(stuck.any()) else ""),
                rows=rows,
                residuals=residual[failed].tolist(),
            )
        return z
