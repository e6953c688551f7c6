"""The trained run that ``eval``, ``sample`` and ``plot`` read: ``RUN`` (a run folder or a checkpoint file),
``--last``, and ``--data`` for a data file that moved (:func:`flowlab.checkpoint.resolve_run`,
:func:`flowlab.checkpoint.load_flow`); the command says which checkpoint it used."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flowlab.cli.console import error_console


def add_run_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The positional ``RUN`` (optional where the command has another source of a flow) and ``--last``."""
    parser.add_argument(
        "run",
        metavar="RUN",
        nargs=None if required else "?",
        help="a run folder of 'flowlab train' (its best.pt: the lowest validation NLL; else its last checkpoint) "
        "or a checkpoint file",
    )
    parser.add_argument("--last", action="store_true", help="use the run's last checkpoint instead of its best")


def load_run(args: argparse.Namespace, data: str | None = None) -> tuple[Any, Any, dict[str, Any], Path]:
    """The flow of ``args.run`` (``--last``: its last checkpoint) on ``args.device``, its config, checkpoint and
    file, after saying on stderr which checkpoint it is; ``data``: where the run's data file is now, if it moved
    (a path or a registered name, as given)."""
    from flowlab.checkpoint import load_flow, resolve_run
    from flowlab.datafiles import canonical

    file, which = resolve_run(args.run, "last" if args.last else "best")
    flow, config, checkpoint = load_flow(file, args.device, None if data is None else canonical(data))
    error_console().print(f"using {file}: {describe(which, checkpoint)}", highlight=False, soft_wrap=True)
    return flow, config, checkpoint, file


def describe(which: str, checkpoint: dict[str, Any]) -> str:
    """What a checkpoint is, e.g. ``the run's best checkpoint (lowest validation NLL): step 600, validation NLL
    96.848`` (``which``: the run's ``best`` or ``last``, or a ``file`` given)."""
    from flowlab.checkpoint import step_score

    scored = step_score(checkpoint)
    kind = {
        "best": "the run's best checkpoint (lowest validation NLL)",
        "last": "the run's last checkpoint",
        "file": "the checkpoint file given",
    }[which]
    return f"{kind}: step {checkpoint['step']}" + ("" if scored is None else f", {scored[0]} NLL {scored[1]:.3f}")
