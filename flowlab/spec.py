"""Records that plugins register: ``FlowSpec`` (a flow), ``Option`` (one of its build options), ``Tolerance``."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from flowlab.bijector import Bijector
from flowlab.errors import OptionError

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
class Option:
    """One keyword of a flow's ``build``: its default, and the values it allows.

    ``choices`` lists the allowed values when there are few (the conformance kit draws from them); ``low`` and
    ``high`` bound a number (inclusive). ``check`` may hold a predicate for anything else. With none of them, any
    value of the default's type is accepted (``None`` defaults accept anything).
    """

    default: Any
    help: str = ""
    choices: Sequence[Any] | None = None
    low: float | None = None
    high: float | None = None
    check: Callable[[Any], bool] | None = None

    def validate(self, flow: str, name: str, value: Any) -> None:
        """Raise :class:`OptionError` naming the option and its allowed values if ``value`` is not allowed."""
        if self.choices is not None:
            if value not in self.choices:
                raise OptionError(
                    f"{flow}: option {name}={value!r} is not allowed; expected one of "
                    f"{', '.join(repr(c) for c in self.choices)}"
                )
            return
        if self.default is not None and not _same_type(value, self.default):
            raise OptionError(
                f"{flow}: option {name} expects a {type(self.default).__name__}, got {type(value).__name__} {value!r}"
            )
        if self.low is not None and value < self.low:
            raise OptionError(f"{flow}: option {name}={value!r} is below its minimum {self.low}")
        if self.high is not None and value > self.high:
            raise OptionError(f"{flow}: option {name}={value!r} is above its maximum {self.high}")
        if self.check is not None and not self.check(value):
            raise OptionError(f"{flow}: option {name}={value!r} is not allowed ({self.help or 'failed its check'})")

    def describe(self) -> str:
        """The allowed values in words, for help texts and reports."""
        if self.choices is not None:
            return " | ".join(repr(c) for c in self.choices)
        if self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else repr(self.low)
            hi = "inf" if self.high is None else repr(self.high)
            return f"{type(self.default).__name__} in [{lo}, {hi}]"
        return "any" if self.default is None else type(self.default).__name__


def _same_type(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


@dataclass(frozen=True)
class Tolerance:
    """A property-check tolerance a flow needs instead of the kit's default, with the reason why."""

    value: float
    reason: str


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
