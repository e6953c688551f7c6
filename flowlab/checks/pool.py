"""``flowlab check -n N``: the runs spread over N worker processes (:mod:`concurrent.futures`).

Each task is a recipe, not an object: ``(FlowOrigin, property name, device)``, plain data that a worker rebuilds
the flow from (:meth:`flowlab.checks.origin.FlowOrigin.spec`: a registered name, ``--dim``, a checkpoint), so
derived flows need no registration anywhere. Workers are started with the ``spawn`` method (a forked torch with
live threads can deadlock) and an initializer that applies the thread policy (:mod:`flowlab.threads`) and loads
the ``--plugin`` files into the worker's own registry. A worker sends its :class:`~flowlab.checks.runner.PropertyRun`
back by pickle; the caller gets each as it finishes (``on_done``) and the list in the tasks' order.

**Start early.** :class:`WorkerPool` starts its processes when it is made, each importing torch and discovering the
plugins at once: ``flowlab check`` makes it before its own plugin discovery and planning, so the two overlap.

**Flow-affine scheduling.** A process builds (and lives) each case's flow once and copies it for every property
(:func:`flowlab.checks.lives.live`), so the runs of one flow are cheapest in one process. Each worker is a
one-process executor fed one task at a time by :class:`Schedule`: the next property of the flow it is on; else the
first flow no worker has started; else, once every flow is started, a task from the end of the flow with the most
left (work stealing: the workers finish together).

Nothing is swallowed: a task whose worker raised (the kit itself broke, a plugin file did not load there) is a
failed run whose detail says so, with the traceback among the problems; a worker that died fails the run it was
running, saying so, and is replaced by a new process for the runs left. Spreading over machines is pytest's job:
``flowlab.testing.conformance_tests()`` under pytest-xdist (``docs/checks.md``).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import traceback
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from flowlab.checks.origin import FlowOrigin
from flowlab.errors import OptionError

if TYPE_CHECKING:
    from flowlab.checks.runner import PropertyRun
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


class Schedule:
    """Which task each of ``workers`` runs next (see the module docstring): tasks are grouped by flow and device in
    the order given; a worker stays on its group while it has tasks, then takes the first group nobody is on, then
    steals from the end of the group with the most tasks left."""

    def __init__(self, tasks: Sequence[Task], workers: int) -> None:
        self.left: dict[Hashable, deque[int]] = {}
        for index, task in enumerate(tasks):
            self.left.setdefault((task.origin, task.device), deque()).append(index)
        self.on: list[Hashable | None] = [None] * workers

    def next_for(self, worker: int) -> int | None:
        """The index of the next task for ``worker``, or ``None`` when no task is left."""
        group = self.on[worker]
        if group is not None and self.left[group]:
            return self.left[group].popleft()
        open_groups = [key for key, indices in self.left.items() if indices]
        if not open_groups:
            self.on[worker] = None
            return None
        unstarted = [key for key in open_groups if key not in self.on]
        if unstarted:
            self.on[worker] = unstarted[0]
            return self.left[unstarted[0]].popleft()
        busiest = max(open_groups, key=lambda key: len(self.left[key]))
        self.on[worker] = busiest
        return self.left[busiest].pop()


class WorkerPool:
    """``workers`` worker processes, started now (see the module docstring); a context manager that shuts them down.

    ``plugins``: ``--plugin`` files each worker loads; ``threads``: the thread policy's setting for the workers."""

    def __init__(self, workers: int, plugins: Sequence[str] = (), threads: int | None = None) -> None:
        self.plugins, self.threads = tuple(plugins), threads
        #: per worker: its one-process executor and the future of its start-up (:func:`_warm`)
        self.executors: list[ProcessPoolExecutor] = []
        self.started: list[Future[None]] = []
        self.retired: set[int] = set()  # workers whose process could not start: given no more tasks
        for _ in range(workers):
            executor, started = self._start()
            self.executors.append(executor)
            self.started.append(started)

    def _start(self) -> tuple[ProcessPoolExecutor, Future[None]]:
        executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self.plugins, self.threads),
        )
        return executor, executor.submit(_warm)  # the process starts now: torch, the plugins, the registry

    def run(
        self, tasks: Sequence[Task], *, profile: str, on_done: Callable[[PropertyRun], None] | None = None
    ) -> PoolOutcome:
        """Run ``tasks`` on the workers; ``on_done(run)`` as each finishes."""
        from flowlab.checks.runner import PropertyRun

        outcome = PoolOutcome(runs=[])
        schedule = Schedule(tasks, len(self.executors))
        runs: dict[int, PropertyRun] = {}
        running: dict[Future[PropertyRun], tuple[int, int]] = {}

        def feed(worker: int) -> None:
            index = schedule.next_for(worker) if worker not in self.retired else None
            if index is not None:
                running[self.executors[worker].submit(_run_task, tasks[index], profile)] = (worker, index)

        for worker in range(len(self.executors)):
            feed(worker)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                worker, index = running.pop(future)
                runs[index] = _result(tasks[index], future, outcome.problems)
                if on_done is not None:
                    on_done(runs[index])
                self._after(worker, died=isinstance(future.exception(), BrokenProcessPool))
                feed(worker)
        for index in range(len(tasks)):  # every worker died before giving a result: nothing could run these
            if index not in runs:
                task = tasks[index]
                detail = "no result: every worker process stopped before giving one (see the failures above)"
                runs[index] = PropertyRun(task.flow, task.check, task.device, status="failed", detail=detail)
                if on_done is not None:
                    on_done(runs[index])
        outcome.runs = [runs[index] for index in range(len(tasks))]
        return outcome

    def _after(self, worker: int, *, died: bool) -> None:
        """After a task whose process died: a process that had started (its start-up finished) is replaced by a new
        one, since the task killed it; one that died starting is retired (a new one would not start either)."""
        if not died:
            return
        self.executors[worker].shutdown(wait=False)
        if isinstance(self.started[worker].exception(), BrokenProcessPool):
            self.retired.add(worker)
        else:
            self.executors[worker], self.started[worker] = self._start()

    def close(self, *, wait: bool = True) -> None:
        """Shut the workers down, waiting for what they are running unless ``wait=False`` (they then end on their
        own when it is done; the interpreter waits for them at exit)."""
        for executor in self.executors:
            executor.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _start_worker(plugins: tuple[str, ...], threads: int | None) -> None:
    from flowlab import threads as policy
    from flowlab.plugins import load_plugin_files

    policy.apply(threads)
    load_plugin_files(plugins)


def _warm() -> None:
    """What every task needs first: the kit's runner (torch) and the registry (plugin discovery)."""
    import flowlab.checks.runner  # noqa: F401
    from flowlab.startup import settle

    settle()


@functools.cache
def _spec_of(origin: FlowOrigin) -> FlowSpec:
    return origin.spec()  # a checkpoint is read once per worker, not once per task


def _run_task(task: Task, profile: str) -> PropertyRun:
    from flowlab.checks.runner import run_property
    from flowlab.registry import check_spec

    return run_property(check_spec(task.check), _spec_of(task.origin), task.device, profile=profile, origin=task.origin)


def _result(task: Task, future: Future[PropertyRun], problems: list[str]) -> PropertyRun:
    """The run a finished future holds; a worker's exception or death is a failed run saying so."""
    from flowlab.checks.runner import PropertyRun

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
