"""Run one property check on one flow and device: Hypothesis draws the cases, shrinks a failure, and the run is
summarised as a :class:`PropertyRun` (the same code path for ``flowlab check``, the test suite and
:mod:`flowlab.testing`).

Per case, ``check.run(spec, case)`` returns a :class:`~flowlab.spec.CheckResult`; an exception raised by the flow
is a failure of that case (its type and message are the detail), a :class:`~flowlab.errors.SkipCase` a skipped
case. A failed case is raised to Hypothesis, which shrinks it to the simplest failing case; that case, its detail
and a one-line command reproducing it are the counterexample (written by
:meth:`flowlab.checks.origin.FlowOrigin.reproduce` from where the flow comes from: a registered name, ``--dim``,
``--checkpoint``, ``--plugin`` files). The run's status is ``failed`` if any case failed, else ``inconclusive`` if
any case was, else ``passed``; ``skipped`` when the check does not apply to the flow, when every case was skipped,
or when the device is absent. The reported error and tolerance are those of the failing case for a failure, else
of the case with the largest ``error / tolerance``; ``detectable`` is the weakest power a statistical check stated
over its cases.

Shrinking is bounded: after the first failure at most ``SHRINK_BUDGET`` new cases are run, for at most
``SHRINK_SECONDS``; later candidates are treated as passing without running them, so Hypothesis settles on the
smallest failing case found within the budget (a slow flow, e.g. an ODE flow, cannot make a failure cost hundreds
of runs). Results are cached per case, so Hypothesis's final replay of the counterexample costs nothing and always
agrees.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hypothesis import Verbosity, given, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from flowlab.checks.origin import FlowOrigin
from flowlab.checks.profiles import PROFILES, profile_name
from flowlab.checks.strategies import cases
from flowlab.errors import SkipCase
from flowlab.registry import check_spec, checks, flows
from flowlab.spec import Case, CheckResult, CheckSpec, FlowSpec, Status

#: where the ``thorough`` profile keeps failing examples, one folder per flow, check and device
DATABASE_DIR = Path(".hypothesis") / "flowlab-check"
#: new cases run while shrinking a failure (see the module docstring)
SHRINK_BUDGET = 12
SHRINK_SECONDS = 10.0


@dataclass
class Counterexample:
    """The shrunk failing case, what went wrong on it, and a shell command that reruns only that case."""

    case: Case
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    reproduce: str = ""


@dataclass
class PropertyRun:
    """The outcome of one check on one flow and device, over all the cases drawn."""

    flow: str
    check: str
    device: str
    status: Status
    max_error: float | None = None
    tolerance: float | None = None
    examples: int = 0
    seconds: float = 0.0
    detail: str = ""
    counterexample: Counterexample | None = None
    detectable: float | None = None


class _CaseFailed(Exception):
    """Raised inside the Hypothesis test so that it shrinks the case."""

    def __init__(self, case: Case, result: CheckResult) -> None:
        super().__init__(result.detail)
        self.case, self.result = case, result


@dataclass
class _Tally:
    examples: int = 0
    worst: CheckResult | None = None
    statuses: set[str] = field(default_factory=set)
    notes: dict[str, str] = field(default_factory=dict)
    detectable: float | None = None

    def add(self, result: CheckResult) -> None:
        self.examples += 1
        self.statuses.add(result.status)
        self.notes.setdefault(result.status, result.detail)
        if result.detectable is not None:
            self.detectable = max(result.detectable, self.detectable or -math.inf)
        if result.max_error is not None and _ratio(result) >= (_ratio(self.worst) if self.worst else -1.0):
            self.worst = result


def _ratio(result: CheckResult) -> float:
    error = result.max_error if result.max_error is not None else 0.0
    if math.isnan(error):
        return math.inf
    tolerance = result.tolerance or 0.0
    return error / tolerance if tolerance > 0 else (math.inf if error > 0 else 0.0)


def run_case(check: CheckSpec, spec: FlowSpec, case: Case) -> CheckResult:
    """``check.run(spec, case)``, an exception turned into a failed result (a broken flow must not crash the kit)."""
    try:
        return check.run(spec, case)
    except Exception as exc:
        if isinstance(exc, SkipCase):  # a case the flow cannot be built for (e.g. flowlab.checks.trained)
            return CheckResult("skipped", detail=str(exc))
        return CheckResult("failed", detail=f"raised {type(exc).__name__}: {exc}")


def run_property(
    check: CheckSpec,
    spec: FlowSpec,
    device: str = "cpu",
    *,
    profile: str | None = None,
    case: Case | None = None,
    on_example: Callable[[], None] | None = None,
    origin: FlowOrigin | None = None,
) -> PropertyRun:
    """Run ``check`` on ``spec`` on ``device``: over Hypothesis-drawn cases (``profile``), or on ``case`` alone.
    ``origin`` says where ``spec`` comes from, for the reproduce command (default: the registered flow of its
    name); ``spec`` need not be registered."""
    started = time.perf_counter()
    run = PropertyRun(flow=spec.name, check=check.name, device=device, status="passed")
    reason = _skip_reason(check, spec, device)
    if reason is not None:
        run.status, run.detail = "skipped", reason
        return run
    tally = _Tally()
    failure: _CaseFailed | None = None
    seen: dict[str, CheckResult] = {}
    shrinks = 0
    failed_at = 0.0

    def attempt(drawn: Case) -> None:
        nonlocal shrinks, failed_at
        key = repr(drawn)
        result = seen.get(key)
        if result is None:
            if "failed" in tally.statuses:
                if shrinks >= SHRINK_BUDGET or time.perf_counter() - failed_at > SHRINK_SECONDS:
                    return
                shrinks += 1
            result = seen[key] = run_case(check, spec, drawn)
            if result.status == "failed" and not failed_at:
                failed_at = time.perf_counter()
            tally.add(result)
            if on_example is not None:
                on_example()
        if result.status == "failed":
            raise _CaseFailed(drawn, result)

    try:
        if case is not None:
            attempt(replace(case, profile=profile_name(profile)))
        else:
            _explore(check, spec, device, profile_name(profile), attempt)
    except _CaseFailed as exc:
        failure = exc
    run.examples = tally.examples
    run.seconds = time.perf_counter() - started
    run.detectable = tally.detectable
    if tally.worst is not None:
        run.max_error, run.tolerance = tally.worst.max_error, tally.worst.tolerance
    if failure is not None:
        # the failing case's own numbers (an exception has none), never those of a passing case
        run.status, run.detail = "failed", failure.result.detail
        run.max_error, run.tolerance = failure.result.max_error, failure.result.tolerance
        run.counterexample = Counterexample(
            case=failure.case,
            detail=failure.result.detail,
            data=failure.result.data,
            reproduce=(origin or FlowOrigin(spec.name)).reproduce(check.name, failure.case),
        )
    elif "inconclusive" in tally.statuses:
        run.status, run.detail = "inconclusive", tally.notes["inconclusive"]
    elif tally.statuses <= {"skipped"}:
        run.status, run.detail = "skipped", tally.notes.get("skipped", "no case ran")
    else:
        run.detail = tally.worst.detail if tally.worst is not None else tally.notes.get("passed", "")
    return run


def _skip_reason(check: CheckSpec, spec: FlowSpec, device: str) -> str | None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return "needs CUDA: torch.cuda.is_available() is False on this machine"
    applies = check.coverage(spec)
    if applies is not True:
        return applies if isinstance(applies, str) and applies else f"{check.name} does not apply to {spec.name}"
    for other in checks().values():
        if check.name in other.supersedes and other.coverage(spec) is True:
            return f"covered by {other.name}, which checks this property more strictly on this flow"
    return None


def _explore(check: CheckSpec, spec: FlowSpec, device: str, profile: str, attempt: Callable[[Case], None]) -> None:
    base = PROFILES[profile]
    limit = base.max_examples if check.max_examples is None else min(base.max_examples, check.max_examples)
    database = None
    if base.database is not None and not base.derandomize:
        database = DirectoryBasedExampleDatabase(str(DATABASE_DIR / f"{spec.name}.{check.name}.{device}"))
    config = settings(
        base,
        max_examples=limit,
        database=database,
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        print_blob=False,
    )

    @config
    @given(cases(spec, device=device, profile=profile))
    def explore(drawn: Case) -> None:
        attempt(drawn)

    explore()


def default_flow_names() -> list[str]:
    """The flows a bare ``flowlab check`` checks: every registered flow whose ``FlowSpec.checked_by_default`` is true
    (a plugin that registers many flows of other libraries opts them out; name them to check them)."""
    return [name for name, spec in flows().items() if spec.checked_by_default]


def selection(
    origins: Sequence[FlowOrigin], properties: Iterable[str] | None = None
) -> list[tuple[FlowOrigin, FlowSpec, CheckSpec]]:
    """Every flow of ``origins`` (its spec resolved, never registered) × every named property (all registered ones
    if ``None``), in that order. Unknown names raise :class:`~flowlab.errors.UnknownFlowError` listing the known
    ones; a checkpoint that cannot be read, :class:`~flowlab.errors.CheckpointError`."""
    specs = [(origin, origin.spec()) for origin in origins]
    chosen = list(checks().values()) if properties is None else [check_spec(name) for name in properties]
    return [(origin, spec, check) for origin, spec in specs for check in chosen]
