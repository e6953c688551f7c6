"""``flowlab info``: versions, CUDA devices and loaded plugins, for bug reports."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import metadata
from typing import Any

from rich.table import Table

from flowlab.cli.console import console, escape
from flowlab.cli.plugin_files import add_plugin_argument, load_plugin_files

#: the dependencies whose versions are shown, after flowlab's own distribution
PACKAGES = ("torch", "torchdiffeq", "pluggy", "hypothesis", "rich", "pytest", "matplotlib")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show versions, CUDA devices and plugins",
        description="Show the versions of Python and flowlab's dependencies, CUDA availability and the plugins.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    add_plugin_argument(parser)
    parser.set_defaults(func=run)


def environment() -> dict[str, Any]:
    import torch

    from flowlab.plugins import BUILTIN_DISTRIBUTION, get_registry
    from flowlab.registry import flows

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in (BUILTIN_DISTRIBUTION, *PACKAGES):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    cuda = torch.cuda.is_available()
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    flows()
    plugins = [
        {"name": p.name, "distribution": p.distribution, "version": p.version, "ok": p.ok, "error": p.error}
        for p in get_registry().plugins.values()
    ]
    return {
        "versions": versions,
        "platform": platform.platform(),
        "cuda": {"available": cuda, "torch_cuda": torch.version.cuda, "devices": devices},
        "plugins": plugins,
    }


def run(args: argparse.Namespace) -> int:
    load_plugin_files(args.plugins)
    env = environment()
    if args.json:
        json.dump(env, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    out = console()
    versions = Table(title="versions", show_header=False)
    for name, version in env["versions"].items():
        versions.add_row(name, version or "[dim]not installed[/]")
    versions.add_row("platform", env["platform"])
    out.print(versions)
    cuda = env["cuda"]
    if cuda["available"]:
        out.print(f"CUDA {cuda['torch_cuda']}: " + ", ".join(f"cuda:{i} {n}" for i, n in enumerate(cuda["devices"])))
    else:
        out.print(f"CUDA: not available (torch built with CUDA {cuda['torch_cuda'] or 'none'})")
    plugins = Table(title="plugins")
    for column in ("name", "distribution", "version", "status"):
        plugins.add_column(column)
    for p in env["plugins"]:
        status = "[green]loaded[/]" if p["ok"] else f"[red]broken: {escape(p['error'])}[/]"
        plugins.add_row(p["name"], p["distribution"], p["version"], status)
    out.print(plugins)
    return 0
