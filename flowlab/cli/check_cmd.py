"""``flowlab check [NAME ...]``: run the conformance kit's properties on registered flows and report.

Exit status: 0 when every run passed (skipped and not applicable results are shown, not failures), 1 when a property
failed or its verdict could not be reached: it could not run on a flow whose kind calls for it (*uncovered*, unless
``--allow-uncovered`` or the flow opts out with a reason) or a statistical check could not decide (*inconclusive*,
unless ``--allow-inconclusive``), 2 for usage errors (an unknown flow or property, a ``--case`` that is not a case of
the flow, a ``--plugin`` file that does not load, a bad ``-n`` or ``--threads``, ``-n`` with ``--case``, ``--device
cuda`` or ``all`` where there is no CUDA unless ``--allow-missing-device``, a ``--json`` path that cannot be
written).

The flows to check are origins (:mod:`flowlab.checks.origin`): registered names, at ``--dim N`` if given, or the
trained flow of ``--checkpoint PATH`` (:mod:`flowlab.checks.trained`: its trained parameters, dimension and
options; only the inputs are drawn). Their specs are derived, never registered.

With no NAME only the flows whose ``FlowSpec.checked_by_default`` is true are checked; one line names the others.
Torch runs on one thread per process unless asked otherwise (:mod:`flowlab.threads`). ``-n N`` spreads the runs
over N worker processes (:mod:`flowlab.checks.pool`) and renders them as the serial path does. Progress goes to
stderr: a live bar on a terminal, else one plain line per finished run. The results go to stdout: a table on a
terminal, else one summary line per flow (nothing wraps mid-word in a log), then notes and failures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console

from flowlab.cli.console import console, error_console, escape
from flowlab.cli.plugin_files import add_plugin_argument, load_plugin_files

if TYPE_CHECKING:
    from rich.progress import Progress

    from flowlab.checks.origin import FlowOrigin
    from flowlab.checks.pool import WorkerPool
    from flowlab.checks.runner import PropertyRun
    from flowlab.spec import Case, CheckSpec, FlowSpec

    #: what ``selection`` returns: every flow to check (its origin and spec) × every property
    Planned = list[tuple[FlowOrigin, FlowSpec, CheckSpec]]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="verify flows by properties: invertibility, log-det, normalization, ...",
        description=(
            "Run the conformance kit on registered flows (all of them by default): every registered property, "
            "over cases drawn by Hypothesis (dim, batch, seed, options, input scale). Prints a table flow × property "
            "× device and, for each failure, the shrunk counterexample and a command reproducing it. "
            "Exit 0 when nothing failed, 1 when something failed, 2 for usage errors."
        ),
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="flows to check (default: every registered flow that is checked by default)",
    )
    parser.add_argument(
        "--property",
        dest="properties",
        action="append",
        metavar="PROPERTY",
        help="run only this property (repeatable; default: all registered properties)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="cpu", help="device(s) (default cpu)")
    parser.add_argument(
        "--allow-uncovered",
        action="store_true",
        help="exit 0 although a property the flow's kind calls for could not run on it (uncovered; listed anyway)",
    )
    parser.add_argument(
        "--allow-inconclusive",
        action="store_true",
        help="exit 0 although a statistical property could not reach a verdict (inconclusive; listed anyway)",
    )
    parser.add_argument(
        "--allow-missing-device",
        action="store_true",
        help="where --device asks for CUDA and there is none, list its runs as skipped instead of exit 2",
    )
    parser.add_argument(
        "--profile",
        choices=("quick", "thorough"),
        default=None,
        help="Hypothesis profile (default: $FLOWLAB_PROFILE or quick)",
    )
    parser.add_argument(
        "--json", metavar="PATH", default=None, help="also write the results as JSON to PATH ('-': stdout)"
    )
    parser.add_argument(
        "--case",
        metavar="JSON",
        default=None,
        help="run one case only (as printed by a failure's reproduce command); needs one NAME and one --property",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="RUN",
        default=None,
        help="check the flow trained in this run folder (its best.pt, else its last checkpoint) or checkpoint file "
        "at its trained parameters (no NAME; its dim and options are the checkpoint's, only the inputs are drawn)",
    )
    parser.add_argument(
        "--dim",
        type=int,
        metavar="N",
        default=None,
        help="draw dimensions N..N+4 instead of each flow's min_dim..min_dim+4 (e.g. --dim 64, the dimension of "
        "digits)",
    )
    add_plugin_argument(parser)
    parser.add_argument(
        "-n",
        "--workers",
        metavar="N",
        default="0",
        help="spread the runs over N worker processes ('auto': one per CPU; default 0: this process)",
    )
    parser.add_argument(
        "--threads",
        metavar="N",
        default=None,
        help="torch threads per process (default: $FLOWLAB_THREADS, else $OMP_NUM_THREADS, else 1; 0: torch's own)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowlab.checks.pool import WorkerPool, worker_count
    from flowlab.errors import FlowlabError, OptionError

    errors = error_console()
    try:  # what needs no plugin first: with -n the workers then start, and import while this process plans
        workers = worker_count(args.workers)
        if workers and args.case is not None:
            raise OptionError("--case runs one case in this process: drop -n")
        thread_count = _threads(args.threads)
        _check_writable(args.json)
    except FlowlabError as exc:
        return _usage_error(errors, exc)
    pool = WorkerPool(workers, args.plugins, thread_count) if workers else None
    try:
        plan = _plan(args)
    except FlowlabError as exc:
        if pool is not None:
            pool.close(wait=False)  # the error now; the workers end when their start-up does
        return _usage_error(errors, exc)
    try:
        return _execute(args, plan, pool, thread_count, errors)
    finally:
        if pool is not None:
            pool.close()


def _usage_error(errors: Console, exc: Exception) -> int:
    errors.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    return EXIT_USAGE


def _threads(text: str | None) -> int | None:
    from flowlab import threads

    return threads.parse(text, "--threads") if text is not None else None


@dataclass(frozen=True)
class _Plan:
    """What to run: the (origin, flow, property) triples, the devices, the profile, the one ``--case`` if given."""

    planned: Planned
    devices: list[str]
    profile: str
    case: Case | None


def _plan(args: argparse.Namespace) -> _Plan:
    """The plan of ``args``; a usage error raises :class:`~flowlab.errors.FlowlabError`."""
    from flowlab.checks.profiles import profile_name
    from flowlab.checks.runner import selection

    load_plugin_files(args.plugins)
    planned = selection(_origins(args), args.properties)
    devices = _devices(args.device, args.allow_missing_device)
    profile = profile_name(args.profile)
    case = _parse_case(args.case, planned, devices) if args.case is not None else None
    return _Plan(planned, devices, profile, case)


def _execute(
    args: argparse.Namespace, plan: _Plan, pool: WorkerPool | None, thread_count: int | None, errors: Console
) -> int:
    """Run the plan on ``pool`` (or in this process), print the report, write the JSON; the exit status."""
    from flowlab import __version__, threads

    planned, devices, profile = plan.planned, plan.devices, plan.profile
    if not args.names and args.checkpoint is None:
        _print_flows_not_checked_by_default(errors)
    warnings = _warnings([spec for _, spec, _ in planned])
    for flow, messages in warnings.items():
        for message in messages:
            errors.print(f"[yellow]warning:[/] {escape(flow)}: {escape(message)}")
    with threads.limited(thread_count):
        if pool is not None and planned:
            runs = _run_pool(planned, devices, profile, pool, errors)
        else:
            runs = _run_serial(planned, devices, profile, plan.case, errors)
    data = document_for(runs, profile, devices, __version__, warnings, args.allow_uncovered, args.allow_inconclusive)
    out = console() if args.json != "-" else error_console()
    _report(out, runs, profile, data)
    if args.json == "-":
        json.dump(data, sys.stdout, indent=2, default=repr)
        sys.stdout.write("\n")
    elif args.json is not None:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, default=repr)
            handle.write("\n")
    return EXIT_FAILED if data["status"] == "failed" else EXIT_OK


def document_for(
    runs: list[PropertyRun],
    profile: str,
    devices: list[str],
    version: str,
    warnings: dict[str, list[str]],
    allow_uncovered: bool = False,
    allow_inconclusive: bool = False,
) -> dict[str, Any]:
    from flowlab.reports.checks import document

    return document(
        runs,
        profile=profile,
        devices=devices,
        version=version,
        warnings=warnings,
        allow_uncovered=allow_uncovered,
        allow_inconclusive=allow_inconclusive,
    )


def _report(out: Console, runs: list[PropertyRun], profile: str, data: dict[str, Any]) -> None:
    """The table on a terminal; on a pipe or file, one line per flow (no table to wrap names mid-word), then the
    same notes and failures."""
    from flowlab.reports.checks import failure_panel, flow_summaries, notes, reproduce_line, results_table

    if out.is_terminal:
        out.print(results_table(runs, title=f"flowlab check ({profile} profile)"))
    else:
        for line in flow_summaries(runs):
            out.print(line, soft_wrap=True, markup=False, highlight=False)
    out.print(notes(runs), end="", soft_wrap=not out.is_terminal)
    for failed in (r for r in runs if r.status == "failed"):
        out.print(failure_panel(failed))
        if failed.counterexample is not None:
            out.print(reproduce_line(failed), soft_wrap=True)
    counts = data["counts"]
    out.print(", ".join(f"{n} {status}" for status, n in counts.items() if n) or "nothing to run")


def _origins(args: argparse.Namespace) -> list[FlowOrigin]:
    """The flows to check, as origins: the checkpoint's, or the named (default: those checked by default) ones, at
    ``--dim`` if given; with the ``--plugin`` files, so that workers and reproduce commands load them too."""
    from pathlib import Path

    from flowlab.checks.origin import FlowOrigin
    from flowlab.checks.runner import default_flow_names
    from flowlab.errors import OptionError

    plugins = tuple(str(Path(path).resolve()) for path in args.plugins)
    if args.checkpoint is not None:
        if args.names or args.dim is not None:
            raise OptionError(
                f"--checkpoint checks the flow trained in {args.checkpoint} at its own dim: give no NAME and no --dim "
                f"(got {' '.join(args.names) or '--dim ' + str(args.dim)})"
            )
        from flowlab.checkpoint import resolve_run

        file, which = resolve_run(args.checkpoint)  # a run folder: its best.pt, else its last checkpoint
        if which != "file":
            error_console().print(f"using {file}: the run's {which} checkpoint", highlight=False, soft_wrap=True)
        return [FlowOrigin(checkpoint=str(file), plugins=plugins)]
    names = args.names or default_flow_names()
    return [FlowOrigin(name, dim=args.dim, plugins=plugins) for name in names]


def _devices(choice: str, allow_missing: bool) -> list[str]:
    """The devices of ``--device``; CUDA asked for where there is none is a usage error (a gate that checks nothing
    must not pass), unless ``--allow-missing-device`` lets its runs be skipped with the reason."""
    from flowlab.errors import DeviceError

    devices = ["cpu", "cuda"] if choice == "all" else [choice]
    if "cuda" in devices and not allow_missing:
        import torch

        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {choice}: torch.cuda.is_available() is False on this machine; run on a machine with CUDA, "
                "or add --allow-missing-device to list the CUDA runs as skipped"
            )
    return devices


def _check_writable(path: str | None) -> None:
    """``--json PATH`` must be writable before minutes of checks are run (a usage error otherwise)."""
    import os
    from pathlib import Path

    from flowlab.errors import OptionError

    if path is None or path == "-":
        return
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise OptionError(f"--json {path}: cannot write there (expected a file path in an existing, writable folder)")
    if target.exists() and not os.access(target, os.W_OK):
        raise OptionError(f"--json {path}: the file exists and is not writable")


def _print_flows_not_checked_by_default(errors: Console) -> None:
    """One line naming the registered flows that are not checked by default, and how to check them."""
    from flowlab.registry import flows

    skipped = [name for name, spec in flows().items() if not spec.checked_by_default]
    if skipped:
        names = " ".join(skipped)
        count = "1 registered flow is" if len(skipped) == 1 else f"{len(skipped)} registered flows are"
        errors.print(
            f"{count} not checked by default ({escape(', '.join(skipped))}); "
            f"name them to check them: flowlab check {escape(names)}",
            soft_wrap=True,
        )


def _warnings(specs: list[FlowSpec]) -> dict[str, list[str]]:
    message = "its FlowSpec has no explanation (the math: transform, inverse, log-det); see docs/writing-plugins.md"
    return {spec.name: [message] for spec in specs if not spec.explanation.strip()}


def _parse_case(text: str, planned: Planned, devices: list[str]) -> Case:
    """The ``--case`` JSON as a :class:`Case` of the one flow and property selected; anything that is not a case
    that flow can be built for (a dim outside its range, an unknown option or value, an empty batch) is a usage
    error, not a failure of the flow."""
    from flowlab.errors import OptionError
    from flowlab.spec import Case

    if len(planned) != 1 or len(devices) != 1:
        raise OptionError("--case runs one case: give exactly one NAME, one --property and one --device")
    spec = planned[0][1]
    try:
        fields = json.loads(text)
        case = Case(
            dim=int(fields["dim"]),
            batch=int(fields["batch"]),
            seed=int(fields["seed"]),
            options=dict(fields.get("options", {})),
            scale=float(fields.get("scale", 1.0)),
            device=devices[0],
            life=fields.get("life", "fresh"),
            autograd=fields.get("autograd", True),
        )
        if not isinstance(case.autograd, bool):
            raise TypeError(f"autograd must be true or false, got {case.autograd!r}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OptionError(
            f'--case expects JSON like \'{{"dim": 2, "batch": 1, "seed": 0, "options": {{}}, "scale": 1.0}}\', '
            f"got {text!r} ({type(exc).__name__}: {exc})"
        ) from None
    top = "any" if spec.max_dim is None else str(spec.max_dim)
    if not spec.min_dim <= case.dim <= (spec.max_dim or case.dim):
        raise OptionError(f"--case: dim {case.dim} is outside {spec.name}'s dimensions {spec.min_dim}..{top}")
    if case.batch < 1 or not case.scale > 0:
        raise OptionError(f"--case: expected batch >= 1 and scale > 0, got batch {case.batch}, scale {case.scale}")
    spec.resolve_options(case.options)  # an unknown option or a value not allowed: OptionError naming it
    return case


def _run_serial(
    planned: Planned, devices: list[str], profile: str, case: Case | None, errors: Console
) -> list[PropertyRun]:
    from flowlab.checks.runner import run_property

    runs = []
    with _progress(errors, len(planned) * len(devices), "checking") as progress:
        for origin, spec, check in planned:
            for device in devices:
                label = f"{spec.name} / {check.name} / {device}"
                examples = 0

                def tick(label: str = label) -> None:
                    nonlocal examples
                    examples += 1
                    progress.describe(f"{label}: example {examples}")

                progress.describe(label)
                run = run_property(check, spec, device, profile=profile, case=case, on_example=tick, origin=origin)
                progress.done(run)
                runs.append(run)
    return runs


def _run_pool(
    planned: Planned, devices: list[str], profile: str, pool: WorkerPool, errors: Console
) -> list[PropertyRun]:
    from flowlab.checks.pool import Task

    tasks = [Task(origin, spec.name, check.name, device) for origin, spec, check in planned for device in devices]
    count = len(pool.executors)
    with _progress(errors, len(tasks), f"checking on {count} worker processes") as progress:
        outcome = pool.run(tasks, profile=profile, on_done=progress.done)
    for problem in outcome.problems:
        errors.print(f"[bold red]error:[/] {escape(problem)}", soft_wrap=True)
    return outcome.runs


class _Progress:
    """Progress of the runs on stderr: a live rich bar (``bar``) on a terminal, else one plain line per finished
    run (flow, property, device, status, seconds, examples), which reads well in a CI log or a pipe."""

    def __init__(self, errors: Console, total: int, bar: Progress | None = None) -> None:
        self.errors, self.total, self.bar, self.finished = errors, total, bar, 0
        self.task = bar.add_task("", total=total) if bar is not None else None

    def describe(self, text: str) -> None:
        """Show what is running now (on the live bar only)."""
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, description=text)

    def done(self, run: PropertyRun) -> None:
        """A run finished: advance the bar, or print its line."""
        self.finished += 1
        if self.bar is not None and self.task is not None:
            self.bar.advance(self.task)
            return
        examples = f", {run.examples} examples" if run.examples else ""
        self.errors.print(
            f"[{self.finished}/{self.total}] {run.flow} / {run.check} / {run.device}: "
            f"{run.status} in {run.seconds:.1f} s{examples}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@contextmanager
def _progress(errors: Console, total: int, description: str) -> Iterator[_Progress]:
    """A :class:`_Progress` for ``total`` runs, showing ``description`` until the first run describes itself."""
    if not errors.is_terminal:
        yield _Progress(errors, total)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=errors, transient=True) as bar:
        progress = _Progress(errors, total, bar)
        progress.describe(description)
        yield progress
