"""Adaptive Runge–Kutta solves (dopri5, bosh3, adaptive_heun): torchdiffeq's algorithm, with less bookkeeping.

The same method as torchdiffeq 0.2's adaptive Runge–Kutta solvers, step for step:

- their Butcher tableaus (:data:`TABLEAUS`; dopri5's and bosh3's last stage is the solution and its derivative the
  next step's first, "first same as last");
- Hairer's initial step (two evaluations: ``f(t₀, y₀)`` and one probe);
- the error ratio ``r = ‖err / (atol + rtol · max(|y₀|, |y₁|))‖`` (``norm``, by default the RMS), the step accepted
  when ``r ≤ 1``, the next step ``h · min(10, max(0.9 r^(−1/p), 1 if r < 1 else 0.2))`` for the method's order ``p``;
- each output time read from the 4th-order dense interpolant of the step that reaches it (the last step overshoots
  the end, as torchdiffeq's does).

So a solve takes the same steps and returns the same numbers up to rounding (``tests/test_ode_solver.py`` compares
the two on several fields, forwards and backwards in time). What it leaves out is what flowlab's solves never use:
tuples of states, events, prescribed grid points, callbacks, min/max step, time perturbations for discontinuous
fields, gradients with respect to the output times (they are plain floats). The step sizes are plain floats too, so
gradients are those of the solution at fixed steps (torchdiffeq's first step carries an O(solver error) gradient
through its norm of ``f(t₀, y₀)``).

Why: at the small batches of the conformance kit (1-16 rows, d = 2-64) a torchdiffeq step spends about as much time
in its own tensor bookkeeping (an autograd ``Function`` per stage, 0-d tensor step control, a dense-output fit at
every step) as in the evaluations of the field; here a step is a few fused ``add`` calls and float arithmetic
(docs/benchmarks.md). The adjoint method on it: :mod:`flowlab.ode.adjoint`; torchdiffeq still does the fixed-step
methods.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Tableau:
    """An embedded Runge–Kutta pair: stage ``i + 2`` is evaluated at ``t + nodes[i] h`` on ``y + h Σ_j rows[i][j]
    k_j``; the step's solution is the last stage (``solution=None``, first same as last) or ``y + h Σ solution_j
    k_j``; ``error`` weights give the local error estimate, ``midpoint`` the state at ``t + h/2`` for the dense
    interpolant; ``order`` is the order that sets the step size."""

    nodes: tuple[float, ...]
    rows: tuple[tuple[float, ...], ...]
    solution: tuple[float, ...] | None
    error: tuple[float, ...]
    midpoint: tuple[float, ...]
    order: int


#: torchdiffeq's tableaus (``dopri5.py``, ``bosh3.py``, ``adaptive_heun.py``)
TABLEAUS = {
    "dopri5": Tableau(  # Dormand & Prince 5(4), Shampine's midpoint
        nodes=(1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
        rows=(
            (1 / 5,),
            (3 / 40, 9 / 40),
            (44 / 45, -56 / 15, 32 / 9),
            (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
            (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
            (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
        ),
        solution=None,
        error=(
            35 / 384 - 1951 / 21600,
            0.0,
            500 / 1113 - 22642 / 50085,
            125 / 192 - 451 / 720,
            -2187 / 6784 - -12231 / 42400,
            11 / 84 - 649 / 6300,
            -1 / 60,
        ),
        midpoint=(
            6025192743 / 30085553152 / 2,
            0.0,
            51252292925 / 65400821598 / 2,
            -2691868925 / 45128329728 / 2,
            187940372067 / 1594534317056 / 2,
            -1776094331 / 19743644256 / 2,
            11237099 / 235043384 / 2,
        ),
        order=5,
    ),
    "bosh3": Tableau(  # Bogacki & Shampine 3(2)
        nodes=(1 / 2, 3 / 4, 1.0),
        rows=((1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
        solution=None,
        error=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8),
        midpoint=(0.0, 0.5, 0.0, 0.0),
        order=3,
    ),
    # Heun 2(1): not first same as last; as in torchdiffeq, the next step starts from the derivative at the Euler
    # predictor's end
    "adaptive_heun": Tableau(
        nodes=(1.0,), rows=((1.0,),), solution=(0.5, 0.5), error=(0.5, -0.5), midpoint=(0.5, 0.0), order=2
    ),
}
SAFETY, MOST_GROWTH, MOST_SHRINK = 0.9, 10.0, 0.2

Field = Callable[[Tensor, Tensor], Tensor]
#: the size of a state (or of its error relative to the tolerance) that the step control compares with 1
Norm = Callable[[Tensor], Tensor]


def rms(state: Tensor) -> Tensor:
    """The root mean square of all of ``state``'s entries: torchdiffeq's default norm."""
    return state.pow(2).mean().sqrt()


class StepFailure(ArithmeticError):
    """A solve cannot go on: the step size underflowed, or the error estimate is not finite."""


def integrate(
    method: str,
    func: Field,
    y0: Tensor,
    times: Sequence[float],
    rtol: float,
    atol: float,
    norm: Norm,
) -> Tensor:
    """``[len(times), *y0.shape]``: the solution of ``dy/dt = func(t, y)``, ``y(times[0]) = y0``, at ``times``
    (strictly increasing or strictly decreasing) by the adaptive ``method`` (a key of :data:`TABLEAUS`). ``func``
    gets ``t`` as a 0-d tensor of ``y0``'s dtype."""
    tableau = TABLEAUS[method]
    start, sign = times[0], (1.0 if times[-1] >= times[0] else -1.0)
    if any(sign * (later - earlier) <= 0 for earlier, later in itertools.pairwise(times)):
        raise ValueError(f"{method}: expected strictly increasing or strictly decreasing times, got {list(times)}")

    def at(t: float) -> Tensor:
        return torch.tensor(t, dtype=y0.dtype, device=y0.device)

    t, y = start, y0
    f = func(at(t), y)
    with torch.no_grad():  # the step control is not differentiated
        size = _initial_step(func, at, t, y, f, sign, rtol, atol, norm, tableau.order)
    outputs, step = [y0], None
    for target in times[1:]:
        while sign * (target - t) > 0:
            h = sign * size
            if t + h == t:
                raise StepFailure(f"the step size underflowed (h = {size:.3g} at t = {t:.6g})")
            derivatives = [f]
            for node, row in zip(tableau.nodes, tableau.rows, strict=True):
                stage = _combination(y, h, row, derivatives)
                derivatives.append(func(at(t + node * h), stage))
            if tableau.solution is not None:
                stage = _combination(y, h, tableau.solution, derivatives)
            with torch.no_grad():  # the step control is not differentiated
                error = _combination(None, h, tableau.error, derivatives)
                ratio = float(norm(error / (atol + rtol * torch.maximum(y.abs(), stage.abs()))))
            if not math.isfinite(ratio):
                raise StepFailure(f"the state became NaN or infinite (near t = {t:.6g})")
            if ratio <= 1:
                step = (t, h, y, stage, derivatives)
                t, y, f = t + h, stage, derivatives[-1]
            size *= _growth(ratio, tableau.order)
        assert step is not None  # the loop ran at least once: the times are strictly monotone (checked above)
        outputs.append(_interpolate(*step, tableau.midpoint, target))
    return torch.stack(outputs)


def _combination(base: Tensor | None, h: float, weights: Sequence[float], derivatives: list[Tensor]) -> Tensor:
    """``base + h Σ_j weights[j] derivatives[j]`` (without ``base`` when ``None``), skipping zero weights: one fused
    multiply-add per term."""
    out = base
    for weight, derivative in zip(weights, derivatives, strict=False):  # a stage row is shorter than the list
        if weight:
            out = derivative * (weight * h) if out is None else out.add(derivative, alpha=weight * h)
    assert out is not None
    return out


def _growth(ratio: float, order: int) -> float:
    """The factor of the next step size after an error ratio ``ratio`` (a rejected step, ``ratio > 1``, shrinks by at
    most 5x; an accepted one does not shrink)."""
    if ratio == 0:
        return MOST_GROWTH
    least = 1.0 if ratio < 1 else MOST_SHRINK
    return min(MOST_GROWTH, max(SAFETY / ratio ** (1 / order), least))


def _initial_step(
    func: Field,
    at: Callable[[float], Tensor],
    t: float,
    y: Tensor,
    f: Tensor,
    sign: float,
    rtol: float,
    atol: float,
    norm: Norm,
    order: int,
) -> float:
    """Hairer, Nørsett & Wanner, *Solving ODEs I*, II.4: a first step from the sizes of ``y``, ``f`` and ``f``'s
    change over a probe step (one evaluation), for a method of order ``order``."""
    scale = atol + y.abs() * rtol
    d0, d1 = abs(float(norm(y / scale))), abs(float(norm(f / scale)))
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    probe = func(at(t + sign * h0), y + (sign * h0) * f)
    d2 = abs(float(norm((probe - f) / scale)) / h0)
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1 / order)
    return min(100 * h0, h1)


def _interpolate(
    t: float,
    h: float,
    y: Tensor,
    y_next: Tensor,
    derivatives: list[Tensor],
    midpoint_weights: Sequence[float],
    target: float,
) -> Tensor:
    """The 4th-order polynomial through ``y``, ``y_next``, the midpoint state and the end derivatives of the step
    from ``t`` to ``t + h``, at ``target`` (torchdiffeq's ``_interp_fit`` and ``_interp_evaluate``)."""
    midpoint = _combination(y, h, midpoint_weights, derivatives)
    f0, f1 = derivatives[0], derivatives[-1]
    a = 2 * h * (f1 - f0) - 8 * (y_next + y) + 16 * midpoint
    b = h * (5 * f0 - 3 * f1) + 18 * y + 14 * y_next - 32 * midpoint
    c = h * (f1 - 4 * f0) - 11 * y - 5 * y_next + 16 * midpoint
    x = (target - t) / h
    return y + x * (h * f0 + x * (c + x * (b + x * a)))
