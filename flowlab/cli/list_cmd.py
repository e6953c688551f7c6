"""``flowlab list``: the registered flows and the plugins they come from (``--json`` for machines)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.table import Table

from flowlab.cli.console import console, escape
from flowlab.cli.plugin_files import add_plugin_argument, load_plugin_files


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list the registered flows and plugins",
        description="List every registered flow with its plugin, kind and log-det kind; broken plugins in red.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_plugin_argument(parser)
    parser.set_defaults(func=run)


def catalogue() -> dict[str, Any]:
    """The registry as plain data: flows (with their plugin and options), datasets (with their entropies) and
    plugins (with their errors)."""
    from flowlab.plugins import get_registry
    from flowlab.registry import flows

    registry = get_registry()
    flows()  # registers the FlowSpec record type
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
                "options": {
                    key: {"default": option.default, "allowed": option.describe(), "help": option.help}
                    for key, option in entry.record.options.items()
                },
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


def run(args: argparse.Namespace) -> int:
    load_plugin_files(args.plugins)
    data = catalogue()
    if args.json:
        json.dump(data, sys.stdout, indent=2, default=repr)
        sys.stdout.write("\n")
        return 0
    table = Table(title="flowlab flows")
    for column in ("name", "plugin", "kind", "log-det", "summary"):
        table.add_column(column, overflow="fold")
    for flow in data["flows"]:
        table.add_row(
            flow["name"],
            f"{flow['distribution']} ({flow['plugin']})",
            flow["kind"],
            flow["logdet"],
            escape(flow["summary"]),
        )
    for plugin in data["plugins"]:
        if not plugin["ok"]:
            table.add_row(
                f"[red]{escape(plugin['name'])}[/]",
                f"[red]{escape(plugin['distribution'])}[/]",
                "[red]broken[/]",
                "",
                f"[red]{escape(plugin['error'])}[/]",
            )
    console().print(table)
    datasets = Table(title="flowlab datasets (for flowlab train --data)")
    for column in ("name", "plugin", "dim", "entropy (nats)", "summary"):
        datasets.add_column(column, overflow="fold")
    for dataset in data["datasets"]:
        entropy = "unknown" if dataset["entropy"] is None else f"{dataset['entropy']:.2f}"
        datasets.add_row(dataset["name"], dataset["plugin"], str(dataset["dim"]), entropy, escape(dataset["summary"]))
    console().print(datasets)
    return 0
