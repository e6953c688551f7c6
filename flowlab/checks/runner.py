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

Every drawn case runs, failing or not (a first pass that never stops early), so the worst failing case is seen and
reported beside the shrunk one; then, if a case failed, a second pass draws the same cases again (cached: free) and
stops at the first failure, which Hypothesis shrinks. Shrinking is bounded: at most ``SHRINK_BUDGET`` new cases
are run, for at most ``SHRINK_SECONDS``; later candidates are treated as passing without running them, so
Hypothesis settles on the smallest failing case found within the budget (a slow flow, e.g. an ODE flow, cannot make
a failure cost hundreds of runs). Results are cached per case, so Hypothesis's final replay of the counterexample
costs nothing and always agrees.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from hypothesis import Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.database import DirectoryBasedExampleDatabase

from flowlab.checks.origin import FlowOrigin
from flowlab.checks.profiles import PROFILES, profile_name
from flowlab.checks.strategies import cases
from flowlab.errors import SkipCase, Uncovered
from flowlab.registry import check_spec, checks, flows
from flowlab.spec import Case, CheckResult, CheckSpec, FlowSpec, Status

#: where the ``thorough`` profile keeps failing examples, one folder per flow, check and device
DATABASE_DIR = Path(".hypothesis") / "flowlab-check"
#: new cases run while shrinking a failure (see the module docstring)
SHRINK_BUDGET = 12
SHRINK_SECONDS = 10.0


@dataclass
class Counterexample:
    """A failing (or the worst) case, what went wrong on it, its error against its tolerance, and a shell command
    that reruns only that case. ``marginal``: the error exceeds the tolerance by at most :data:`MARGINAL_ULPS`
    units in the last place (a tolerance to revisit rather than a bug to hunt)."""

    case: Case
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    reproduce: str = ""
    max_error: float | None = None
    tolerance: float | None = None
    marginal: bool = False


@dataclass
class PropertyRun:
    """The outcome of one check on one flow and device, over all the cases drawn.

    ``max_error``/``tolerance`` are those of the worst case seen (largest ``error / tolerance``); for a failure, of
    the worst *failing* case. ``counterexample`` is the shrunk failing case (the simplest one that fails), and
    ``worst`` the worst failing case when it is another, worse one (with its own reproduce command), so a failure's
    size is never hidden behind the smallest case that shows it."""

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
    worst: Counterexample | None = None


#: a failing error within this many units in the last place of the tolerance is flagged as marginal
MARGINAL_ULPS = 4


class _CaseFailed(Exception):
    """Raised inside the Hypothesis test so that it shrinks the case."""

    def __init__(self, case: Case, result: CheckResult) -> None:
        super().__init__(result.detail)
        self.case, self.result = case, result


@dataclass
class _Tally:
    examples: int = 0
    worst: CheckResult | None = None
    worst_failure: tuple[Case, CheckResult] | None = None
    statuses: set[str] = field(default_factory=set)
    notes: dict[str, str] = field(default_factory=dict)
    detectable: float | None = None

    def add(self, case: Case, result: CheckResult) -> None:
        self.examples += 1
        self.statuses.add(result.status)
        self.notes.setdefault(result.status, result.detail)
        if result.detectable is not None:
            self.detectable = max(result.detectable, self.detectable or -math.inf)
        if result.max_error is not None and _ratio(result) >= (_ratio(self.worst) if self.worst else -1.0):
            self.worst = result
        if result.status == "failed" and result.max_error is not None:
            if self.worst_failure is None or _ratio(result) > _ratio(self.worst_failure[1]):
                self.worst_failure = (case, result)


def _ratio(result: CheckResult) -> float:
    error = result.max_error if result.max_error is not None else 0.0
    if math.isnan(error):
        return math.inf
    tolerance = result.tolerance or 0.0
    return error / tolerance if tolerance > 0 else (math.inf if error > 0 else 0.0)


def _marginal(result: CheckResult) -> bool:
    error, tolerance = result.max_error, result.tolerance
    if error is None or tolerance is None or not math.isfinite(error) or error <= tolerance:
        return False
    return error <= tolerance + MARGINAL_ULPS * math.ulp(tolerance)


def run_case(check: CheckSpec, spec: FlowSpec, case: Case) -> CheckResult:
    """``check.run(spec, case)`` in the case's grad mode (``case.autograd``: recording, or off as under
    ``torch.no_grad()``); an exception is a failed result (a broken flow must not crash the kit), except a
    :class:`~flowlab.errors.SkipCase` (a case the flow cannot be built for: skipped) and an
    :class:`~flowlab.errors.Uncovered` (the flow lacks what the property needs: uncovered)."""
    try:
        with torch.set_grad_enabled(case.autograd):
            result = check.run(spec, case)
    except SkipCase as exc:
        return CheckResult("skipped", detail=str(exc))
    except Uncovered as exc:
        return CheckResult("uncovered", detail=str(exc))
    except Exception as exc:
        result = CheckResult("failed", detail=f"raised {type(exc).__name__}: {exc}")
    if result.status == "failed" and case.support.is_real and _non_finite(result.detail):
        result.detail += f" ({SUPPORT_HINT})"
    return result


#: said of a non-finite failure of a flow that declares no support: the likeliest cause of a correct flow failing
SUPPORT_HINT = "if the flow is defined on part of R^d only, declare where: FlowSpec.support, and the kit stays inside"


def _non_finite(detail: str) -> bool:
    return any(word in detail for word in ("NaN", "nan", " inf", "non-finite", "not finite", "NonFinite"))


@dataclass(frozen=True)
class Preflight:
    """The flow built once, before any property runs on it: the bijector, or why it could not be built."""

    bijector: Any = None
    error: str | None = None


_PREFLIGHTS: dict[int, tuple[FlowSpec, Preflight]] = {}


def preflight(spec: FlowSpec) -> Preflight:
    """``spec`` built once per process (cached): at its first allowed dimension, default options (and its
    ``check_options``), in the dtype the kit checks it in, eval mode. The properties' ``needs`` are asked of this
    bijector; a flow that cannot be built at all is one failure (of the ``build`` property), not one per
    property."""
    cached = _PREFLIGHTS.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1]
    from flowlab.checks.cases import build_case_bijector
    from flowlab.checks.strategies import allowed_dims, case_dtype

    try:
        dim = allowed_dims(spec)[0]
        case = Case(dim=dim, batch=1, seed=0, options=dict(spec.check_options), dtype=case_dtype(spec))
        result = Preflight(bijector=build_case_bijector(spec, case))
    except Exception as exc:
        result = Preflight(error=f"{type(exc).__name__}: {exc}")
    _PREFLIGHTS[id(spec)] = (spec, result)
    return result


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
    ``origin`` says where ``spec`` comes from, for the reproduce commands (default: the registered flow of its
    name); ``spec`` need not be registered."""
    started = time.perf_counter()
    run = PropertyRun(flow=spec.name, check=check.name, device=device, status="passed")
    verdict = _before_running(check, spec, device)
    if verdict is not None:
        run.status, run.detail = verdict
        return run
    where = origin or FlowOrigin(spec.name)
    tally = _Tally()
    failure: _CaseFailed | None = None
    seen: dict[str, CheckResult] = {}
    shrinking = False
    shrinks = 0
    shrink_started = 0.0

    def attempt(drawn: Case) -> None:
        nonlocal shrinks, shrink_started
        key = repr(drawn)
        result = seen.get(key)
        if result is None:
            if shrink_started:  # Hypothesis is shrinking a failure: within the budget only
                if shrinks >= SHRINK_BUDGET or time.perf_counter() - shrink_started > SHRINK_SECONDS:
                    return
                shrinks += 1
            result = seen[key] = run_case(check, spec, drawn)
            tally.add(drawn, result)
            if on_example is not None:
                on_example()
        if result.status == "failed" and shrinking:
            if not shrink_started:
                shrink_started = time.perf_counter()
            raise _CaseFailed(drawn, result)

    profile = profile_name(profile)
    seed = None if PROFILES[profile].derandomize else random.getrandbits(64)
    if case is None:
        _explore(check, spec, device, profile, attempt, seed)  # every case, failing or not: the worst is seen
    shrinking = True
    try:
        if case is not None:
            attempt(replace(case, profile=profile))
        elif "failed" in tally.statuses:
            _explore(check, spec, device, profile, attempt, seed)  # the same cases again (cached), then shrink
    except _CaseFailed as exc:
        failure = exc
    run.examples = tally.examples
    run.seconds = time.perf_counter() - started
    run.detectable = tally.detectable
    if tally.worst is not None:
        run.max_error, run.tolerance = tally.worst.max_error, tally.worst.tolerance
    if failure is not None:
        # the failing cases' own numbers (an exception has none), never those of a passing case; the worst failing
        # case beside the shrunk one when it is worse (shrinking finds the simplest failure, not the largest)
        run.status, run.detail = "failed", failure.result.detail
        run.counterexample = _example(failure.case, failure.result, where, check)
        run.max_error, run.tolerance = failure.result.max_error, failure.result.tolerance
        if tally.worst_failure is not None and _ratio(tally.worst_failure[1]) > _ratio(failure.result):
            worst_case, worst = tally.worst_failure
            run.max_error, run.tolerance = worst.max_error, worst.tolerance
            run.worst = _example(worst_case, worst, where, check)
    else:
        for status in ("inconclusive", "uncovered"):
            if status in tally.statuses:
                run.status, run.detail = status, tally.notes[status]
                break
        else:
            if tally.statuses <= {"skipped"}:
                run.status, run.detail = "skipped", tally.notes.get("skipped", "no case ran")
            else:
                run.detail = tally.worst.detail if tally.worst is not None else tally.notes.get("passed", "")
    return run


def _example(case: Case, result: CheckResult, origin: FlowOrigin, check: CheckSpec) -> Counterexample:
    return Counterexample(
        case=case,
        detail=result.detail,
        data=result.data,
        reproduce=origin.reproduce(check.name, case),
        max_error=result.max_error,
        tolerance=result.tolerance,
        marginal=_marginal(result),
    )


def _before_running(check: CheckSpec, spec: FlowSpec, device: str) -> tuple[Status, str] | None:
    """The verdict reached without running a case (see ``Status``), or ``None`` to run the cases."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return "skipped", "needs CUDA: torch.cuda.is_available() is False on this machine"
    applies = check.applies(spec)
    if applies is not True:
        return "not_applicable", applies if isinstance(applies, str) and applies else "not about this kind of flow"
    if check.name in spec.opt_out:
        return "skipped", f"opted out by the flow (FlowSpec.opt_out): {spec.opt_out[check.name]}"
    if not check.builds_first:
        return None
    built = preflight(spec)
    if built.error is not None:
        return "skipped", f"not run: the flow cannot be built (the build property says why: {built.error})"
    needs = _needs(check, spec, built)
    if isinstance(needs, str):
        return "uncovered", needs
    for other in checks().values():
        if check.name in other.supersedes and _covers(other, spec, built):
            return "not_applicable", f"covered by {other.name}, which checks this property more strictly on this flow"
    return None


def _needs(check: CheckSpec, spec: FlowSpec, built: Preflight) -> bool | str:
    """``True`` if the check's needs are met by the built flow, else what is missing."""
    verdict = True if check.needs is None else check.needs(spec, built.bijector)
    return True if verdict is True else (str(verdict) if verdict else f"{spec.name} lacks what {check.name} needs")


def _covers(check: CheckSpec, spec: FlowSpec, built: Preflight) -> bool:
    return check.applies(spec) is True and check.name not in spec.opt_out and _needs(check, spec, built) is True


def _explore(
    check: CheckSpec,
    spec: FlowSpec,
    device: str,
    profile: str,
    attempt: Callable[[Case], None],
    seed: int | None,
) -> None:
    """One Hypothesis run over drawn cases; ``seed`` (for a random profile) makes two runs draw the same cases."""
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

    (explore if seed is None else hypothesis_seed(seed)(explore))()


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
