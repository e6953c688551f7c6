"""The adjoint method on :func:`flowlab.ode.runge_kutta.integrate`: torchdiffeq's ``odeint_adjoint``, less its time
gradient.

Forward: the solution at ``times``, solved without recording (memory independent of the number of steps). Backward:
for each interval ``[t_{i-1}, t_i]``, from the last, the augmented system

    d/dt [y, a, g_θ] = [f(t, y), −aᵀ ∂f/∂y, −aᵀ ∂f/∂θ]

is solved from ``t_i`` back to ``t_{i-1}`` with ``y(t_i)`` the forward solution, ``a(t_i)`` the incoming gradient of
``y(t_i)`` plus what the later intervals carried back, and ``g_θ`` accumulated over the intervals from 0; ``a`` at
the start time is the gradient of ``y0``, ``g_θ`` that of the parameters (Chen et al. 2018). As in torchdiffeq, the
state is reset to the forward solution at each output time, the backward solve uses the forward's method and
tolerances, and its step control looks at the largest of ``‖y‖`` and ``‖a‖`` (with the forward's norm) and the RMS
of each parameter's gradient.

One deliberate difference: torchdiffeq also integrates the gradient with respect to time, ``g_t = −∫ aᵀ ∂f/∂t dt``,
even when no time requires grad (its ``t_.requires_grad_(True)`` is in place, so the gradient it means to skip is
computed), and its step control includes ``|g_t|``. Neither returns a gradient for the times here, so flowlab leaves
``g_t`` out: for an autonomous field the two take the same steps and give the same gradients to rounding; for a
time-dependent one flowlab's backward takes as many steps or fewer (a ``cnf`` at batch 256: 56 evaluations
against 104, where ``|g_t|`` was the largest part of the norm), its gradients equal to the solver's tolerance
(``tests/test_ode_solver.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from flowlab.ode.runge_kutta import Field, Norm, StepFailure, integrate, rms


def integrate_adjoint(
    method: str,
    func: Field,
    y0: Tensor,
    times: Sequence[float],
    rtol: float,
    atol: float,
    norm: Norm,
    parameters: Sequence[Tensor],
    failure: Callable[[StepFailure], Exception] = lambda exc: exc,
) -> Tensor:
    """:func:`~flowlab.ode.runge_kutta.integrate` whose backward pass solves the adjoint system (module docstring)
    for the gradients of ``y0`` and of ``parameters`` (those that require grad; the others get none). A backward
    solve that fails raises ``failure(the StepFailure)``."""
    learnable = tuple(p for p in parameters if p.requires_grad)
    solve = _Solve(method, func, list(times), rtol, atol, norm, learnable, failure)
    return _AdjointSolve.apply(solve, y0, *learnable)


class _Solve:
    """What both passes need: the field, the method and its settings, the parameters."""

    def __init__(
        self,
        method: str,
        func: Field,
        times: list[float],
        rtol: float,
        atol: float,
        norm: Norm,
        parameters: tuple[Tensor, ...],
        failure: Callable[[StepFailure], Exception],
    ) -> None:
        self.method, self.func, self.times, self.rtol, self.atol = method, func, times, rtol, atol
        self.norm, self.parameters, self.failure = norm, parameters, failure

    def forward(self, y0: Tensor) -> Tensor:
        return integrate(self.method, self.func, y0, self.times, self.rtol, self.atol, self.norm)

    def backward(self, solution: Tensor, grad: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The gradients of ``y0`` and of the parameters, by the adjoint system over each interval, last first."""
        shape, size = solution.shape[1:], solution[0].numel()
        sizes = [size, size, *(p.numel() for p in self.parameters)]
        bounds = list(itertools.accumulate(sizes, initial=0))

        def parts(state: Tensor) -> list[Tensor]:
            return [state[a:b] for a, b in itertools.pairwise(bounds)]

        def augmented(t: Tensor, state: Tensor) -> Tensor:
            y, adjoint, *_ = parts(state)
            with torch.enable_grad():
                y = y.detach().view(shape).requires_grad_(True)
                f = self.func(t.detach(), y)
                vjps = torch.autograd.grad(
                    f, (y, *self.parameters), -adjoint.view(shape), allow_unused=True, retain_graph=False
                )
            pieces = [f.detach().reshape(-1)]
            for vjp, like in zip(vjps, (y, *self.parameters), strict=True):
                pieces.append((torch.zeros_like(like) if vjp is None else vjp).reshape(-1))
            return torch.cat(pieces)

        def adjoint_norm(state: Tensor) -> Tensor:
            y, adjoint, *g_params = parts(state)
            norms = [self.norm(y.view(shape)), self.norm(adjoint.view(shape))]
            norms += [rms(g) for g in g_params]
            return torch.stack(norms).max()

        dtype, device = solution.dtype, solution.device
        g_params = [torch.zeros(p.numel(), dtype=dtype, device=device) for p in self.parameters]
        adjoint = grad[-1].reshape(-1)
        for i in range(len(self.times) - 1, 0, -1):
            state = torch.cat([solution[i].reshape(-1), adjoint, *g_params])
            interval = [self.times[i], self.times[i - 1]]
            try:
                end = integrate(self.method, augmented, state, interval, self.rtol, self.atol, adjoint_norm)[-1]
            except StepFailure as exc:
                raise self.failure(exc) from exc
            _, adjoint, *g_params = parts(end)
            adjoint = adjoint + grad[i - 1].reshape(-1)
        return adjoint.view(shape), [g.view_as(p) for g, p in zip(g_params, self.parameters, strict=True)]


class _AdjointSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, solve: _Solve, y0: Tensor, *parameters: Tensor) -> Tensor:
        with torch.no_grad():
            solution = solve.forward(y0)
        ctx.solve = solve
        ctx.save_for_backward(solution)
        return solution

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
        (solution,) = ctx.saved_tensors
        with torch.no_grad():
            grad_y0, grad_parameters = ctx.solve.backward(solution, grad)
        return (None, grad_y0, *grad_parameters)
