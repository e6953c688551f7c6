"""Exercises graded by the conformance kit: ``flowlab.grade(exercise, answer)``.

A student writes one piece of a flow (a 1-D change of variables, an affine coupling layer, a MADE mask, the trace
of a CNF, a time embedding); the grader builds flows around it (:class:`~flowlab.FlowSpec` records that are never
registered), runs the kit's properties on them with :func:`flowlab.checks.runner.run_property`, and says what is
wrong in the student's words: which property, at which point, what the code returned against what it should have,
and what that failure usually means in this exercise. The exercises' notebooks are in ``docs/exercises/``, their
solutions in ``solutions/``.

- :func:`grade` grades an answer; :class:`~flowlab.grading.report.Grade` is what it returns;
- ``EXERCISES``: the exercises by name (:mod:`flowlab.grading.discrete`, :mod:`flowlab.grading.continuous`).
"""

from __future__ import annotations

from flowlab.grading.exercise import AnswerError, Exercise, Variant
from flowlab.grading.grader import EXERCISES, exercise, grade
from flowlab.grading.report import Grade

__all__ = ["EXERCISES", "AnswerError", "Exercise", "Grade", "Variant", "exercise", "grade"]
