"""``flowlab check -n N``: the runs spread over N worker processes (:mod:`concurrent.futures`).

Each task is a recipe, not an object: ``(FlowOrigin, property name, device)``, plain data that a worker rebuilds
the flow from (:meth:`flowlab.checks.origin.FlowOrigin.spec`: a registered name, ``--dim``, a checkpoint), so
derived flows need no registration anywhere. Workers are started with the ``spawn`` method (a forked torch with
live threads can deadlock) and an initializer that applies the thread policy (:mod:`flowlab.threads`) and loads
the ``--plugin`` files into the worker's own registry. A worker sends its :class:`~flowlab.checks.runner.PropertyRun`
back by pickle; the caller gets each as it finishes (``on_done``, driven by ``as_completed``) and the list in the
tasks' order.

Nothing is swallowed: a task whose worker raised (the kit itself broke, a plugin file did not load there) is a
failed run whose detail says so, with the traceback among the problems; a worker that died takes its unfinished
runs with it, each a failed run saying so. Spreading over machines is pytest's job:
``flowlab.testing.conformance_tests()`` under pytest-xdist (``docs/checks.md``).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flowlab.checks.origin import FlowOrigin
from flowlab.checks.runner import PropertyRun, run_property
from flowlab.errors import OptionError

if TYPE_CHECKING:
    from flowlab.spec import FlowSpec


@dataclass(frozen=True)
class Task:
    """One property on one flow and device, as a recipe a worker process can rebuild."""

    origin: FlowOrigin
    flow: str  # the spec's name, as reported
    check: str
    device: str


@dataclass
class PoolOutcome:
    """The runs in the tasks' order, and what went wrong outside the properties (worker tracebacks), as text."""

    runs: list[PropertyRun]
    problems: list[str] = field(default_factory=list)


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


def run_pool(
    tasks: Sequence[Task],
    *,
    profile: str,
    workers: int,
    plugins: Sequence[str] = (),
    threads: int | None = None,
    on_done: Callable[[PropertyRun], None] | None = None,
) -> PoolOutcome:
    """Run ``tasks`` on ``workers`` processes (at most one per task); ``on_done(run)`` as each finishes."""
    outcome = PoolOutcome(runs=[])
    if not tasks:
        return outcome
    runs: dict[int, PropertyRun] = {}
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(tuple(plugins), threads),
    )
    try:
        futures = {pool.submit(_run_task, task, profile): index for index, task in enumerate(tasks)}
        for future in as_completed(futures):
            index = futures[future]
            runs[index] = _result(tasks[index], future, outcome.problems)
            if on_done is not None:
                on_done(runs[index])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    outcome.runs = [runs[index] for index in range(len(tasks))]
    return outcome


def _start_worker(plugins: tuple[str, ...], threads: int | None) -> None:
    from flowlab import threads as policy
    from flowlab.plugins import load_plugin_files

    policy.apply(threads)
    load_plugin_files(plugins)


@functools.cache
def _spec_of(origin: FlowOrigin) -> FlowSpec:
    return origin.spec()  # a checkpoint is read once per worker, not once per task


def _run_task(task: Task, profile: str) -> PropertyRun:
    from flowlab.registry import check_spec

    return run_property(check_spec(task.check), _spec_of(task.origin), task.device, profile=profile, origin=task.origin)


def _result(task: Task, future: Future[PropertyRun], problems: list[str]) -> PropertyRun:
    """The run a finished future holds; a worker's exception or death is a failed run saying so."""
    error = future.exception()
    if error is None:
        return future.result()
    rerun = " ".join(["flowlab check", *task.origin.selection_args(), "--property", task.check])
    if isinstance(error, BrokenProcessPool):
        detail = f"no result: the worker process running it stopped ({error}; try {rerun})"
    else:
        where = "".join(traceback.format_exception(error))
        problems.append(f"{task.flow} / {task.check} / {task.device}: the worker raised\n{where}")
        detail = f"the worker raised {type(error).__name__}: {error} (traceback above; try {rerun})"
    return PropertyRun(flow=task.flow, check=task.check, device=task.device, status="failed", detail=detail)
