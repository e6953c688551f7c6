"""``flowlab check [NAME ...]``: run the conformance kit's properties on registered flows and report.

Exit status: 0 when nothing failed (skipped and inconclusive results are shown, not failures), 1 when a property
failed, 2 for usage errors (an unknown flow or property, a malformed ``--case``, a ``--plugin`` file that does not
load, a bad ``-n`` or ``--threads``, ``-n`` with ``--case``).

``--checkpoint PATH`` checks the flow trained in PATH at its trained parameters, dimension and options
(:mod:`flowlab.checks.trained`): only the inputs (batch, seed, scale) are drawn.

With no NAME only the flows whose ``FlowSpec.checked_by_default`` is true are checked; one line names the others.
Torch runs on one thread per process unless asked otherwise (:mod:`flowlab.threads`). ``-n N`` spreads the runs
over N pytest-xdist processes (:mod:`flowlab.testing.parallel`) and renders them as the serial path does. Progress
goes to stderr: a live bar on a terminal, else one plain line per finished run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console

from flowlab.cli.console import console, error_console, escape
from flowlab.cli.plugin_files import add_plugin_argument, load_plugin_files

if TYPE_CHECKING:
    from rich.progress import Progress

    from flowlab.checks.base import Case
    from flowlab.checks.runner import PropertyRun
    from flowlab.testing.plan import PlannedRun

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
        metavar="PATH",
        default=None,
        help="check the flow trained in this checkpoint at its trained parameters (no NAME; its dim and options "
        "are the checkpoint's, only the inputs are drawn)",
    )
    parser.add_argument(
        "--dim",
        type=int,
        metavar="N",
        default=None,
        help="draw dimensions N..N+4 instead of each flow's min_dim..min_dim+4 (e.g. --dim 64, the dimension of "
        "digits); runs in this process (no -n)",
    )
    add_plugin_argument(parser)
    parser.add_argument(
        "-n",
        "--workers",
        metavar="N",
        default="0",
        help="spread the runs over N processes with pytest-xdist ('auto': one per CPU; default 0: this process)",
    )
    parser.add_argument(
        "--threads",
        metavar="N",
        default=None,
        help="torch threads per process (default: $FLOWLAB_THREADS, else $OMP_NUM_THREADS, else 1; 0: torch's own)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowlab import __version__, threads
    from flowlab.checks.profiles import profile_name
    from flowlab.checks.runner import selection
    from flowlab.errors import FlowlabError, OptionError
    from flowlab.testing.parallel import worker_count
    from flowlab.testing.plan import PlannedRun

    errors = error_console()
    try:
        load_plugin_files(args.plugins)
        if args.checkpoint is not None:
            args.names = [_register_checkpoint(args)]
        at_dim = _register_at_dim(args) if args.dim is not None else {}
        pairs = selection(list(at_dim) or args.names, args.properties)
        profile = profile_name(args.profile)
        case = _parse_case(args.case, pairs, args.device) if args.case is not None else None
        workers = worker_count(args.workers)
        if workers and case is not None:
            raise OptionError("--case runs one case in this process: drop -n")
        thread_count = threads.parse(args.threads, "--threads") if args.threads is not None else None
    except FlowlabError as exc:
        errors.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return EXIT_USAGE
    if not args.names:
        _mention_unchecked(errors)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    warnings = _warnings({flow for flow, _ in pairs})
    for flow, messages in warnings.items():
        for message in messages:
            errors.print(f"[yellow]warning:[/] {escape(flow)}: {escape(message)}")
    planned = [PlannedRun(flow, prop, device) for flow, prop in pairs for device in devices]
    with threads.limited(thread_count):
        if workers and planned:
            runs = _run_parallel(planned, profile, workers, args.plugins, thread_count, errors)
        else:
            runs = _run_serial(planned, profile, case, errors)
    _mention_plugin_files(runs, args.plugins)
    _mention_at_dim(runs, at_dim)
    if args.checkpoint is not None:
        _mention_checkpoint(runs, args.names[0], args.checkpoint)
    data = document_for(runs, profile, devices, __version__, warnings)
    out = console() if args.json != "-" else error_console()
    from flowlab.reports.checks import failure_panel, notes, reproduce_line, results_table

    out.print(results_table(runs, title=f"flowlab check ({profile} profile)"))
    out.print(notes(runs), end="")
    for failed in (r for r in runs if r.status == "failed"):
        out.print(failure_panel(failed))
        if failed.counterexample is not None:
            out.print(reproduce_line(failed), soft_wrap=True)
    counts = data["counts"]
    out.print(", ".join(f"{n} {status}" for status, n in counts.items() if n) or "nothing to run")
    if args.json == "-":
        json.dump(data, sys.stdout, indent=2, default=repr)
        sys.stdout.write("\n")
    elif args.json is not None:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, default=repr)
            handle.write("\n")
    return EXIT_FAILED if data["status"] == "failed" else EXIT_OK


def document_for(
    runs: list[PropertyRun], profile: str, devices: list[str], version: str, warnings: dict[str, list[str]]
) -> dict[str, Any]:
    from flowlab.reports.checks import document

    return document(runs, profile=profile, devices=devices, version=version, warnings=warnings)


def _mention_unchecked(errors: Console) -> None:
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


def _mention_plugin_files(runs: list[PropertyRun], paths: list[str]) -> None:
    """Make the reproduce commands load the same plugin files."""
    if not paths:
        return
    options = " ".join(f"--plugin {shlex.quote(path)}" for path in paths)
    for run in runs:
        if run.counterexample is not None:
            run.counterexample.reproduce = run.counterexample.reproduce.replace(
                "flowlab check ", f"flowlab check {options} ", 1
            )


def _register_checkpoint(args: argparse.Namespace) -> str:
    """Register the trained flow of ``--checkpoint`` for this process; its name."""
    from flowlab.checks.trained import register_checkpoint
    from flowlab.errors import OptionError

    if args.names:
        raise OptionError(f"--checkpoint checks the flow trained in {args.checkpoint}: give no NAME (got {args.names})")
    if args.workers not in ("0", 0):
        raise OptionError("--checkpoint runs in this process (its flow is registered here only): drop -n")
    return register_checkpoint(args.checkpoint)


def _mention_checkpoint(runs: list[PropertyRun], name: str, path: str) -> None:
    """Make the reproduce commands name the checkpoint instead of the flow registered for it."""
    for run in runs:
        if run.counterexample is not None:
            run.counterexample.reproduce = run.counterexample.reproduce.replace(
                f"flowlab check {shlex.quote(name)} ", f"flowlab check --checkpoint {shlex.quote(path)} ", 1
            )


def _mention_at_dim(runs: list[PropertyRun], at_dim: dict[str, str]) -> None:
    """Make the reproduce commands of ``--dim`` runs name the flow itself: the case records its dim."""
    for run in runs:
        if run.counterexample is not None and run.flow in at_dim:
            run.counterexample.reproduce = run.counterexample.reproduce.replace(
                f" {shlex.quote(run.flow)} ", f" {shlex.quote(at_dim[run.flow])} ", 1
            )


def _register_at_dim(args: argparse.Namespace) -> dict[str, str]:
    """Register, for this process, each flow to check as ``FLOW@dN``: its FlowSpec with ``min_dim = N``, so that
    the kit draws dimensions N..N+4 (:func:`flowlab.checks.strategies.dims`). Returns ``{FLOW@dN: FLOW}``."""
    import dataclasses

    from flowlab.errors import OptionError
    from flowlab.hookspecs import hookimpl
    from flowlab.plugins import get_registry
    from flowlab.registry import flow_spec, flows

    if args.dim < 1 or args.checkpoint is not None or args.workers not in ("0", 0):
        raise OptionError(
            f"--dim: expected N >= 1, without --checkpoint and -n (got {args.dim}): it registers its "
            "flows in this process"
        )
    names = args.names or [name for name, spec in flows().items() if spec.checked_by_default]
    specs = [flow_spec(name) for name in names]
    small = [f"{s.name} (max_dim {s.max_dim})" for s in specs if s.max_dim is not None and s.max_dim < args.dim]
    if small:
        raise OptionError(f"--dim {args.dim}: above the largest dimension of {', '.join(small)}")
    at_dim = [dataclasses.replace(s, name=f"{s.name}@d{args.dim}", min_dim=max(args.dim, s.min_dim)) for s in specs]

    class Plugin:
        @hookimpl
        def flowlab_register_flows(self, register: Any) -> None:
            for spec in at_dim:
                register(spec)

    info = get_registry().add_plugin(Plugin(), f"dim:{args.dim}")
    if not info.ok:
        raise OptionError(f"--dim {args.dim}: could not register the flows: {info.error}")
    return {spec.name: name for spec, name in zip(at_dim, names, strict=True)}


def _warnings(names: set[str]) -> dict[str, list[str]]:
    from flowlab.registry import flows

    return {
        name: ["its FlowSpec has no explanation (the math: transform, inverse, log-det); see docs/writing-plugins.md"]
        for name, spec in flows().items()
        if name in names and not spec.explanation.strip()
    }


def _parse_case(text: str, pairs: list[tuple[str, str]], device: str) -> Case:
    from flowlab.checks.base import Case
    from flowlab.errors import OptionError

    if len(pairs) != 1 or device == "all":
        raise OptionError("--case runs one case: give exactly one NAME, one --property and one --device")
    try:
        fields = json.loads(text)
        return Case(
            dim=int(fields["dim"]),
            batch=int(fields["batch"]),
            seed=int(fields["seed"]),
            options=dict(fields.get("options", {})),
            scale=float(fields.get("scale", 1.0)),
            device=device,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise OptionError(
            f'--case expects JSON like \'{{"dim": 2, "batch": 1, "seed": 0, "options": {{}}, "scale": 1.0}}\', '
            f"got {text!r} ({type(exc).__name__}: {exc})"
        ) from None


def _run_serial(planned: list[PlannedRun], profile: str, case: Case | None, errors: Console) -> list[PropertyRun]:
    from flowlab.checks.base import check_spec
    from flowlab.checks.runner import run_property
    from flowlab.registry import flow_spec

    runs = []
    with _progress(errors, len(planned), "checking") as progress:
        for item in planned:
            label = f"{item.flow} / {item.check} / {item.device}"
            examples = 0

            def tick(label: str = label) -> None:
                nonlocal examples
                examples += 1
                progress.describe(f"{label}: example {examples}")

            progress.describe(label)
            run = run_property(
                check_spec(item.check), flow_spec(item.flow), item.device, profile=profile, case=case, on_example=tick
            )
            progress.done(run)
            runs.append(run)
    return runs


def _run_parallel(
    planned: list[PlannedRun], profile: str, workers: int, plugins: list[str], threads: int | None, errors: Console
) -> list[PropertyRun]:
    from flowlab.testing.parallel import run_parallel

    count = min(workers, len(planned))
    with _progress(errors, len(planned), f"checking on {count} pytest-xdist workers") as progress:
        outcome = run_parallel(
            planned, profile=profile, workers=count, plugins=plugins, threads=threads, on_done=progress.done
        )
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
