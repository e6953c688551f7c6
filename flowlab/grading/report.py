"""A grade and how it reads: which property failed on which flow, at which point, what the code returned against what
it should have, and what that failure usually means in the exercise.

A :class:`Grade` prints as plain text (``str(grade)``; a notebook or IPython shows the same text); its last line is
the verdict: ``All N checks pass.`` or ``Not yet: ...``.
"""

from __future__ import annotations

import math
import sys
import textwrap
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowlab.checks import Case, PropertyRun
from flowlab.grading.exercise import Exercise, Variant

#: what each property asks of the student's code, in the student's words (else the check's own summary)
WHAT: dict[str, str] = {
    "invertibility": "inverse(forward(z)) must give z back, forward(inverse(x)) x, and the two log-dets must cancel",
    "logdet": "the log-det you return must be log|det J| of the Jacobian autograd computes through your code",
    "normalization": "the density p(x) = p_z(z)·|det ∂z/∂x| must integrate to 1",
    "sample_consistency": "sampling (forward) and the density (inverse) must give the same log p of a sample",
    "batch_independence": "each row must be transformed on its own, whatever else is in the batch",
    "gradients": "training must reach every parameter with a finite gradient",
    "dtype_device": "your code must follow the dtype and device of its input (float32 and float64 alike)",
    "stress": "at large inputs (scale 25, up to 32 dimensions) float32 must agree with float64, and nothing may "
    "overflow",
    "mixing": "every output must depend on every input: no coordinate may pass through unchanged",
    "ode_logdet": "the log-det of the flow must be log|det| of the Jacobian of the ODE solution",
    "ode_normalization": "the density of the flow must integrate to 1 (on a 2-D grid)",
    "ode_invertibility": "solving back from x must return z, and the two log-dets must cancel",
    "hutchinson_estimator": "averaged over many probes, the estimate must be tr ∂f/∂z, with the variance theory "
    "predicts; over the probe set √d·e_i exactly tr ∂f/∂z",
    "hutchinson_fixed_probe": "a solve with a fixed probe set must average to the exact log-det, at about the cost "
    "of the exact solve",
    "hutchinson_solve_unbiased": "the log-dets of solves with the flow's own probes must average to the exact one",
    "time_embedding": "the field must take one time per row (t of shape [batch] or [batch, 1]), as flow matching "
    "calls it",
}

#: the kit's names of measured values, in the student's words
WORDS: dict[str, str] = {
    "flow log-det": "your log-det",
    "autograd log|det|": "log|det J| by autograd (what it should be)",
    "forward log-det": "your forward log-det",
    "inverse log-det": "your inverse log-det",
    "float32 log-det": "your log-det in float32",
    "float64 log-det": "your log-det in float64",
    "float32 out": "your output in float32",
    "float64 out": "your output in float64",
}

#: the largest number of entries of a vector that is printed
SHOWN = 8
#: the width hints are wrapped to
WIDTH = 110


@dataclass(frozen=True)
class Finding:
    """One property of the kit on one flow built from the answer."""

    variant: Variant
    run: PropertyRun

    @property
    def failed(self) -> bool:
        """Failed, or uncovered: the kit could not run the property on the answer (it lacks what it needs)."""
        return self.run.status in ("failed", "uncovered")


@dataclass(frozen=True)
class Crash:
    """The answer could not run at all (or is not what the exercise takes): nothing was checked."""

    label: str
    message: str
    where: str = ""

    @classmethod
    def of(cls, label: str, error: BaseException) -> Crash:
        """The crash of ``error``, located at the last line of the student's own code in its traceback."""
        frames = [frame for frame in traceback.extract_tb(error.__traceback__) if _is_student_code(frame.filename)]
        where = ""
        if frames:
            frame = frames[-1]
            where = f"in {frame.name}, line {frame.lineno}" + (f": {frame.line.strip()}" if frame.line else "")
        return cls(label, f"{type(error).__name__}: {error}", where)


def _is_student_code(filename: str) -> bool:
    """Not flowlab's, not an installed library's, not Python's own (``<frozen ...>``)."""
    if filename.startswith("<frozen") or filename.startswith(sys.prefix):
        return False
    path = Path(filename).resolve()
    return Path(__file__).resolve().parents[1] not in path.parents and "site-packages" not in path.parts


@dataclass
class Grade:
    """The grade of one answer: every property on every variant (or the crash that stopped it)."""

    exercise: Exercise
    findings: list[Finding] = field(default_factory=list)
    crash: Crash | None = None

    @property
    def passed(self) -> bool:
        """Whether the answer ran and no property failed (inconclusive statistical checks do not fail)."""
        return self.crash is None and not any(finding.failed for finding in self.findings)

    @property
    def failed(self) -> list[str]:
        """``"variant: property"`` of each failure (the crash's label if the answer did not run)."""
        if self.crash is not None:
            return [self.crash.label]
        return [f"{f.variant.label}: {f.run.check}" for f in self.findings if f.failed]

    def verdict(self) -> str:
        """The last line of the report."""
        if self.crash is not None:
            return "✗ Not yet: your code did not run, so nothing was checked."
        failed = len(self.failed)
        ran = sum(f.run.status not in ("skipped", "not_applicable") for f in self.findings)
        return f"✓ All {ran} checks pass." if not failed else f"✗ Not yet: {failed} of {ran} checks fail."

    def __str__(self) -> str:
        lines = [f"Grade of {self.exercise.name!r}: {self.exercise.title}", ""]
        if self.crash is not None:
            lines += _crash_lines(self.crash)
        variants: dict[str, list[Finding]] = {}
        for finding in self.findings:
            variants.setdefault(finding.variant.label, []).append(finding)
        for label, findings in variants.items():
            lines.append(label)
            good = [f"✓ {f.run.check}" for f in findings if f.run.status == "passed"]
            if good:
                lines.append("  " + "  ".join(good))
            for finding in findings:
                if finding.run.status != "passed":
                    lines += _finding_lines(finding)
            lines.append("")
        lines.append(self.verdict())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Grade({self.exercise.name!r}, passed={self.passed}, failed={self.failed})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython and notebooks show the whole report."""
        printer.text(str(self))


def _crash_lines(crash: Crash) -> list[str]:
    lines = [f"✗ {crash.label}: {crash.message}"]
    if crash.where:
        lines.append(f"    {crash.where}")
    return [
        *lines,
        "    Make it run first (a stub still raises NotImplementedError): then every property is checked.",
        "",
    ]


def _finding_lines(finding: Finding) -> list[str]:
    run = finding.run
    mark = "✗" if finding.failed else "?" if run.status == "inconclusive" else "–"
    lines = [f"  {mark} {run.check}: {WHAT.get(run.check, '')}".rstrip(": ")]
    if run.status != "failed":
        return [*lines, f"      {run.status}: {run.detail}"]
    example = run.counterexample
    if example is not None:
        lines.append(f"      where: {_case(example.case)}")
    data = example.data if example is not None else {}
    if "measure" in data and run.max_error is not None:
        lines.append(f"      {data['measure']}: error {_number(run.max_error)}, allowed {_number(run.tolerance)}")
        lines += _values({WORDS.get(k, k): value for k, value in data.items() if k not in ("measure", "row")})
        _, nonfinite, magnitudes = run.detail.partition("; a value is not finite")
        if nonfinite:
            lines.append(f"      a value is not finite{magnitudes}")
    else:
        lines.append(f"      {run.detail}")
    hint = finding.variant.hints.get(run.check)
    if hint:
        lines += textwrap.wrap(f"hint: {hint}", WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 12)
    return lines


def _values(named: dict[str, Any]) -> list[str]:
    """One aligned line per value that prints short (see :func:`_value`)."""
    shown = {name: _value(value) for name, value in named.items() if _value(value)}
    width = max((len(name) for name in shown), default=0) + 1
    return [f"        {name + ':':<{width}} {text}" for name, text in shown.items()]


def _case(case: Case) -> str:
    rows = "1 row" if case.batch == 1 else f"a batch of {case.batch}"
    options = "".join(f", {name} = {value!r}" for name, value in case.options.items())
    return f"d = {case.dim}, {rows}, seed {case.seed}, inputs of scale {case.scale:.3g}{options}"


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def _value(value: Any) -> str:
    """A number or a vector of numbers, short; anything deeper (a table of points) is left out."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(float(value))
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        entries = [_number(float(v)) for v in value[:SHOWN]]
        shown = "[" + ", ".join(entries) + (", …" if len(value) > SHOWN else "") + "]"
        nonfinite = sum(not math.isfinite(v) for v in value)
        return shown + (f" ({nonfinite} of {len(value)} not finite)" if nonfinite else "")
    return ""
