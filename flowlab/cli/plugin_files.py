"""``--plugin FILE``: load a plugin from a Python file that is not installed, for every command that reads the
registry (the fast loop of writing a plugin: edit, ``flowlab check --plugin my_flow.py``, repeat)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def add_plugin_argument(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--plugin FILE`` option (stored as ``args.plugins``)."""
    parser.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="FILE",
        help="also load the plugin in this Python file (its PLUGIN object, or the module's hooks); repeatable",
    )


def load_plugin_files(paths: Sequence[str]) -> None:
    """Register the plugin of each file with the process-wide registry; :class:`~flowlab.errors.PluginError`
    (a usage error: exit 2) naming the file if one does not load or its hooks fail."""
    from flowlab.errors import PluginError
    from flowlab.plugins import get_registry, load_plugin_file

    registry = get_registry()
    for path in paths:
        info = registry.add_plugin(load_plugin_file(path), f"file:{path}")
        if not info.ok:
            raise PluginError(f"plugin file {path!r}: {info.error}")
