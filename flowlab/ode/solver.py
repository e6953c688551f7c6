"""Solver options passed through to torchdiffeq, and one ``solve`` that turns solver failures into ``SolverError``."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from flowlab.errors import OptionError, SolverError
from flowlab.ode.adjoint import integrate_adjoint
from flowlab.ode.runge_kutta import Norm, StepFailure, integrate, rms

ADAPTIVE_METHODS = ("dopri5", "bosh3", "adaptive_heun")
FIXED_STEP_METHODS = ("rk4", "midpoint", "euler")
METHODS = ADAPTIVE_METHODS + FIXED_STEP_METHODS

HINT = "loosen rtol/atol, add RNODE regularisation (kinetic/jacobian weights), or compute in float64"


@dataclass(frozen=True)
class SolverConfig:
    """How to integrate: torchdiffeq ``method``; ``rtol``/``atol`` (adaptive methods); ``step_size`` (fixed-step
    methods), or ``steps`` > 0: exactly that many equal steps over the interval (NFE = steps × the method's stages:
    rk4 4, midpoint 2, euler 1); ``adjoint`` (backpropagate by solving the adjoint ODE backwards, O(1) memory in the
    number of steps, instead of through the solver's operations); ``max_nfe`` and ``max_seconds`` (stop a runaway
    solve, forward or adjoint, after this many function evaluations or this much wall-clock time; each solve has its
    own clock)."""

    method: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-5
    step_size: float = 0.05
    adjoint: bool = False
    max_nfe: int = 10_000
    max_seconds: float = 60.0
    steps: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise OptionError(f"solver: method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name in ("rtol", "atol", "step_size"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value and math.isfinite(value)):
                raise OptionError(f"solver: {name} must be a positive finite number, got {value!r}")
        if self.step_size > 1:
            raise OptionError(f"solver: step_size must be at most 1 (the whole interval), got {self.step_size!r}")
        if isinstance(self.max_nfe, bool) or not isinstance(self.max_nfe, int) or self.max_nfe < 1:
            raise OptionError(f"solver: max_nfe must be a positive integer, got {self.max_nfe!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise OptionError(f"solver: steps must be a non-negative integer (0: use step_size), got {self.steps!r}")
        seconds = self.max_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise OptionError(f"solver: max_seconds must be a positive number (inf: no limit), got {seconds!r}")

    @property
    def adaptive(self) -> bool:
        return self.method in ADAPTIVE_METHODS

    def odeint_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``torchdiffeq.odeint``."""
        options: dict[str, Any] = {}
        if not self.adaptive:
            options = {"grid_constructor": _uniform_grid(self.steps)} if self.steps else {"step_size": self.step_size}
        return {"rtol": self.rtol, "atol": self.atol, "method": self.method, "options": options}

    def describe(self) -> str:
        tolerance = f"rtol={self.rtol:g}, atol={self.atol:g}" if self.adaptive else f"step_size={self.step_size:g}"
        if not self.adaptive and self.steps:
            tolerance = f"{self.steps} steps"
        return f"{self.method} ({tolerance}{', adjoint' if self.adjoint else ''})"


class CountedDynamics(nn.Module):
    """Base of the dynamics ``solve`` integrates: counts evaluations and stops a solve past ``max_nfe`` evaluations
    or ``max_seconds`` of wall-clock time.

    Subclasses call :meth:`tick` first in ``forward(t, state)``. ``nfe`` counts evaluations since the last
    :meth:`reset`; ``t`` is the last time evaluated (for error messages). The clock starts at the first evaluation
    of a solve; ``solve`` stops it at the end, so an adjoint backward solve, whenever it runs, gets a clock of its
    own.
    """

    def __init__(self) -> None:
        super().__init__()
        self.config = SolverConfig()
        self.nfe = 0
        self.t: Tensor | None = None
        self.started: float | None = None

    def reset(self, config: SolverConfig) -> None:
        self.config = config
        self.nfe = 0
        self.t = None
        self.started = None

    def tick(self, t: Tensor) -> None:
        self.nfe += 1
        self.t = t.detach()
        now = time.monotonic()
        if self.started is None:
            self.started = now
        if self.nfe > self.config.max_nfe:
            self._stop(f"after max_nfe={self.config.max_nfe} function evaluations", "raise max_nfe")
        if now - self.started > self.config.max_seconds:
            self._stop(
                f"after {now - self.started:.1f} s (max_seconds={self.config.max_seconds:g}) and {self.nfe} function "
                "evaluations",
                "raise max_seconds (or max_nfe)",
            )

    def _stop(self, why: str, first: str) -> None:
        reached = float(self.t) if self.t is not None else float("nan")
        hint = f"{first}, or {HINT}"
        raise SolverError(
            f"{self.config.method}: stopped at t={reached:.4g} {why}; hint: {hint}",
            solver=self.config.method,
            time=reached,
            hint=hint,
        )


def solve(
    dynamics: CountedDynamics,
    state: Tensor,
    times: Tensor,
    config: SolverConfig,
    *,
    controlled: Sequence[int] | None = None,
) -> Tensor:
    """Integrate ``d state/dt = dynamics(t, state)`` (``state``: ``[batch, columns]``) through ``times``; returns
    ``[len(times), batch, columns]``.

    ``controlled``: the widths of the leading groups of columns an adaptive method's error control looks at, each
    by its own RMS, the largest counting (torchdiffeq's mixed norm over parts); default: the RMS of the whole state.
    A CNF passes ``(dim, 1)``: ``z`` and its log-det, and the RNODE accumulators after them are carried along
    without making the steps smaller.
    The adaptive methods run on :func:`flowlab.ode.runge_kutta.integrate` (torchdiffeq's algorithm, the same steps,
    less bookkeeping per step), with ``adjoint`` on :func:`flowlab.ode.adjoint.integrate_adjoint` (torchdiffeq's
    ``odeint_adjoint`` on it); the fixed-step methods on torchdiffeq.
    A step size underflow or a non-finite state becomes a :class:`SolverError` naming the solver, the time reached
    and a hint; a fixed-step solve that ends non-finite raises the same way.
    """
    from torchdiffeq import odeint, odeint_adjoint  # on first solve: it imports scipy.integrate (~1 s), which
    # registering the ODE flows (plugin discovery) does not need

    dynamics.reset(config)
    kwargs = config.odeint_kwargs()
    norm = rms if controlled is None else _mixed_rms(controlled)
    if config.adaptive and controlled is not None:
        kwargs["options"] = {**kwargs["options"], "norm": norm}
    try:
        if config.adaptive and config.adjoint:  # torchdiffeq's odeint_adjoint on flowlab.ode.runge_kutta
            solution = integrate_adjoint(
                config.method,
                dynamics,
                state,
                times.tolist(),
                config.rtol,
                config.atol,
                norm,
                tuple(dynamics.parameters()),
                lambda exc: _failure(dynamics, times, config, f"{exc} (in the adjoint backward solve)"),
            )
        elif config.adjoint:
            solution = odeint_adjoint(dynamics, state, times, adjoint_params=tuple(dynamics.parameters()), **kwargs)
        elif config.adaptive:  # torchdiffeq's algorithm with less bookkeeping (flowlab.ode.runge_kutta)
            solution = integrate(config.method, dynamics, state, times.tolist(), config.rtol, config.atol, norm)
        else:
            solution = odeint(dynamics, state, times, **kwargs)
    except StepFailure as exc:
        raise _failure(dynamics, times, config, str(exc)) from exc
    except AssertionError as exc:
        what = "the step size underflowed" if "underflow" in str(exc) else "the state became NaN or infinite"
        raise _failure(dynamics, times, config, what) from exc
    finally:
        dynamics.started = None  # an adjoint backward solve starts its own clock
    if not bool(torch.isfinite(solution[-1]).all()):
        raise _failure(dynamics, times, config, "the solution is NaN or infinite")
    return solution


def _uniform_grid(steps: int) -> Callable[[Any, Tensor, Tensor], Tensor]:
    """torchdiffeq's ``grid_constructor`` for ``steps`` equal steps from ``t[0]`` to ``t[-1]`` (a ``step_size`` of
    ``1/steps`` can round to one step more)."""

    def grid(func: Any, y0: Tensor, t: Tensor) -> Tensor:
        return torch.linspace(float(t[0]), float(t[-1]), steps + 1, dtype=t.dtype, device=t.device)

    return grid


def _mixed_rms(widths: Sequence[int]) -> Norm:
    """The largest RMS over the leading groups of columns of the given ``widths`` (the columns after them are not
    looked at): torchdiffeq's mixed norm of a tuple state, on one tensor."""
    bounds = list(itertools.accumulate(widths, initial=0))

    def norm(state: Tensor) -> Tensor:
        return torch.stack([rms(state[..., a:b]) for a, b in itertools.pairwise(bounds)]).max()

    return norm


def _failure(dynamics: CountedDynamics, times: Tensor, config: SolverConfig, what: str) -> SolverError:
    reached = float("nan") if dynamics.t is None else float(dynamics.t)
    span = f"{float(times[0]):g}→{float(times[-1]):g}"
    return SolverError(
        f"{config.describe()} solve over t={span} failed at t={reached:.4g} after {dynamics.nfe} function "
        f"evaluations: {what}; hint: {HINT}",
        solver=config.method,
        time=reached,
        hint=HINT,
    )
