"""Records that plugins register: ``FlowSpec`` (a flow) and ``CheckSpec`` (a property of the conformance kit), with
the kit's ``Case`` (one drawn example) and ``CheckResult``; ``Option``, ``Tolerance`` and ``CONTEXT_OPTION`` come
from :mod:`flowlab.options`.

Import-light: no torch (the pytest plugin and the Hypothesis strategies read these records at start-up).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from flowlab.errors import OptionError
from flowlab.options import CONTEXT_OPTION, Option, Tolerance

if TYPE_CHECKING:
    from flowlab.bijector import Bijector

__all__ = [
    "CAPABILITIES",
    "CONTEXT_OPTION",
    "Case",
    "CheckResult",
    "CheckSpec",
    "FlowSpec",
    "Kind",
    "LogdetKind",
    "Option",
    "Status",
    "Tolerance",
]

Kind = Literal["discrete", "continuous"]
LogdetKind = Literal["exact", "stochastic"]

#: what a flow may declare in ``FlowSpec.capabilities``: the checks that need a capability apply by this
#: declaration alone (never by looking for an attribute), and one that applies but cannot run fails
CAPABILITIES: dict[str, str] = {
    "solver_tolerances": "build options `rtol` and `atol` set the tolerances of an adaptive ODE solver",
    "solver_method": "build option `method` chooses the solver, and 'dopri5' is one of its choices",
    "trace_estimator": "the bijector has `.field` (f(t, z)) and `.trace_estimator` (`.stochastic`, `draw(y, "
    "generator)`, `estimator(f, z, probe, want_frobenius)`); a stochastic one in training mode",
    "probe_override": "`bijector.integrate(y, reverse=..., probe=...)` solves with the given Hutchinson probe",
    "marginal_likelihood": "build option `augment` and `bijector.marginal_log_prob(x, samples=K)`, an "
    "importance-weighted estimate of log p(x) on the first `dim - augment` coordinates",
}


@dataclass(frozen=True)
class FlowSpec:
    """Everything flowlab knows about one flow, registered by a plugin through ``flowlab_register_flows``.

    - ``name``: unique registry name, e.g. ``"coupling"``.
    - ``summary``: one line for ``flowlab list``.
    - ``build``: ``build(dim, **options) -> Bijector``; receives every option, defaults filled in.
    - ``kind``: ``"discrete"`` (a composition of layers) or ``"continuous"`` (an ODE flow).
    - ``logdet``: ``"exact"`` or ``"stochastic"`` (an unbiased estimate, e.g. Hutchinson's).
    - ``options``: name -> :class:`Option` (default and allowed values).
    - ``references``: papers, as ``"Authors (year). Title. URL"`` strings.
    - ``explanation``: Markdown: the transform, its inverse, the log-det and its cost, the sign convention.
    - ``tolerances``: property name -> :class:`Tolerance` where the kit's default does not fit this flow.
    - ``min_dim``: the smallest dimension the flow supports (default 1); ``max_dim``: the largest (default ``None``:
      any), which bounds the kit's large-dimension ``stress`` case.
    - ``mixes``: whether every output coordinate depends on every input coordinate (a dense Jacobian), as a bool
      or as a predicate of the resolved options; the conformance kit's ``mixing`` check verifies a ``True`` claim
      (a stack of coupling layers without permutations claims to mix and does not).
    - ``check_options``: options the conformance kit builds this flow with instead of drawing them (it draws every
      option with ``choices`` otherwise), e.g. a cheaper solver or a smaller network to keep ``flowlab check`` fast;
      say why in a comment, as for a tolerance.
    - ``capabilities``: names from :data:`CAPABILITIES` this flow offers (solver options, a trace estimator, a
      marginal likelihood, ...). A check that needs one applies by this declaration; if the flow declares it but
      the check cannot use it (a missing attribute or option), the check fails instead of skipping.
    - ``base``: ``base(dim, dtype=..., device=...) -> torch.distributions.Distribution``, the base distribution the
      flow is meant with (``None``: the standard normal); the kit's density checks use it, so a peer library's own
      base is never silently replaced.
    - ``checked_by_default``: whether ``flowlab check`` with no names (and flowlab's own conformance tests) check
      this flow; plugins that register many flows of other libraries set it to ``False`` (name them to check them).
    - ``fixed_parameters``: the kit checks the parameters ``build`` returns as they are (a trained flow,
      ``flowlab check --checkpoint``) instead of perturbing them (``flowlab.checks.cases.perturb_``).
    """

    name: str
    summary: str
    build: Callable[..., Bijector]
    kind: Kind = "discrete"
    logdet: LogdetKind = "exact"
    options: Mapping[str, Option] = field(default_factory=dict)
    references: Sequence[str] = ()
    explanation: str = ""
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    min_dim: int = 1
    max_dim: int | None = None
    mixes: bool | Callable[[Mapping[str, Any]], bool] = False
    check_options: Mapping[str, Any] = field(default_factory=dict)
    capabilities: frozenset[str] = frozenset()
    base: Callable[..., Any] | None = None
    checked_by_default: bool = True
    fixed_parameters: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        unknown = sorted(self.capabilities - set(CAPABILITIES))
        if unknown:
            raise OptionError(
                f"{self.name}: unknown capabilities {unknown}; known capabilities: {', '.join(CAPABILITIES)}"
            )

    def mixes_with(self, options: Mapping[str, Any]) -> bool:
        """Whether this flow, built with the resolved ``options``, claims a dense Jacobian (see ``mixes``)."""
        return self.mixes(options) if callable(self.mixes) else bool(self.mixes)

    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults updated with ``options``; unknown names and disallowed values raise :class:`OptionError`."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, list(self.options), n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            known = ", ".join(f"{k}={o.default!r}" for k, o in self.options.items()) or "none"
            raise OptionError(f"{self.name}: unknown option {', '.join(hints)}; known options: {known}")
        resolved = {name: option.default for name, option in self.options.items()}
        for name, value in options.items():
            self.options[name].validate(self.name, name, value)
            resolved[name] = value
        return resolved


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
