"""The records that describe a flow's build options: ``Option`` (one keyword of ``build``), ``Tolerance`` (a check
tolerance a flow needs, with its reason), and ``CONTEXT_OPTION`` (the option of every conditional flow).

Plain records with no dependency on torch or on the registry, so the core (``flowlab.flow``, ``flowlab.ode``) and
the registry (``flowlab.spec``) share them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flowlab.errors import OptionError


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


#: the build option of a conditional flow (``docs/conditioning.md``): ``context_dim=k > 0`` conditions the flow's
#: networks on a context in ``R^k``; 0, the default, builds the unconditional flow. The conformance kit draws it
#: from ``flowlab.checks.strategies.CONTEXT_DIMS`` for every flow that has an option of this name.
CONTEXT_OPTION_NAME = "context_dim"
CONTEXT_OPTION = Option(0, "context features the flow is conditioned on (0: unconditional)", low=0)
