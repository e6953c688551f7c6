"""Parsing ``--option key=value`` arguments: values are JSON (``64``, ``true``, ``{"hidden": 32}``) or else strings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from flowlab.errors import OptionError


def parse_options(items: Sequence[str] | None) -> dict[str, Any]:
    """``["blocks=4", "block_options={\\"hidden\\": 32}", "permutation=random"]`` -> a dict of Python values.

    The flow's :class:`~flowlab.spec.FlowSpec` validates names and values afterwards.
    """
    options: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(
                f"--option: expected KEY=VALUE (e.g. blocks=4 or block_options='{{\"hidden\": 32}}'), got {item!r}"
            )
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        options[key.strip()] = value
    return options
