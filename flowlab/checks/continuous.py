"""What the ODE properties need of a continuous flow, asked of the flow itself (never of a declaration).

- :func:`solver_settable`: the solver's tolerances can be pinned: through build options ``rtol``/``atol`` (a peer's
  flow, e.g. zuko's CNF, has them) or through the flow's solver (:class:`flowlab.ode.ContinuousFlow`: ``solver``);
- :func:`continuous_protocol`: the flow is a :class:`~flowlab.ode.ContinuousFlow` (field, trace estimator, a solve
  with a given probe), which the Hutchinson properties need;
- :func:`build_ode`: the case's flow with the solver pinned (tolerances, dopri5, other pins such as the exact trace
  in eval mode) by whichever of the two ways the flow offers.

A property that applies to a continuous flow (by ``FlowSpec.kind``) but whose need is not met is *uncovered*: the
report says what is missing, and ``flowlab check`` fails unless the flow opts out with a reason.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flowlab.checks.cases import build_case_bijector
from flowlab.ode import ContinuousFlow, continuous_flow
from flowlab.spec import Case, FlowSpec

#: the members of ContinuousFlow, to name the missing ones
PROTOCOL_MEMBERS = ("dim", "field", "solver", "nfe", "nfe_backward", "trace_estimator", "integrate", "trajectory")


def continuous_protocol(spec: FlowSpec, bijector: Any) -> bool | str:
    """``True`` if ``bijector`` runs a :class:`~flowlab.ode.ContinuousFlow`; else what it lacks."""
    if continuous_flow(bijector) is not None:
        return True
    missing = [name for name in (*PROTOCOL_MEMBERS, "regularization") if not hasattr(bijector, name)]
    return (
        f"{spec.name} is continuous but its bijector ({type(bijector).__name__}) is not a flowlab.ode.ContinuousFlow "
        f"(missing: {', '.join(missing) or 'members of the wrong kind'}): nothing to draw probes from or to solve with "
        "a given probe (build it with flowlab.ode.ODEBijector, or opt out with FlowSpec.opt_out and a reason)"
    )


def solver_settable(spec: FlowSpec, bijector: Any) -> bool | str:
    """``True`` if the solver's tolerances can be pinned (build options ``rtol``/``atol``, or the protocol)."""
    if {"rtol", "atol"} <= set(spec.options) or continuous_flow(bijector) is not None:
        return True
    return (
        f"{spec.name} is continuous but its solver tolerances cannot be set: no rtol/atol build options and its "
        f"bijector ({type(bijector).__name__}) is not a flowlab.ode.ContinuousFlow (the ODE properties hold the flow "
        "to tolerances tied to its solver's)"
    )


def build_ode(
    spec: FlowSpec, case: Case, *, rtol: float, atol: float, method: str = "dopri5", train: bool = False, **pinned: Any
) -> Any:
    """The case's bijector with its solver pinned: ``rtol``, ``atol``, ``method`` (where the flow lets the method be
    chosen) and ``pinned`` (e.g. ``adjoint=False``, ``eval_trace="exact"``) as build options where the flow has
    them, and on its :class:`~flowlab.ode.ContinuousFlow` solver where it is one."""
    method_option = spec.options.get("method")
    choosable = method_option is not None and (method_option.choices is None or method in method_option.choices)
    options = {"rtol": rtol, "atol": atol, **({"method": method} if choosable else {}), **pinned}
    bijector = build_case_bijector(spec, case, train=train, **options)
    ode: ContinuousFlow | None = continuous_flow(bijector)
    if ode is not None:
        solver: dict[str, Any] = {"rtol": rtol, "atol": atol, "method": method, "steps": 0}
        if "adjoint" in pinned:
            solver["adjoint"] = pinned["adjoint"]
        ode.solver = replace(ode.solver, **solver)
    return bijector
