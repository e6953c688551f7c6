"""The records of the grader: an ``Exercise`` is the flows it builds from an answer (``Variant``), each with the
properties of the conformance kit it runs and what their failures usually mean there (hints)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowlab.errors import FlowlabError
from flowlab.spec import FlowSpec


class AnswerError(FlowlabError, TypeError):
    """The answer is not of the kind the exercise grades (a class where a function is expected, a missing part)."""


@dataclass(frozen=True)
class Variant:
    """One flow built from the answer and the properties run on it.

    - ``label``: the flow in the student's words ("your layer", "your layer with a strong conditioner").
    - ``flow``: ``answer -> FlowSpec`` (never registered: the kit checks it as it is); raises
      :class:`AnswerError` when the answer is not what the exercise asks for.
    - ``properties``: names of registered checks (``flowlab.checks.checks()``), run in this order.
    - ``hints``: property name -> what a failure of that property usually means in this exercise.
    """

    label: str
    flow: Callable[[Any], FlowSpec]
    properties: tuple[str, ...]
    hints: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Exercise:
    """An exercise: ``name`` (what :func:`flowlab.grade` takes), a one-line ``title``, what to pass as the answer
    (``answer``, in words) and the ``variants`` graded."""

    name: str
    title: str
    answer: str
    variants: tuple[Variant, ...]


def a_class(answer: Any, what: str) -> type:
    """``answer`` if it is a class; :class:`AnswerError` saying what ``what`` should be otherwise."""
    if isinstance(answer, type):
        return answer
    raise AnswerError(f"expected {what}: the class itself, got {_kind(answer)}")


def a_function(answer: Any, what: str) -> Callable[..., Any]:
    """``answer`` if it is a function (a callable that is not a class); :class:`AnswerError` otherwise."""
    if callable(answer) and not isinstance(answer, type):
        return answer
    raise AnswerError(f"expected {what}: a function, got {_kind(answer)}")


def _kind(answer: Any) -> str:
    if isinstance(answer, type):
        return f"the class {answer.__name__}"
    return f"{type(answer).__name__} {answer!r}"[:120]
