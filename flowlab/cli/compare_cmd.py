"""``flowlab compare --flows A B ... --data D --steps N``: several flows on one dataset at an equal budget, seeds
repeated; a rich table, ``OUT/compare.json`` and ``OUT/compare.png`` (:mod:`flowlab.comparison`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from rich.table import Table

from flowlab.cli.console import console, error_console
from flowlab.cli.plugin_files import add_plugin_argument, load_plugin_files

if TYPE_CHECKING:
    from flowlab.comparison import Comparison


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="train several flows on one dataset at an equal budget and compare them",
        description="Train every --flows at every seed on one dataset (a registered one or a data file) with the "
        "same batch size, learning rate and budget (--steps per run, or --seconds of training per run), then print "
        "each flow's NLL ± SE (across seeds when there are several), bits/dim, parameters, time, steps and NFE. The "
        "NLL is what 'flowlab eval' reports for each run: on a finite dataset (digits, a file) the test NLL of the "
        "run's best checkpoint (chosen by validation NLL), on a stream the held-out NLL. Writes OUT/FLOW/seed-S/ "
        "(run folders), OUT/compare.json and OUT/compare.png (needs matplotlib). Running it again skips finished "
        "runs and resumes interrupted ones.",
    )
    parser.add_argument("--flows", nargs="+", required=True, metavar="FLOW", help="registered flows to compare")
    parser.add_argument("--data", required=True, help="registered dataset or a .npy/.npz/.csv/.txt file")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="optimizer steps per run")
    budget.add_argument("--seconds", type=float, help="seconds of training per run (steps vary by flow)")
    parser.add_argument(
        "--option",
        "-o",
        action="append",
        metavar="FLOW:KEY=VALUE",
        help="an option of one of the flows, repeatable; VALUE is JSON or a string, e.g. -o zuko.maf:transforms=4",
    )
    parser.add_argument("--seeds", type=int, default=1, help="runs per flow, seeds 0..N-1 (default 1)")
    parser.add_argument("--batch-size", type=int, default=256, help="points per step (default 256)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--out", default=None, help="output directory (default runs/compare-DATA)")
    parser.add_argument("--json", action="store_true", help="print the table as JSON on stdout")
    parser.add_argument("--no-plot", action="store_true", help="do not write OUT/compare.png")
    add_plugin_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flowlab.comparison import Budget, compare, picture
    from flowlab.datafiles import short_name
    from flowlab.errors import OptionError
    from flowlab.plotting import pyplot

    load_plugin_files(args.plugins)
    if args.seeds < 1:
        raise OptionError(f"compare: expected --seeds >= 1, got {args.seeds}")
    budget = Budget(steps=args.steps, seconds=args.seconds)
    options = flow_options(args.option or [])
    if not args.no_plot:
        pyplot()  # fail before training, not after, if matplotlib is missing
    out = Path(args.out or f"runs/compare-{Path(short_name(args.data)).stem}")
    log = error_console()

    def on_run(config: Any, result: Any) -> None:
        log.print(
            f"{config.flow} seed {config.seed}: NLL {result.nll:.3f} ± {result.se:.3f} nats at step "
            f"{result.scored_step}, {result.steps} steps, {result.seconds:.1f} s"
        )

    comparison = compare(
        args.flows,
        args.data,
        out=out,
        budget=budget,
        seeds=range(args.seeds),
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        options=options,
        on_run=on_run,
    )
    written = [out / "compare.json"]
    if not args.no_plot:
        written.append(picture(comparison, out))
    if args.json:
        json.dump(comparison.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        console().print(table(comparison))
    log.print("wrote " + ", ".join(map(str, written)))
    return 0


def flow_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["maf:hidden=32", "maf:layers=2"]`` -> ``{"maf": {"hidden": 32, "layers": 2}}``."""
    from flowlab.cli.options import parse_options
    from flowlab.errors import OptionError

    options: dict[str, dict[str, Any]] = {}
    for item in items:
        flow, colon, setting = item.partition(":")
        if not colon or not flow or "=" not in setting:
            raise OptionError(f"compare: expected -o FLOW:KEY=VALUE, got {item!r}")
        options.setdefault(flow, {}).update(parse_options([setting]))
    return options


def table(comparison: Comparison) -> Table:
    """The comparison as a rich table, best held-out NLL first."""
    from flowlab.datafiles import short_name

    seeds = len(comparison.seeds)
    spread = "SE across seeds" if seeds > 1 else "the run's SE"
    result = Table(
        title=f"{short_name(comparison.data)}: {comparison.budget.describe()} per run, {seeds} seed(s), batch "
        f"{comparison.batch_size}, lr {comparison.lr:g} (± {spread})"
    )
    for column in ("flow", f"{comparison.score} (nats)", "bits/dim", "parameters", "time/run (s)", "steps", "NFE"):
        result.add_column(column, justify="left" if column == "flow" else "right")
    for s in sorted(comparison.summaries(), key=lambda s: s.nll):
        result.add_row(
            s.flow,
            f"{s.nll:.3f} ± {s.se:.3f}",
            f"{s.bits_per_dim:.3f} ± {s.se_bits_per_dim:.3f}",
            f"{s.parameters:,}",
            f"{s.seconds:.1f}",
            f"{s.steps:.0f}",
            "–" if s.nfe is None else f"{s.nfe:.0f}",
        )
    return result
