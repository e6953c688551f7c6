"""The build options the peer flows share: the number of transforms and the width of their networks.

The kit builds many instances of every flow, so the defaults are small (hidden width 16, 2-4 transforms).
"""

from __future__ import annotations

from typing import Any

from flowlab import Option


def size_options(transforms: int, hidden: int = 16) -> dict[str, Option]:
    """``transforms`` (how many layers) and ``hidden`` (the width of each conditioner network)."""
    return {
        "transforms": Option(transforms, "number of transforms (layers)", low=1, high=64),
        "hidden": Option(hidden, "width of the conditioner networks' hidden layers", low=1, high=1024),
    }


def stacked(options: Any) -> bool:
    """Whether a coupling or autoregressive stack has at least two transforms, so every output depends on every
    input (alternating masks / reversed orders)."""
    return int(options["transforms"]) >= 2
