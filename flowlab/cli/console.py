"""Rich consoles for the CLI. Rich honours ``NO_COLOR`` and drops colour and live displays on non-TTY output."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape


def console() -> Console:
    """The console for results (stdout)."""
    return Console(highlight=False)


def error_console() -> Console:
    """The console for errors and warnings (stderr)."""
    return Console(stderr=True, highlight=False)


__all__ = ["console", "error_console", "escape"]
