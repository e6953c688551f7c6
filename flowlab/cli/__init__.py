"""The ``flowlab`` command line: argparse for parsing, rich for output.

Each command lives in its own module exposing ``add_parser(subparsers)``, which registers the sub-command and sets
``func(args) -> int`` as its handler. A :class:`~flowlab.errors.FlowlabError` raised by a handler is printed as one
red line on stderr and the command exits with status 1 (argparse's usage errors exit with 2): no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from flowlab import __version__
from flowlab.cli.console import error_console, escape

#: modules of the sub-commands, in the order ``--help`` lists them
COMMAND_MODULES = (
    "flowlab.cli.list_cmd",
    "flowlab.cli.info_cmd",
    "flowlab.cli.check_cmd",
    "flowlab.cli.explain_cmd",
    "flowlab.cli.train_cmd",
    "flowlab.cli.eval_cmd",
    "flowlab.cli.sample_cmd",
    "flowlab.cli.plot_cmd",
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowlab",
        description="Learn, build and verify normalizing flows. Every flow is a plugin; see 'flowlab list'.",
    )
    parser.add_argument("--version", action="version", version=f"flowlab {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    from flowlab.errors import FlowlabError

    try:
        return int(args.func(args))
    except FlowlabError as exc:
        error_console().print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)
        return 1
    except BrokenPipeError:  # e.g. 'flowlab list --json | head'
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        error_console().print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
