"""``ObjectiveSpec``: a training objective registered by a plugin through ``flowlab_register_objectives``.

The trainer (:mod:`flowlab.training`) takes one Adam step per batch on ``objective.loss(flow, x, context)``; the
built-in plugin ``flowlab_objectives`` registers ``mle`` (maximum likelihood, every flow) and the simulation-free
flow-matching objectives ``cfm``, ``otcfm`` and ``rectified`` (flows whose bijector exposes a vector field).

**Time and direction.** One convention with flowlab's ODE flows (:mod:`flowlab.ode.bijector`): t = 0 is the base,
t = 1 the data, and sampling integrates ``dz/dt = f(t, z)`` from 0 to 1. A flow-matching objective regresses
``f(t, x_t)`` onto the velocity ``u_t`` of a path ``x_t`` from a base point ``x_0 = z ~ N(0, I)`` at t = 0 to a data
point ``x_1 = x`` at t = 1, so the trained field is sampled and evaluated exactly as a field trained by maximum
likelihood: ``forward`` (0 → 1) samples, ``inverse`` (1 → 0) and the exact trace give ``log q(x)``.

**Two meanings of "context".** The third argument of a loss, an :class:`ObjectiveContext`, is the objective's *run
context* (the step's generator, options, device, state). A conditional flow's *conditioning context*
(``docs/conditioning.md``: ``Flow.log_prob(x, context=c)``) reaches a loss as the keyword ``condition``
(``[batch, context_dim]``, the batch's rows' contexts), and only a loss of an objective with ``conditional=True``
(``mle``): the others fit unconditional densities, and :meth:`ObjectiveSpec.check_flow` refuses a conditional flow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from flowlab.errors import OptionError
from flowlab.ode import continuous_flow
from flowlab.spec import Option

if TYPE_CHECKING:
    from flowlab.flow import Flow
    from flowlab.spec import FlowSpec


@dataclass
class ObjectiveContext:
    """What a loss sees besides the flow and the batch.

    - ``generator``: a CPU ``torch.Generator`` for this step's draws (times, base points, noise), seeded from
      ``(run seed, "objective", step)`` so a resumed run draws what the uninterrupted one drew; draw on the CPU and
      move to ``device``.
    - ``options``: the objective's resolved options (``ObjectiveSpec.options`` defaults updated by the run's).
    - ``device``: the flow's device.
    - ``seed``: the run's seed (for draws made once per run, e.g. reflow couplings).
    - ``state``: a dict the objective may fill in ``prepare`` (e.g. a teacher's couplings) and read in ``loss``.
    """

    generator: torch.Generator
    options: Mapping[str, Any]
    device: torch.device
    seed: int = 0
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectiveSpec:
    """A training objective (``flowlab train --objective NAME``).

    - ``name``: unique registry name, e.g. ``"cfm"``.
    - ``summary``: one line for listings.
    - ``loss(flow, x, context) -> Tensor``: the scalar to minimise on the batch ``x`` (``[batch, dim]``, drawn from
      the data); ``context`` is an :class:`ObjectiveContext` (the run context). With ``conditional=True`` it is
      called as ``loss(flow, x, context, condition=c)`` for a conditional flow, ``c`` the ``[batch, context_dim]``
      conditioning contexts of the batch's rows (``Flow.log_prob(x, context=c)``).
    - ``conditional``: whether it trains conditional flows (``context_dim > 0``); ``mle`` does.
    - ``kinds``: the flow kinds (``FlowSpec.kind``) it trains; ``needs_field``: whether it needs the bijector to
      expose a vector field ``bijector.field(t, z)`` (flow matching regresses the field itself).
    - ``options``: name -> :class:`~flowlab.spec.Option` (e.g. ``sigma``), validated like a flow's.
    - ``lr``: the Adam learning rate a run takes when it names none (``TrainConfig(lr=None)``, ``flowlab train``
      without ``--lr``): flow matching's regression onto a known target, with no ODE solve in the loss, trains
      well at larger steps than a likelihood through an ODE solve (``benchmarks/flow_matching.py``).
    - ``prepare(flow, context)``: optional, called once when a run is created or resumed, before the first step
      (e.g. draw a teacher's couplings into ``context.state``); it may set the flow's initial parameters, which a
      resumed run then overwrites with the checkpoint's.
    - ``references``: papers, as ``"Authors (year). Title. URL"``; ``explanation``: Markdown (the path, the target,
      why its minimiser has the right marginal field), shown by ``flowlab explain NAME``.
    """

    name: str
    summary: str
    #: ``loss(flow, x, context)``, and ``condition=`` for a conditional flow (see above): hence ``...``
    loss: Callable[..., Tensor]
    kinds: frozenset[str] = frozenset({"discrete", "continuous"})
    needs_field: bool = False
    conditional: bool = False
    options: Mapping[str, Option] = field(default_factory=dict)
    lr: float = 1e-3
    prepare: Callable[[Flow, ObjectiveContext], None] | None = None
    references: Sequence[str] = ()
    explanation: str = ""

    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults updated with ``options``; an unknown name or a disallowed value raises :class:`OptionError`."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(f"{k}={o.default!r}" for k, o in self.options.items()) or "none"
            raise OptionError(
                f"objective {self.name}: unknown option {', '.join(map(repr, unknown))}; known options: {known}"
            )
        resolved = {name: option.default for name, option in self.options.items()}
        for name, value in options.items():
            self.options[name].validate(f"objective {self.name}", name, value)
            resolved[name] = value
        return resolved

    def check_flow(self, spec: FlowSpec, bijector: object) -> None:
        """:class:`OptionError` saying why this objective cannot train the flow ``spec`` built as ``bijector``."""
        kinds = "/".join(sorted(self.kinds))
        if spec.kind not in self.kinds:
            raise OptionError(
                f"objective {self.name!r} trains {kinds} flows; flow {spec.name!r} is {spec.kind}. "
                "Use --objective mle, or a flow with a vector field (cnf, ffjord, augmented)"
            )
        if self.needs_field and continuous_flow(bijector) is None:
            raise OptionError(
                f"objective {self.name!r} regresses a vector field f(t, z), but flow {spec.name!r}'s bijector "
                f"({type(bijector).__name__}) exposes none (.field); use --objective mle, or an ODE flow"
            )
        context_dim = int(getattr(bijector, "context_dim", 0))
        if context_dim and not self.conditional:
            raise OptionError(
                f"objective {self.name!r} fits unconditional densities; flow {spec.name!r} is conditional "
                f"(context_dim {context_dim}): use --objective mle, or build it without -o context_dim"
            )
