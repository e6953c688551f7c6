"""``%flowlab``: a flowlab command in a notebook cell, run in the kernel's own process.

``%load_ext flowlab.notebook`` registers the magic (the notebooks' set-up cell does). ``%flowlab train --flow
stacked --data moons --out runs/moons`` runs what ``flowlab train ...`` runs in a terminal, :func:`flowlab.cli.main`
with those arguments, without starting a process (torch is imported once, by the kernel) and with a fresh plugin
registry before and after, as a new process would have: a ``--plugin FILE`` loaded by one command is gone for the
next, and for the Python cells. Relative paths are relative to the kernel's working folder (the notebook's).

- The pictures the command wrote (``--out`` or ``--animate`` files ending in ``.png`` or ``.gif``) are shown
  below the cell, and matplotlib's backend is the notebook's again afterwards (``flowlab plot`` draws on Agg).
- A command that ends with another exit status than 0 raises :class:`CommandFailed`, so the cell stops (as a
  failing ``%%bash`` cell does) and "Run all" stops there; a line that ends with ``# exits N`` expects status ``N``
  instead (a check shown failing on purpose).

Importing this module imports neither IPython nor torch; IPython is needed only when the magic runs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flowlab.errors import FlowlabError

#: a trailing ``# exits N``: the exit status the command is expected to end with
EXPECTED_STATUS = re.compile(r"#\s*exits\s+(\d+)\s*$")
#: options whose value is a picture the command writes
PICTURE_OPTIONS = ("--out", "--animate")
PICTURE_SUFFIXES = (".png", ".gif")


class CommandFailed(FlowlabError):
    """A ``%flowlab`` command ended with another exit status than the one expected."""


def run_line(line: str) -> int:
    """Run one ``%flowlab`` line as the ``flowlab`` command; its exit status (:class:`CommandFailed` if it is not
    the expected one: ``0``, or ``N`` for a line ending with ``# exits N``)."""
    from flowlab.cli import main
    from flowlab.plugins import reset_registry

    found = EXPECTED_STATUS.search(line)
    expected = int(found.group(1)) if found else 0
    argv = shlex.split(line, comments=True)
    reset_registry()  # a fresh process: nothing a previous command or cell registered
    try:
        status = main(argv)
    finally:
        reset_registry()
    if status != expected:
        raise CommandFailed(f"flowlab {shlex.join(argv)} exited with status {status}, expected {expected}")
    return status


def pictures(argv: list[str]) -> list[Path]:
    """The picture files named by ``--out FILE`` / ``--animate FILE`` (or ``--out=FILE``) in ``argv``."""
    named = []
    for i, arg in enumerate(argv):
        option, _, value = arg.partition("=")
        if option in PICTURE_OPTIONS:
            value = value or (argv[i + 1] if i + 1 < len(argv) else "")
            if value.endswith(PICTURE_SUFFIXES):
                named.append(Path(value))
    return named


@contextmanager
def notebook_backend(shell: Any) -> Iterator[None]:
    """Give matplotlib the notebook's backend back after the block (``flowlab plot`` switches to Agg): the inline
    backend through IPython, so figures of later cells are shown again."""
    try:
        import matplotlib
    except ImportError:  # no plot extra: nothing can switch it
        yield
        return
    backend = matplotlib.get_backend()
    try:
        yield
    finally:
        if matplotlib.get_backend() != backend:
            if "inline" in backend:
                shell.enable_matplotlib("inline")
            else:
                import matplotlib.pyplot as plt

                plt.switch_backend(backend)


def flowlab_magic(line: str) -> None:
    """``%flowlab COMMAND [ARGS ...] [# exits N]``: see the module docstring."""
    from IPython import get_ipython
    from IPython.display import Image, display

    with notebook_backend(get_ipython()):
        run_line(line)
    for path in pictures(shlex.split(line, comments=True)):
        if path.is_file():
            display(Image(filename=str(path)))


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext flowlab.notebook``."""
    ipython.register_magic_function(flowlab_magic, "line", "flowlab")
