"""Where a flow under check comes from: :class:`FlowOrigin`, plain data from which any process rebuilds the flow's
``FlowSpec`` and writes the command that reproduces a case.

A flow is checked as one of:

- a registered flow (``flowlab check NAME``): its registered ``FlowSpec``;
- a registered flow in larger dimensions (``--dim N``): that spec with ``min_dim = N`` (so the kit draws
  N..N+4, :func:`flowlab.checks.strategies.dims`), named ``NAME@dN`` in reports;
- a trained flow (``--checkpoint PATH``): :func:`flowlab.checks.trained.trained_spec`, the checkpoint's flow at its
  trained parameters, named ``FLOW@RUN``.

Derived specs are returned by :meth:`FlowOrigin.spec`, never registered: nothing a check does changes the process
registry. ``plugins`` are the ``--plugin`` files that define the flow or the properties; a worker process of
``flowlab check -n`` loads them before it rebuilds the spec (:mod:`flowlab.checks.pool`), and the reproduce command
names them.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowlab.errors import OptionError

if TYPE_CHECKING:
    from flowlab.spec import Case, FlowSpec


@dataclass(frozen=True)
class FlowOrigin:
    """A registered flow (``name``), optionally at dimension ``dim``, or the trained flow of ``checkpoint``; with
    the ``--plugin`` files (``plugins``) that define it or the properties run on it."""

    name: str | None = None
    checkpoint: str | None = None
    dim: int | None = None
    plugins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.name is None) == (self.checkpoint is None):
            raise OptionError("a flow to check is a registered NAME or a --checkpoint PATH, exactly one of them")
        if self.dim is not None and (self.checkpoint is not None or self.dim < 1):
            raise OptionError(
                f"--dim: expected N >= 1 for a registered flow (a checkpoint fixes its own dim), got {self.dim}"
            )

    def spec(self) -> FlowSpec:
        """The ``FlowSpec`` to check (see the module docstring); :class:`OptionError` for a ``dim`` above the flow's
        ``max_dim``, :class:`~flowlab.errors.UnknownFlowError` / :class:`~flowlab.errors.CheckpointError` for a
        name or checkpoint that cannot be found."""
        if self.checkpoint is not None:
            from flowlab.checks.trained import trained_spec

            return trained_spec(self.checkpoint)
        from flowlab.registry import flow_spec

        spec = flow_spec(str(self.name))
        if self.dim is None:
            return spec
        if spec.max_dim is not None and spec.max_dim < self.dim:
            raise OptionError(f"--dim {self.dim}: above the largest dimension of {spec.name} (max_dim {spec.max_dim})")
        return dataclasses.replace(spec, name=f"{spec.name}@d{self.dim}", min_dim=max(self.dim, spec.min_dim))

    def selection_args(self) -> list[str]:
        """The ``flowlab check`` arguments that select this flow (plugin files, then the name or checkpoint). No
        ``--dim``: a reproduce command's ``--case`` gives the dimension itself."""
        plugins = [part for path in self.plugins for part in ("--plugin", path)]
        flow = ["--checkpoint", str(self.checkpoint)] if self.checkpoint is not None else [str(self.name)]
        return [*plugins, *flow]

    def reproduce(self, check: str, case: Case) -> str:
        """The one-line ``flowlab check`` command that reruns ``check`` on this flow for ``case`` only."""
        data = {
            "dim": case.dim,
            "batch": case.batch,
            "seed": case.seed,
            "options": dict(case.options),
            "scale": case.scale,
            **({"life": case.life} if case.life != "fresh" else {}),
            **({"autograd": False} if not case.autograd else {}),
        }
        payload = json.dumps(data, default=repr, separators=(",", ":"))
        args = [*self.selection_args(), "--property", check, "--device", case.device]
        if case.profile != "quick":
            args += ["--profile", case.profile]
        return shlex.join(["flowlab", "check", *args, "--case", payload])
