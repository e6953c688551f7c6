"""flowlab plugin ``peers``: flows of other libraries (torch.distributions, zuko, nflows, normflows), adapted.

Each library's flows are registered as ``<library>.<flow>`` only if the library imports (``pip install
'flowlab-nf[peers]'`` installs the tested versions); with none installed the plugin registers ``torch.*`` alone. None
is checked by default (``FlowSpec.checked_by_default=False``): name them, e.g. ``flowlab check zuko.nsf``.
``benchmarks/peers.py`` checks them all and writes ``docs/peers.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

from flowlab import hookimpl

#: library -> the module of this plugin holding its ``SPECS``
LIBRARIES: dict[str, str] = {
    "torch": "flowlab_peers.torch_flows",
    "zuko": "flowlab_peers.zuko_flows",
    "nflows": "flowlab_peers.nflows_flows",
    "normflows": "flowlab_peers.normflows_flows",
}


def available() -> list[str]:
    """The libraries of :data:`LIBRARIES` that import here."""
    found = []
    for library in LIBRARIES:
        try:
            importlib.import_module(library)
        except ImportError:
            continue
        found.append(library)
    return found


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    for library in available():
        for spec in importlib.import_module(LIBRARIES[library]).SPECS:
            register(spec)
