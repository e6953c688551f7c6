"""Sampling an ODE flow with a chosen solver, and how straight its paths are.

Direction (``bijector.py``): paths run from a base point at t = 0 to a sample at t = 1.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from flowlab.errors import OptionError
from flowlab.ode.protocol import ContinuousFlow, continuous_flow
from flowlab.ode.solver import ADAPTIVE_METHODS, METHODS


def set_solver(bijector: Any, *, method: str | None = None, steps: int | None = None) -> None:
    """Make an ODE flow's bijector integrate with ``method`` and, for a fixed-step method, exactly ``steps`` equal
    steps (NFE = steps × stages). :class:`OptionError` for a bijector without a solver or a bad combination."""
    ode = continuous_flow(bijector)
    if ode is None:
        raise OptionError(
            f"--method/--steps choose the ODE solver of a continuous flow; this flow's bijector "
            f"({type(bijector).__name__}) has no solver"
        )
    solver = ode.solver
    method = solver.method if method is None else method
    if method not in METHODS:
        raise OptionError(f"solver: method must be one of {', '.join(METHODS)}, got {method!r}")
    if steps is not None and method in ADAPTIVE_METHODS:
        raise OptionError(
            f"--steps N fixes the number of steps of a fixed-step method (rk4, midpoint, euler); {method} is adaptive "
            "(it chooses its steps from rtol/atol): give --method rk4 (or midpoint, euler) with --steps"
        )
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise OptionError(f"--steps: expected a positive integer, got {steps!r}")
    ode.solver = replace(solver, method=method, steps=0 if steps is None else steps)


def straightness(bijector: ContinuousFlow, z: Tensor, points: int = 33) -> float:
    """Mean deviation of the paths from straight lines: ``mean_{i, t} ‖z_i(t) − ((1 − t) z_i(0) + t z_i(1))‖`` over
    ``points`` equally spaced times in [0, 1] (0 for a field whose paths are straight lines, as the OT map's are),
    with the bijector's own solver. Divide by the mean ``‖z(1) − z(0)‖`` for a scale-free number."""
    times = torch.linspace(0.0, 1.0, points, dtype=z.dtype, device=z.device)
    with torch.no_grad():
        path = bijector.trajectory(z, times)  # [points, batch, dim]
    line = (1 - times)[:, None, None] * path[0] + times[:, None, None] * path[-1]
    return float((path - line).norm(dim=-1).mean())
