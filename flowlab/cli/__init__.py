"""The ``flowlab`` command line: argparse for parsing, rich for output.

Each command lives in its own module exposing ``add_parser(subparsers)``, which registers the sub-command and sets
``func(args) -> int`` as its handler. A :class:`~flowlab.errors.FlowlabError` raised by a handler is printed as one
red line on stderr, without a traceback, and the command exits with :func:`exit_code` of it: 2 for usage errors
(what was asked for does not exist or is not allowed), 1 for a run that failed; see :data:`EXIT_STATUS`.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from flowlab import __version__
from flowlab.cli.console import error_console, escape

if TYPE_CHECKING:
    from flowlab.errors import FlowlabError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: the exit statuses, as 'flowlab --help' shows them
EXIT_STATUS = """exit status:
  0    success
  1    a check or a run failed (a property failed, training diverged, a solve
       failed, a checkpoint is unreadable)
  2    usage error (unknown command, flow, dataset or option; a value not
       allowed; an unavailable --device; a --plugin file that does not load)
  130  interrupted (Ctrl-C)"""

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
    "flowlab.cli.compare_cmd",
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowlab",
        description="Learn, build and verify normalizing flows. Every flow is a plugin; see 'flowlab list'.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"flowlab {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def exit_code(exc: FlowlabError) -> int:
    """:data:`EXIT_USAGE` for errors in what was asked for (an unknown name, a value not allowed, an unavailable
    device, a plugin file that does not load); :data:`EXIT_FAILED` for everything that failed while running."""
    from flowlab.errors import DeviceError, OptionError, PluginError, UnknownFlowError

    return EXIT_USAGE if isinstance(exc, (OptionError, UnknownFlowError, DeviceError, PluginError)) else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (see :data:`EXIT_STATUS`).

    ``argv`` ``None`` (the console script, ``python -m flowlab``): the command line of this process, which is the
    command's own, so its start-up is settled (:func:`flowlab.startup.settle`: the plugins discovered, what they made
    frozen out of the garbage collector's way). Called with a list (tests, notebooks), the caller's collector is left
    as it is."""
    try:
        return _run(argv)
    finally:
        _ignore_ctrl_c_at_exit()


def _run(argv: Sequence[str] | None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for one that re-runs itself
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_USAGE
    from flowlab.errors import FlowlabError
    from flowlab.plugins import transient_plugins

    if argv is None:  # this process is the command (the console script, python -m flowlab): settle its start-up
        from flowlab.startup import settle

        settle()
    try:
        with transient_plugins():  # a command's --plugin files are forgotten after it
            return int(args.func(args))
    except FlowlabError as exc:
        error_console().print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
        return exit_code(exc)
    except BrokenPipeError:  # e.g. 'flowlab list --json | head'
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        error_console().print("[yellow]interrupted[/]")
        return EXIT_INTERRUPTED


def _ignore_ctrl_c_at_exit() -> None:
    """Once the command is done, a Ctrl-C during interpreter shutdown (torch's and rich's exit handlers) must not
    print an 'Exception ignored in atexit callback' traceback: the last exit handler to be registered runs first
    and ignores SIGINT for the others."""
    atexit.unregister(_ignore_sigint)
    atexit.register(_ignore_sigint)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
