"""Records of the conformance kit: ``Case`` (one drawn example), ``CheckResult``, ``CheckSpec`` (one property).

A property check is a function ``run(spec, case) -> CheckResult`` over a registered flow and one case. The runner
(``flowlab.checks.runner``) draws cases with Hypothesis, calls ``run`` for each, keeps the worst error, and reports
the shrunk counterexample of a failure. The same functions back ``flowlab check`` and the pytest suite.
Checks are registered by plugins through ``flowlab_register_checks(register)``, built-in checks included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from flowlab.plugins import RECORD_TYPES

if TYPE_CHECKING:
    from flowlab.spec import FlowSpec

Status = Literal["passed", "failed", "skipped", "inconclusive"]


@dataclass(frozen=True)
class Case:
    """One drawn example: where and how to build the flow, and which inputs to feed it.

    ``seed`` seeds both the parameters (the kit perturbs them so identity initialisations are not trivially
    correct) and the inputs; ``scale`` is the inputs' standard deviation (several standard deviations are drawn).
    ``profile`` is the Hypothesis profile the case was drawn under: statistical checks size their samples by it
    (``quick``: CI-sized, ``thorough``: the sample sizes whose power ``docs/checks.md`` states).
    """

    dim: int
    batch: int
    seed: int
    options: Mapping[str, Any] = field(default_factory=dict)
    scale: float = 1.0
    dtype: str = "float64"
    device: str = "cpu"
    profile: str = "quick"


@dataclass
class CheckResult:
    """The outcome of a check on one case (or, after the runner aggregates, on all cases).

    ``max_error`` is compared with ``tolerance`` (``max_error <= tolerance`` passes). ``detail`` says in words what
    was measured, and for a failure what went wrong (e.g. which rows, which values). A statistical check states its
    power in ``detectable``: the smallest error of the quantity it estimates that this case would have detected
    (e.g. ``|Z − 1|`` for ``normalization``: 5 standard errors plus the slack), in the units of that quantity.
    """

    status: Status
    max_error: float | None = None
    tolerance: float | None = None
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    detectable: float | None = None


@dataclass(frozen=True)
class CheckSpec:
    """A property of flows, registered through ``flowlab_register_checks``.

    - ``name``: unique, e.g. ``"invertibility"``.
    - ``summary``: one line for reports.
    - ``run(spec, case) -> CheckResult``: checks one case.
    - ``applies(spec) -> bool | str``: ``True`` to run; ``False`` or a reason string to skip (the reason is shown).
    - ``tolerance``: the default tolerance; a FlowSpec overrides it with ``tolerances[name] = Tolerance(v, reason)``.
    - ``max_examples``: cap on drawn cases (statistical checks use few: fixed seeds and CLT-derived bounds).
    - ``requires``: capabilities (``flowlab.spec.CAPABILITIES``) the check needs. A flow that does not declare them
      in ``FlowSpec.capabilities`` is not covered by the check (a skip whose reason says so, listed by the report);
      a flow that declares them must live up to them: a missing attribute or option is a failure, never a skip.
    - ``supersedes``: names of checks this one makes redundant on the flows it covers (it verifies the same
      property more strictly: ``ode_logdet`` supersedes ``logdet`` for ODE flows); the runner skips those there,
      saying so, instead of paying for the same property twice.
    """

    name: str
    summary: str
    run: Callable[[FlowSpec, Case], CheckResult]
    applies: Callable[[FlowSpec], bool | str] = lambda spec: True
    tolerance: float = 1e-6
    max_examples: int | None = None
    requires: frozenset[str] = frozenset()
    supersedes: frozenset[str] = frozenset()

    def coverage(self, spec: FlowSpec) -> bool | str:
        """``True`` if this check runs on ``spec``; else the reason it does not (``applies``, then ``requires``)."""
        applies = self.applies(spec)
        missing = sorted(set(self.requires) - set(spec.capabilities))
        if applies is True and missing:
            return f"not covered: needs the capabilities {', '.join(missing)}, not declared (FlowSpec.capabilities)"
        return applies

    def tolerance_for(self, spec: FlowSpec) -> float:
        """The tolerance for ``spec``: its own override if it declares one, else this check's default."""
        override = spec.tolerances.get(self.name)
        return self.tolerance if override is None else override.value


RECORD_TYPES["checks"] = CheckSpec


def checks() -> dict[str, CheckSpec]:
    """The registered checks, ``name -> CheckSpec``, in registration order (built-ins first)."""
    from flowlab.plugins import get_registry

    return get_registry().records("checks")


def check_spec(name: str) -> CheckSpec:
    """The check called ``name`` (:class:`~flowlab.errors.UnknownFlowError` listing the known ones if none)."""
    from flowlab.plugins import get_registry

    spec: CheckSpec = get_registry().get("checks", name).record
    return spec
