"""``--plugin FILE``: load a plugin from a Python file that is not installed, for every command that reads the
registry (the fast loop of writing a plugin: edit, ``flowlab check --plugin my_flow.py``, repeat)."""

from __future__ import annotations

import argparse

from flowlab.plugins import load_plugin_files

__all__ = ["add_plugin_argument", "load_plugin_files"]


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
