"""flowlab plugin ``peers``: flows of other libraries (torch.distributions, Pyro, FrEIA, zuko, nflows, normflows, and a
torchcfm velocity field), adapted.

Each library's flows are registered as ``<library>.<flow>`` only if the library is installed (``pip install -e
'.[peers]'`` from the repository root installs the tested versions; torchcfm is not in the extra, see
``docs/adapters.md``); with none installed the plugin registers ``torch.*`` alone. Whether a library is installed is
looked up without importing it (``importlib.util.find_spec``): the libraries are imported when a flow is built, so
``flowlab list`` does not pay their import time. None is checked by default (``FlowSpec.checked_by_default=False``):
name them, e.g. ``flowlab check zuko.nsf``. ``benchmarks/peers.py`` checks them all and writes ``docs/peers.md``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from flowlab import hookimpl

#: library -> (the module of this plugin holding its ``SPECS``, the top-level modules it needs)
LIBRARIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "torch": ("flowlab_peers.torch_flows", ("torch",)),
    "zuko": ("flowlab_peers.zuko_flows", ("zuko",)),
    "nflows": ("flowlab_peers.nflows_flows", ("nflows",)),
    "normflows": ("flowlab_peers.normflows_flows", ("normflows",)),
    "pyro": ("flowlab_peers.pyro_flows", ("pyro",)),
    "freia": ("flowlab_peers.freia_flows", ("FrEIA",)),
    "torchcfm": ("flowlab_peers.torchcfm_flows", ("torchcfm", "ot")),
}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (``False`` also when ``sys.modules`` blocks it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available() -> list[str]:
    """The libraries of :data:`LIBRARIES` whose modules are installed here."""
    return [library for library, (_, needs) in LIBRARIES.items() if all(installed(module) for module in needs)]


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    for library in available():
        for spec in importlib.import_module(LIBRARIES[library][0]).SPECS:
            register(spec)
