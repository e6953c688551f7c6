"""Holding a flow to the capabilities it declares (``FlowSpec.capabilities``; the names are in
``flowlab.spec.CAPABILITIES``).

A check that needs a capability lists it in ``CheckSpec.requires``: flows that do not declare it are not covered
(the report says so). Inside the check, :func:`require` verifies that a flow which *does* declare it really has the
options and attributes it promises, and raises :class:`CapabilityError` otherwise; the runner turns that into a
failure, so a flow cannot escape a check by naming things differently.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flowlab.checks.cases import build_case_bijector
from flowlab.errors import PluginError
from flowlab.spec import CAPABILITIES, Case, FlowSpec


class CapabilityError(PluginError):
    """A flow declares a capability but lacks an option or attribute that the capability promises."""


def require(
    spec: FlowSpec,
    capability: str,
    *,
    module: Any = None,
    attributes: Iterable[str] = (),
    options: Iterable[str] = (),
) -> None:
    """Raise :class:`CapabilityError` if ``spec`` declares ``capability`` but has no option in ``options`` or
    ``module`` (the built bijector) has no attribute in ``attributes``."""
    missing = [f"option {name!r}" for name in options if name not in spec.options]
    if module is not None:
        missing += [f"attribute {name!r}" for name in attributes if not hasattr(module, name)]
    if missing:
        raise CapabilityError(
            f"{spec.name} declares the capability {capability!r} ({CAPABILITIES[capability]}), but its "
            f"{'bijector' if module is not None else 'FlowSpec'} has no {', no '.join(missing)}"
        )


def build_pinned(spec: FlowSpec, case: Case, *, rtol: float, atol: float, **pinned: Any) -> Any:
    """The case's bijector with the solver tolerances pinned (and dopri5, where the flow declares
    ``solver_method``), after checking that the flow has the options those capabilities promise."""
    require(spec, "solver_tolerances", options=("rtol", "atol"))
    if "solver_method" in spec.capabilities:
        require(spec, "solver_method", options=("method",))
        pinned.setdefault("method", "dopri5")
    return build_case_bijector(spec, case, rtol=rtol, atol=atol, **pinned)
