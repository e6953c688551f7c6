"""ODE machinery of continuous flows: dynamics, trace estimators, solver options, regularisers, NFE counting.

Direction and sign convention (``bijector.py`` states it in full): ``forward(z)`` integrates ``dz/dt = f(t, z)``
from t=0 (base) to t=1 (data) and returns ``log|det ∂x/∂z| = ∫₀¹ tr ∂f/∂z dt``; ``inverse(x)`` integrates 1 → 0
and returns ``log|det ∂z/∂x| = −∫₀¹ tr ∂f/∂z dt``; ``log p(x) = log p_z(z) + log|det ∂z/∂x|``.

Modules, one job each: ``trace`` (exact and Hutchinson estimators), ``field`` (the time-conditioned MLP),
``solver`` (torchdiffeq options, ``solve`` and its errors, NFE guard), ``dynamics`` (the augmented ODE),
``bijector`` (``ODEBijector``), ``protocol`` (``ContinuousFlow``: what the rest of flowlab asks of an ODE flow),
``options`` (what ODE ``FlowSpec``\\ s share), ``paths`` (sampling with a chosen solver and number of steps; how
straight the paths are).
"""

from __future__ import annotations

from flowlab.ode.bijector import ODEBijector
from flowlab.ode.dynamics import AugmentedDynamics
from flowlab.ode.field import TimeMLP
from flowlab.ode.options import (
    ODE_CHECK_OPTIONS,
    ODE_CONVENTION,
    ODE_NOTES,
    ODE_REFERENCES,
    SOLVER_OPTIONS,
    build_ode_bijector,
    field_from_options,
    ode_options,
    ode_tolerances,
    solver_config,
)
from flowlab.ode.paths import set_solver, straightness
from flowlab.ode.protocol import ContinuousFlow, continuous_flow
from flowlab.ode.solver import ADAPTIVE_METHODS, FIXED_STEP_METHODS, METHODS, SolverConfig, solve
from flowlab.ode.trace import ExactTrace, Hutchinson, TraceEstimator

__all__ = [
    "ADAPTIVE_METHODS",
    "FIXED_STEP_METHODS",
    "METHODS",
    "ODE_CHECK_OPTIONS",
    "ODE_CONVENTION",
    "ODE_NOTES",
    "ODE_REFERENCES",
    "SOLVER_OPTIONS",
    "AugmentedDynamics",
    "ContinuousFlow",
    "ExactTrace",
    "Hutchinson",
    "ODEBijector",
    "SolverConfig",
    "TimeMLP",
    "TraceEstimator",
    "build_ode_bijector",
    "continuous_flow",
    "field_from_options",
    "ode_options",
    "ode_tolerances",
    "set_solver",
    "solve",
    "solver_config",
    "straightness",
]
