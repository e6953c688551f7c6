"""flowlab plugin ``cnf``: a continuous normalizing flow with the exact trace; also registers the ODE checks."""

from __future__ import annotations

from typing import Any

from flowlab import FlowSpec, hookimpl
from flowlab.ode import (
    ODE_CHECK_OPTIONS,
    ODE_CONVENTION,
    ODE_NOTES,
    ODE_REFERENCES,
    ODEBijector,
    build_ode_bijector,
    ode_options,
    ode_tolerances,
)
from flowlab_cnf import time_embedding
from flowlab_cnf.checks import CHECKS

EXPLANATION = (
    r"""
**Transform.** `x = z(1)` where `dz/dt = f(t, z)`, `z(0) = z`, for a learned vector field `f`.
**Inverse**: integrate the same ODE backwards from `z(1) = x` to t = 0: any Lipschitz `f` gives a bijection,
with no architectural constraint on `f`.

**Log-determinant** (instantaneous change of variables, Chen et al. 2018): `d/dt log p(z(t)) = −tr ∂f/∂z`, so
`log|det ∂x/∂z| = ∫₀¹ tr ∂f/∂z(t, z(t)) dt`. Here the trace is **exact**: at each function evaluation the full
Jacobian is built, O(d) times the work of `f` per evaluation and O(d · NFE) per solve. The MLP field carries
`∂f/∂z` forward through its layers with its value (`∂a_{ℓ+1}/∂z = W_{ℓ+1} diag(σ'(a_ℓ)) ∂a_ℓ/∂z`,
`flowlab.JacobianField`); a field without that gets `d` vector-Jacobian products batched in one autograd call.
Fine for small `d`; for large `d` use `ffjord` (Hutchinson, O(1)).
"""
    + ODE_CONVENTION
    + ODE_NOTES
)


def build(dim: int, **options: Any) -> ODEBijector:
    return build_ode_bijector(dim, options)


SPEC = FlowSpec(
    name="cnf",
    summary="continuous normalizing flow dz/dt = f(t, z) (torchdiffeq), exact trace log-det, O(d) per evaluation",
    build=build,
    kind="continuous",
    logdet="exact",
    options=ode_options(),
    references=ODE_REFERENCES,
    explanation=EXPLANATION,
    tolerances=ode_tolerances(),
    mixes=True,
    check_options=ODE_CHECK_OPTIONS,
)


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    register(SPEC)


@hookimpl
def flowlab_register_checks(register: Any) -> None:
    for check in (*CHECKS, time_embedding.CHECK):
        register(check)
