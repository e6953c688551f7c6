"""``adapted_spec``: the :class:`~flowlab.spec.FlowSpec` of a flow adapted from another library.

The explanation gets a section naming the library, its installed version and the direction/sign mapping of its
adapter (each adapter module's ``MAPPING``, or the one given), so ``flowlab explain`` and every report say exactly
what was checked. Any library may be named (a flow adapted by hand, with its own mapping). Adapted flows are not
checked by default (``checked_by_default=False``): ``flowlab check`` checks them when named.

``velocity_spec``: the spec of a velocity field trained elsewhere (:func:`~flowlab.adapters.from_velocity_field`),
a continuous flow in its one dimension whose build options are the solver's, checked at its trained parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import metadata
from typing import Any

from torch import nn

from flowlab.adapters import freia, nflows, normflows, pyro, torch_transform, velocity, zuko
from flowlab.bijector import Bijector
from flowlab.errors import OptionError, ShapeError
from flowlab.ode import ODE_CHECK_OPTIONS, SOLVER_OPTIONS, ode_options, ode_tolerances, solver_config
from flowlab.spec import FlowSpec

#: library (its distribution name) -> the direction/sign mapping its adapter implements
MAPPINGS: dict[str, str] = {
    "torch": torch_transform.MAPPING,
    "zuko": zuko.MAPPING,
    "nflows": nflows.MAPPING,
    "normflows": normflows.MAPPING,
    "pyro-ppl": pyro.MAPPING,
    "FrEIA": freia.MAPPING,
    "torchcfm": velocity.MAPPING,
    "flow_matching": velocity.MAPPING,
}

#: the solver a trained field is checked with, as ``flowlab check --checkpoint`` does
#: (``flowlab.checks.trained.TRAINED_SOLVER``: a trained field amplifies the solver's error where it stretches mass,
#: 0.088 off at rtol = atol = 1e-5 on 8gaussians, 1.8e-4 at 1e-8; and it takes more evaluations than a random one)
TRAINED_SOLVER = {**ODE_CHECK_OPTIONS, "rtol": 1e-7, "atol": 1e-7, "max_seconds": 600.0}


@functools.cache
def peer_version(library: str) -> str:
    """The installed version of ``library`` (a distribution name), or ``"not installed"``; looked up once per
    process (each lookup parses the distribution's metadata, and a library registers several flows)."""
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return "not installed"


def adapted_spec(
    name: str,
    summary: str,
    build: Callable[..., Bijector],
    *,
    library: str,
    explanation: str,
    mapping: str | None = None,
    **fields: Any,
) -> FlowSpec:
    """A ``FlowSpec`` for a flow of ``library`` adapted to flowlab (``checked_by_default=False``).

    ``library`` is the peer's distribution name (its installed version is looked up: ``"pyro-ppl"``, ``"FrEIA"``,
    any other). ``explanation`` (Markdown: the peer's transform) is followed by the library's version and the
    direction/sign ``mapping``: by default the one of ``library``'s adapter in :data:`MAPPINGS`; a library without
    one needs it given (say how the flow was adapted). ``fields`` are the other ``FlowSpec`` fields (``options``,
    ``min_dim``, ``mixes``, ``tolerances``, ``base``, ``support``, ...).
    """
    mapping = mapping if mapping is not None else MAPPINGS.get(library)
    if mapping is None:
        raise OptionError(
            f"adapted_spec: expected mapping='how {library} flows are adapted (direction, sign)' for a library "
            f"without a flowlab adapter, got none; libraries with one: {', '.join(MAPPINGS)}"
        )
    section = (
        f"\n\n**Adapted from {library} {peer_version(library)}** (`flowlab.adapters`). {mapping} "
        "flowlab's convention: `forward(z) -> (x, log|det ∂x/∂z|)`, `inverse(x) -> (z, log|det ∂z/∂x|)`, log-dets "
        "`[batch]` in the peer's own dtype and device (not cast)."
    )
    return FlowSpec(
        name=name,
        summary=summary,
        build=build,
        explanation=explanation.strip() + section,
        checked_by_default=False,
        **fields,
    )


def velocity_spec(
    name: str,
    summary: str,
    load: Callable[[], nn.Module],
    dim: int,
    *,
    library: str,
    explanation: str,
    time: str = "t_first",
    time_shape: str | None = None,
    **fields: Any,
) -> FlowSpec:
    """A ``FlowSpec`` for the velocity field ``load()`` (a fresh module each call, at its trained parameters) on
    ``R^dim``, adapted by :func:`~flowlab.adapters.from_velocity_field` (``time``, ``time_shape``).

    A continuous flow whose options are the solver's (``flowlab.ode.SOLVER_OPTIONS``, so the kit's ODE checks can
    pin the tolerances), with the ODE flows' tolerances,
    checked at :data:`TRAINED_SOLVER` in ``dim`` dimensions only and at its own parameters (``fixed_parameters``).
    ``fields`` are other ``FlowSpec`` fields.
    """

    def build(at: int, **options: Any) -> Bijector:
        if at != dim:
            raise ShapeError(f"{name}: the trained field is {dim}-dimensional, expected dim {dim}, got {at}")
        return velocity.from_velocity_field(
            load(), dim, time=time, time_shape=time_shape, solver=solver_config(options)
        )

    every = ode_options()
    return adapted_spec(
        name,
        summary,
        build,
        library=library,
        explanation=explanation,
        **{
            "kind": "continuous",
            "options": {option: every[option] for option in SOLVER_OPTIONS},
            "tolerances": ode_tolerances(),
            "check_options": TRAINED_SOLVER,
            "min_dim": dim,
            "max_dim": dim,
            "fixed_parameters": True,
            **fields,
        },
    )
