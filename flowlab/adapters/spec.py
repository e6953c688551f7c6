"""``adapted_spec``: the :class:`~flowlab.spec.FlowSpec` of a flow adapted from another library.

The explanation gets a section naming the library, its installed version and the direction/sign mapping of its
adapter (each adapter module's ``MAPPING``), so ``flowlab explain`` and every report say exactly what was checked.
Adapted flows are not checked by default (``checked_by_default=False``): ``flowlab check`` checks them when named.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

from flowlab.adapters import nflows, normflows, torch_transform, zuko
from flowlab.bijector import Bijector
from flowlab.errors import OptionError
from flowlab.spec import FlowSpec

#: library (its distribution name) -> the direction/sign mapping its adapter implements
MAPPINGS: dict[str, str] = {
    "torch": torch_transform.MAPPING,
    "zuko": zuko.MAPPING,
    "nflows": nflows.MAPPING,
    "normflows": normflows.MAPPING,
}


def peer_version(library: str) -> str:
    """The installed version of ``library`` (a distribution name), or ``"not installed"``."""
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return "not installed"


def adapted_spec(
    name: str,
    summary: str,
    build: Callable[..., Bijector],
    *,
    library: str,
    explanation: str,
    **fields: Any,
) -> FlowSpec:
    """A ``FlowSpec`` for a flow of ``library`` adapted to flowlab (``checked_by_default=False``).

    ``explanation`` (Markdown: the peer's transform) is followed by the library's version and the adapter's
    direction/sign mapping. ``fields`` are the other ``FlowSpec`` fields (``options``, ``min_dim``, ``mixes``,
    ``capabilities``, ``tolerances``, ``base``, ...).
    """
    if library not in MAPPINGS:
        raise OptionError(f"adapted_spec: unknown library {library!r}; known libraries: {', '.join(MAPPINGS)}")
    section = (
        f"\n\n**Adapted from {library} {peer_version(library)}** (`flowlab.adapters`). {MAPPINGS[library]} "
        "flowlab's convention: `forward(z) -> (x, log|det ∂x/∂z|)`, `inverse(x) -> (z, log|det ∂z/∂x|)`, log-dets "
        "`[batch]` in the peer's own dtype and device (not cast)."
    )
    return FlowSpec(
        name=name,
        summary=summary,
        build=build,
        explanation=explanation.strip() + section,
        checked_by_default=False,
        **fields,
    )
