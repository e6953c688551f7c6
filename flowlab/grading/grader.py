"""``grade(exercise, answer)``: the conformance kit run on a student's code, and the result in the student's words.

For each variant of the exercise (:mod:`flowlab.grading.exercise`) the answer becomes a ``FlowSpec`` that is never
registered; first one forward and one inverse call at the smallest dimension show whether the code runs at all (a
stub raises ``NotImplementedError``: one clear message instead of the same error from every property); then each
property runs through the kit's own runner, :func:`flowlab.checks.runner.run_property`, over the cases Hypothesis
draws under the profile (``quick`` by default: derandomized, so a grade is the same on every run).
"""

from __future__ import annotations

from typing import Any

import torch

from flowlab.checks import Case, PropertyRun, check_spec, run_property
from flowlab.errors import OptionError
from flowlab.grading.continuous import EXERCISES as CONTINUOUS
from flowlab.grading.discrete import EXERCISES as DISCRETE
from flowlab.grading.exercise import AnswerError, Exercise, Variant
from flowlab.grading.report import Crash, Finding, Grade
from flowlab.registry import build_from_spec
from flowlab.spec import FlowSpec

#: every exercise, by name
EXERCISES: dict[str, Exercise] = {exercise.name: exercise for exercise in (*DISCRETE, *CONTINUOUS)}


def exercise(name: str) -> Exercise:
    """The exercise called ``name``; :class:`~flowlab.OptionError` listing the exercises if there is none."""
    if name not in EXERCISES:
        raise OptionError(f"unknown exercise {name!r}; exercises: {', '.join(EXERCISES)}")
    return EXERCISES[name]


def grade(name: str, answer: Any, *, profile: str | None = None) -> Grade:
    """Grade ``answer`` (the class or function the exercise asks for) on exercise ``name``.

    Runs the exercise's properties of the conformance kit on the flows built from the answer and returns a
    :class:`~flowlab.grading.report.Grade`: ``grade.passed``, ``grade.failed``, and ``print(grade)`` (or the
    grade as a notebook cell's value) for the report: which property failed on which flow, at which point, what
    the code returned against what it should have, and a hint. ``profile``: the kit's Hypothesis profile
    (``quick``, the default, or ``thorough``).
    """
    graded = exercise(name)
    flows: list[tuple[Variant, FlowSpec]] = []
    for variant in graded.variants:
        try:
            flow = variant.flow(answer)
            smoke_test(flow)
        except AnswerError as error:
            return Grade(graded, crash=Crash(variant.label, str(error)))
        except Exception as error:
            return Grade(graded, crash=Crash.of(variant.label, error))
        flows.append((variant, flow))
    findings = [Finding(variant, check(prop, flow, profile)) for variant, flow in flows for prop in variant.properties]
    return Grade(graded, findings)


def check(prop: str, flow: FlowSpec, profile: str | None) -> PropertyRun:
    """``prop`` on ``flow``: first on the simplest case (the smallest dim, two rows, seed 0, the default options),
    where most wrong answers already fail, and without shrinking, which costs an ODE flow seconds per case; then,
    if it passed, over the cases the kit draws."""
    simplest = Case(dim=flow.min_dim, batch=2, seed=0, options=dict(flow.check_options))
    run = run_property(check_spec(prop), flow, "cpu", profile=profile, case=simplest)
    return run if run.status == "failed" else run_property(check_spec(prop), flow, "cpu", profile=profile)


def smoke_test(flow: FlowSpec) -> None:
    """Build ``flow`` at its smallest dimension and call ``forward`` then ``inverse`` on three float64 points: the
    exception of code that does not run, raised here once."""
    bijector: Any = build_from_spec(flow, flow.min_dim, **flow.check_options).double()
    z = torch.randn(3, flow.min_dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        x, _ = bijector(z)
        bijector.inverse(x)
