"""``flowlab list``: the registered flows, datasets and training objectives, and the plugins they come from
(``--json`` for machines)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from flowlab.cli.console import console, escape
from flowlab.cli.plugin_files import add_plugin_argument, load_plugin_files


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list the registered flows and plugins",
        description="List every registered flow with its plugin, kind and log-det kind (one line each; the full "
        "summary and the options: flowlab explain NAME, or --options), broken plugins in red, the datasets and the "
        "training objectives.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--options", action="store_true", help="also list each flow's options with their defaults")
    add_plugin_argument(parser)
    parser.set_defaults(func=run)


def catalogue() -> dict[str, Any]:
    """The registry as plain data: flows (with their plugin and options), datasets (with their entropies),
    training objectives and plugins (with their errors)."""
    from flowlab.plugins import get_registry
    from flowlab.registry import flows, objectives

    registry = get_registry()
    flows()  # registers the FlowSpec record type
    objectives()  # and the ObjectiveSpec one
    return {
        "flows": [
            {
                "name": name,
                "plugin": entry.plugin.name,
                "distribution": entry.plugin.distribution,
                "version": entry.plugin.version,
                "kind": entry.record.kind,
                "logdet": entry.record.logdet,
                "summary": entry.record.summary,
                "options": described(entry.record.options),
            }
            for name, entry in registry.entries["flows"].items()
        ],
        "datasets": [
            {
                "name": name,
                "plugin": entry.plugin.name,
                "dim": entry.record.dim,
                "entropy": entry.record.entropy,
                "entropy_source": entry.record.entropy_source,
                "summary": entry.record.summary,
            }
            for name, entry in registry.entries["datasets"].items()
        ],
        "objectives": [
            {
                "name": name,
                "plugin": entry.plugin.name,
                "kinds": sorted(entry.record.kinds),
                "conditional": entry.record.conditional,
                "lr": entry.record.lr,
                "summary": entry.record.summary,
                "options": described(entry.record.options),
            }
            for name, entry in registry.entries["objectives"].items()
        ],
        "plugins": [
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "module": info.module,
                "ok": info.ok,
                "error": info.error,
                "registered": info.registered,
            }
            for info in registry.plugins.values()
        ],
    }


def described(options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each option's default, allowed values (in words) and help, as plain data."""
    return {key: {"default": o.default, "allowed": o.describe(), "help": o.help} for key, o in options.items()}


#: the ``kind`` column: the flow's kind and log-det kind in one short word pair
KINDS = {"discrete": "discrete", "continuous": "ODE"}


def run(args: argparse.Namespace) -> int:
    load_plugin_files(args.plugins)
    data = catalogue()
    if args.json:
        json.dump(data, sys.stdout, indent=2, default=repr)
        sys.stdout.write("\n")
        return 0
    out = console()
    rows = [
        (flow["name"], flow["plugin"], f"{KINDS.get(flow['kind'], flow['kind'])}, {flow['logdet']}", flow["summary"])
        for flow in data["flows"]
    ]
    title = "flowlab flows (full text and options: flowlab explain NAME)"
    out.print(table(title, ("name", "plugin", "kind"), rows, out.width))
    if args.options:
        for flow in data["flows"]:
            options = ", ".join(f"{key}={value['default']!r}" for key, value in flow["options"].items())
            out.print(f"[bold]{escape(flow['name'])}[/]: {escape(options) or 'no options'}")
    for plugin in data["plugins"]:
        if not plugin["ok"]:
            out.print(
                f"[red]broken plugin {escape(plugin['name'])} ({escape(plugin['distribution'])}): "
                f"{escape(plugin['error'])}[/]"
            )
    rows = [
        (d["name"], str(d["dim"]), "unknown" if d["entropy"] is None else f"{d['entropy']:.2f}", d["summary"])
        for d in data["datasets"]
    ]
    out.print(table("flowlab datasets (for flowlab train --data)", ("name", "dim", "entropy"), rows, out.width))
    rows = [
        (o["name"], o["plugin"], ", ".join(KINDS.get(k, k) for k in o["kinds"]), o["summary"])
        for o in data["objectives"]
    ]
    title = "flowlab training objectives (for flowlab train --objective; the math: flowlab explain NAME)"
    out.print(table(title, ("name", "plugin", "flows"), rows, out.width))
    return 0


def table(title: str, columns: tuple[str, ...], rows: Sequence[Sequence[str]], width: int) -> Table:
    """A table that fits ``width`` (the terminal's, e.g. 80) columns: the short ``columns`` keep their full width;
    the last one, the summary, gets the rest and is cut to one line with an ellipsis, so each record is one line."""
    result = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), title_justify="left", pad_edge=False)
    widths = [max([len(column), *(len(row[index]) for row in rows)]) for index, column in enumerate(columns)]
    for column in (*columns, "summary"):
        result.add_column(column, no_wrap=True)
    rest = max(width - sum(widths) - 2 * len(columns) - 4, 12)  # less the padding and rich's rounding
    for *cells, summary in rows:
        text = Text(summary)
        text.truncate(rest, overflow="ellipsis")
        result.add_row(*(escape(cell) for cell in cells), text)
    return result
