"""The conformance kit on a trained flow, at its trained parameters (``flowlab check --checkpoint PATH``).

A bare ``flowlab check`` builds flows at parameters it draws (and perturbs), in dimensions and with options it
draws. A trained flow is one point of that space: its dimension, its options and its parameters are fixed. So
:func:`trained_spec` returns a ``FlowSpec`` derived from the checkpoint's flow (never registered: ``flowlab check
--checkpoint`` runs the kit on it directly, see :mod:`flowlab.checks.origin`):

- ``min_dim = max_dim = `` the checkpoint's dimension (the kit draws no other);
- ``check_options``: the checkpoint's options, then those of the flow's own pins that leave its parameters as they
  are on top (e.g. ODE flows are checked with dopri5, to which the kit's tolerances are tied: solver options change
  how the flow is integrated, never its parameters; a pinned size, such as maf's 8 hidden units for speed, would not
  fit the trained parameters and is left out: :func:`parameter_free_pins`), then :data:`TRAINED_SOLVER`, so the kit
  draws no option;
- ``build`` builds the flow with those options (and any a property pins, such as tighter solver tolerances) and
  loads the trained parameters; ``fixed_parameters = True`` tells :func:`flowlab.checks.cases.build_case_bijector`
  not to perturb them;
- its name is ``FLOW@RUN`` (the run folder's name), its summary says what was trained on what.

What still varies per case: the batch, the seed of the inputs and their scale, the dtype and device, which is what
makes sense at fixed parameters. A property that needs the flow in another dimension, or with options that change
its architecture, cannot be run on these parameters: the kit does not build a flow in a dimension outside
``min_dim..max_dim`` (a :class:`~flowlab.errors.SkipCase`), and options the parameters do not fit raise
:class:`FixedParametersError` (one too); the runner reports either as a skipped case with its reason (never a
failure).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from flowlab.bijector import Bijector
from flowlab.errors import CheckpointError, SkipCase
from flowlab.spec import FlowSpec

#: solver tolerances a trained ODE flow is checked at, where it has the options and was trained looser. The kit's
#: generic ODE tolerances (``flowlab.ode.ode_tolerances``: 1e-2 for two solves at rtol = atol = 1e-5) were measured on
#: its random fields; a trained field is sharper, and the solver's error is amplified by the trained map where it
#: stretches mass: cfm on 8gaussians (2000 steps) at 1e-5 came back from forward(inverse(x)) 0.088 off at a point
#: between two modes, and 1.8e-4 off at 1e-8. The flow is the map the field defines, so the kit checks the map, at
#: the tolerance the ode_* checks pin (1e-7), not the 1e-5 discretisation of it. ``max_seconds``: a trained field
#: takes more evaluations than a random one (120-300 here), and the normalization property solves thousands of
#: points at once; 60 s per solve stopped it on this shared machine (a time limit, not a property).
TRAINED_SOLVER = {"rtol": 1e-7, "atol": 1e-7, "max_seconds": 600.0}


class FixedParametersError(SkipCase):
    """A property asked for a trained flow in another dimension or architecture than its checkpoint's (the runner
    lists the case as skipped, with this reason)."""


def trained_spec(path: str) -> FlowSpec:
    """The derived spec of the flow trained in ``path`` (:class:`CheckpointError` if it cannot be read)."""
    from flowlab.checkpoint import config_from, installed, load_state, read_checkpoint
    from flowlab.datafiles import resolve_dataset
    from flowlab.registry import flow_spec
    from flowlab.runconfig import build_flow

    checkpoint = read_checkpoint(path)
    config = config_from(checkpoint, path)
    dim = int(checkpoint["dim"])
    with installed(path):
        spec = flow_spec(config.flow)
        trained = spec.resolve_options(config.options)
        dataset = resolve_dataset(config.data)  # its preprocessing is saved with the flow (checked: the learned part)
    architecture = {name: value for name, value in trained.items() if name not in spec.check_options}

    def build(at: int, **options: Any) -> Bijector:  # at == dim: min_dim = max_dim = dim (no other is built)
        try:
            flow = build_flow(config.flow, dim, options, dataset.preprocessing())
            load_state(flow, checkpoint, path)
        except CheckpointError as exc:
            changed = {name: options[name] for name in architecture if options.get(name) != architecture[name]}
            raise FixedParametersError(
                f"this property builds the flow with options {changed or options} that the trained parameters do "
                f"not fit ({exc})"
            ) from None
        return flow.bijector.unwrapped()  # the learned bijector, behind the dataset's fixed preprocessing

    label = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).parent.name or Path(path).stem)
    return dataclasses.replace(
        spec,
        name=f"{spec.name}@{label}",
        summary=f"{spec.name} trained on {config.data} by {config.objective} ({path}, step {checkpoint['step']})",
        build=build,
        min_dim=dim,
        max_dim=dim,
        check_options={**trained, **parameter_free_pins(spec, dim, trained), **tighter_solver(spec, trained)},
        fixed_parameters=True,
    )


def parameter_free_pins(spec: FlowSpec, dim: int, trained: dict[str, Any]) -> dict[str, Any]:
    """The options of ``spec.check_options`` that leave the parameters of the flow built with ``trained`` as they are
    (the same names and shapes when each is put on top of ``trained`` alone): those a trained flow can be checked
    with. A pin that changes them (a size) or that the flow refuses with the trained options is left out."""

    def shapes(options: dict[str, Any]) -> dict[str, tuple[int, ...]] | None:
        try:
            return {name: tuple(value.shape) for name, value in spec.build(dim, **options).state_dict().items()}
        except Exception:
            return None

    reference = shapes(trained)
    return {
        name: value
        for name, value in spec.check_options.items()
        if value == trained.get(name) or (reference is not None and shapes({**trained, name: value}) == reference)
    }


def tighter_solver(spec: FlowSpec, options: dict[str, Any]) -> dict[str, Any]:
    """:data:`TRAINED_SOLVER` for the options ``spec`` has: tolerances where the trained ones are looser, the time
    limit where the trained one is shorter."""
    pinned = {}
    for name, value in TRAINED_SOLVER.items():
        if name not in spec.options:
            continue
        if (value > options[name]) if name == "max_seconds" else (value < options[name]):
            pinned[name] = value
    if options.get("compile"):  # the same trace, eagerly: a compilation per case would cost minutes
        pinned["compile"] = False
    return pinned
