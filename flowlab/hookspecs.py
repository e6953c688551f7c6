"""The hooks a flowlab plugin may implement, each documented where it is declared.

A plugin is a module (or object) whose functions are marked with ``@flowlab.hookimpl`` and that is announced in the
``flowlab`` entry-point group of its distribution::

    [project.entry-points.flowlab]
    myflows = "myflows_package"

The hooks use the register-callback style: flowlab calls each hook once per plugin with a ``register`` function,
and the plugin calls ``register(record)`` for each thing it contributes. A plugin whose import fails, or whose hook
raises, is recorded as broken with its error, contributes nothing, and every other plugin keeps working.
Built-in flows are plugins of exactly this kind (see ``plugins/`` in the source tree).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("flowlab")
hookimpl = pluggy.HookimplMarker("flowlab")


@hookspec
def flowlab_register_flows(register: Callable[[Any], None]) -> None:
    """Register flows: call ``register(FlowSpec(...))`` once per flow.

    Called once per plugin when the registry is first built (the first call to ``flowlab.flows()``,
    ``flowlab.build()`` or any CLI command that needs flows). Names must be unique across all plugins: a second
    flow with a taken name is an error naming both plugins, and the later plugin is marked broken.
    ``FlowSpec.build`` should be cheap to import; build networks only when it is called.
    """


@hookspec
def flowlab_register_datasets(register: Callable[[Any], None]) -> None:
    """Register datasets: call ``register(DatasetSpec(...))`` once per dataset.

    Called once per plugin when the registry is first built. Dataset names are unique across plugins, as flow
    names are. Datasets sample from a seed with a local ``torch.Generator`` (never the global RNG).
    """


@hookspec
def flowlab_register_checks(register: Callable[[Any], None]) -> None:
    """Register property checks for the conformance kit: call ``register(CheckSpec(...))`` once per check.

    Called once per plugin when the registry is first built. A plugin that brings a new kind of flow can bring the
    property its kind needs (for example a trace-estimator check for stochastic log-dets); ``flowlab check`` runs
    every registered check on every flow the check applies to. Check names are unique across plugins.
    """


@hookspec
def flowlab_register_objectives(register: Callable[[Any], None]) -> None:
    """Register training objectives: call ``register(ObjectiveSpec(...))`` once per objective.

    Called once per plugin when the registry is first built. ``flowlab train --objective NAME`` (and
    ``TrainConfig(objective=NAME)``) minimises ``ObjectiveSpec.loss(flow, x, context)`` on each batch; the record
    (``flowlab/objectives.py``) says which flow kinds it trains, whether it needs a vector field, its options, a
    ``prepare`` step run once per run, its references and its explanation. Names are unique across plugins. The
    built-ins (``mle``, ``cfm``, ``otcfm``, ``rectified``) come from ``plugins/flowlab_objectives``. A loss draws
    its randomness from ``context.generator`` only, so a resumed run repeats the uninterrupted one.
    """
