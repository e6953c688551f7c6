"""``flowlab check [NAME ...]``: run the conformance kit's properties on registered flows and report.

Exit status: 0 when nothing failed (skipped and inconclusive results are shown, not failures), 1 when a property
failed, 2 for usage errors (an unknown flow or property, a malformed ``--case``, a ``--plugin`` file that does not
load).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import TYPE_CHECKING, Any

from flowlab.cli.console import console, error_console, escape

if TYPE_CHECKING:
    from flowlab.checks.base import Case
    from flowlab.checks.runner import PropertyRun

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
    parser.add_argument("names", nargs="*", metavar="NAME", help="flows to check (default: all registered flows)")
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
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="FILE",
        help="also load the plugin in this Python file (its PLUGIN object, or the module's hooks); repeatable",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowlab import __version__
    from flowlab.checks.profiles import profile_name
    from flowlab.checks.runner import selection
    from flowlab.errors import FlowlabError

    errors = error_console()
    try:
        _load_plugin_files(args.plugins)
        pairs = selection(args.names, args.properties)
        profile = profile_name(args.profile)
        case = _parse_case(args.case, pairs, args.device) if args.case is not None else None
    except FlowlabError as exc:
        errors.print(f"[bold red]error:[/] {escape(str(exc))}")
        return EXIT_USAGE
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    warnings = _warnings({flow for flow, _ in pairs})
    for flow, messages in warnings.items():
        for message in messages:
            errors.print(f"[yellow]warning:[/] {escape(flow)}: {escape(message)}")
    runs = _run_all(pairs, devices, profile, case)
    _mention_plugin_files(runs, args.plugins)
    data = document_for(runs, profile, devices, __version__, warnings)
    out = console() if args.json != "-" else error_console()
    from flowlab.reports.checks import failure_panel, notes, reproduce_line, results_table

    out.print(results_table(runs, title=f"flowlab check ({profile} profile)"))
    out.print(notes(runs), end="")
    for failed in (r for r in runs if r.status == "failed"):
        out.print(failure_panel(failed))
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


def _load_plugin_files(paths: list[str]) -> None:
    from flowlab.errors import PluginError
    from flowlab.plugins import get_registry, load_plugin_file

    registry = get_registry()
    for path in paths:
        info = registry.add_plugin(load_plugin_file(path), f"file:{path}")
        if not info.ok:
            raise PluginError(f"plugin file {path!r}: {info.error}")


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


def _run_all(pairs: list[tuple[str, str]], devices: list[str], profile: str, case: Case | None) -> list[PropertyRun]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from flowlab.checks.base import check_spec
    from flowlab.checks.runner import run_property
    from flowlab.registry import flow_spec

    runs = []
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=error_console(), transient=True) as progress:
        task = progress.add_task("checking", total=len(pairs) * len(devices))
        for flow, prop in pairs:
            for device in devices:
                label = f"{flow} / {prop} / {device}"
                examples = 0

                def tick(label: str = label) -> None:
                    nonlocal examples
                    examples += 1
                    progress.update(task, description=f"{label}: example {examples}")

                progress.update(task, description=label)
                runs.append(
                    run_property(check_spec(prop), flow_spec(flow), device, profile=profile, case=case, on_example=tick)
                )
                progress.advance(task)
    return runs
