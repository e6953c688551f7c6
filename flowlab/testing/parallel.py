"""``flowlab check -n N``: spread the ``(flow, property, device)`` runs over N processes with pytest-xdist.

The parent writes a :class:`~flowlab.testing.plan.CheckPlan` to a temporary folder and runs
``python -m pytest PLAN -p xdist -p flowlab.testing.plan_plugin -n N --dist worksteal`` in a subprocess (in the
parent's working directory, so the ``thorough`` profile's example database is the same as the serial path's, with
an empty ini file so the project's own pytest configuration and conftest files play no part). Each worker writes
one record per run (:mod:`flowlab.testing.plan_plugin`); the parent polls the records folder, reports each run as
it finishes, and returns the runs in the plan's order. Every worker uses the thread policy (:mod:`flowlab.threads`;
``--threads`` travels as ``$FLOWLAB_THREADS``).

Nothing is swallowed: a run whose worker raised is a failed run whose detail says so, with the traceback among the
returned problems; a run with no record (a worker crashed, pytest stopped) is a failed run too, with pytest's output
among the problems.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flowlab.checks.runner import PropertyRun
from flowlab.errors import OptionError
from flowlab.testing.plan import PLAN_FILE, CheckPlan, PlannedRun
from flowlab.testing.records import read_record, run_from_record

#: seconds between two looks at the records folder
POLL_SECONDS = 0.1
#: characters of pytest's output shown when runs have no record
LOG_TAIL = 4000


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_count(text: str) -> int:
    """``-n``'s value: a number of processes (``0``: none, run in this process) or ``auto`` (one per available
    CPU); :class:`~flowlab.errors.OptionError` otherwise."""
    if text == "auto":
        return available_cpus()
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise OptionError(f"-n expects a number of worker processes (0: none) or 'auto', got {text!r}")
    return count


@dataclass
class ParallelOutcome:
    """The runs in the plan's order, and what went wrong outside the properties (worker tracebacks, pytest's
    output when runs have no record), as text to show."""

    runs: list[PropertyRun]
    problems: list[str] = field(default_factory=list)


def run_parallel(
    runs: Sequence[PlannedRun],
    *,
    profile: str,
    workers: int,
    plugins: Sequence[str] = (),
    threads: int | None = None,
    on_done: Callable[[PropertyRun], None] | None = None,
) -> ParallelOutcome:
    """Run ``runs`` on ``workers`` pytest-xdist processes (at most one per run); ``on_done(run)`` as each finishes."""
    with tempfile.TemporaryDirectory(prefix="flowlab-check-") as folder:
        root = Path(folder)
        plan = CheckPlan(
            runs=tuple(runs),
            profile=profile,
            records=root / "records",
            plugins=tuple(str(Path(path).resolve()) for path in plugins),
        )
        plan.records.mkdir()
        plan.write(root / PLAN_FILE)
        (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        log = root / "pytest.log"
        with log.open("w", encoding="utf-8") as output:
            process = subprocess.Popen(
                _command(root, min(workers, len(runs))),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=_environment(threads),
            )
            try:
                found = _poll(process, plan, on_done)
            finally:
                if process.poll() is None:
                    process.terminate()
                    process.wait()
        return _outcome(plan, found, process.returncode, log.read_text(encoding="utf-8", errors="replace"))


def _command(root: Path, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        str(root / PLAN_FILE),
        *("-c", str(root / "pytest.ini"), "--rootdir", str(root)),
        *("-p", "xdist", "-p", "flowlab.testing.plan_plugin", "-p", "no:cacheprovider"),
        *("-n", str(workers), "--dist", "worksteal"),
        *("-q", "--no-header", "-rfE"),
    ]


def _environment(threads: int | None) -> dict[str, str]:
    from flowlab import threads as policy

    env = {key: value for key, value in os.environ.items() if key != "PYTEST_ADDOPTS"}
    if threads is not None:
        env[policy.ENV] = str(threads)
    return env


def _poll(
    process: subprocess.Popen[bytes], plan: CheckPlan, on_done: Callable[[PropertyRun], None] | None
) -> dict[int, dict[str, object]]:
    found: dict[int, dict[str, object]] = {}
    while True:
        finished = process.poll() is not None
        for index in range(len(plan.runs)):
            path = plan.record_path(index)
            if index not in found and path.exists():
                found[index] = read_record(path)
                if on_done is not None:
                    on_done(_run_of(plan.runs[index], found[index]))
        if finished:
            return found
        time.sleep(POLL_SECONDS)


def _run_of(planned: PlannedRun, record: dict[str, object] | None) -> PropertyRun:
    """The run a record stands for; a worker's error or a missing record is a failed run saying so."""
    if record is not None and "error" not in record:
        return run_from_record(dict(record))
    rerun = f"flowlab check {planned.flow} --property {planned.check} --device {planned.device}"
    if record is None:
        detail = f"no result: the pytest-xdist worker running it stopped (pytest's output is above; try {rerun})"
    else:
        last = str(record["error"]).strip().splitlines()[-1]
        detail = f"the pytest-xdist worker raised {last} (traceback above; try {rerun})"
    return PropertyRun(flow=planned.flow, check=planned.check, device=planned.device, status="failed", detail=detail)


def _outcome(plan: CheckPlan, found: dict[int, dict[str, object]], returncode: int, log: str) -> ParallelOutcome:
    outcome = ParallelOutcome(runs=[_run_of(planned, found.get(index)) for index, planned in enumerate(plan.runs)])
    for index, record in sorted(found.items()):
        if "error" in record:
            planned = plan.runs[index]
            outcome.problems.append(
                f"{planned.flow} / {planned.check} / {planned.device}: the worker raised\n{record['error']}"
            )
    if len(found) < len(plan.runs) or returncode not in (0, 1):
        outcome.problems.append(f"pytest (exit status {returncode}) said:\n{log[-LOG_TAIL:]}")
    return outcome
