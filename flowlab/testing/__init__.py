"""Tools for plugin authors: Hypothesis strategies and a one-line conformance suite for one's own flows.

In a plugin's test suite (flowlab's pytest plugin is loaded automatically wherever flowlab is installed)::

    from flowlab.testing import conformance_tests

    test_conformance = conformance_tests("planar")  # one test per property × device

or, in any code, ``assert_conforms("planar")``. The strategies (``dims``, ``batches``, ``seeds``, ``scales``,
``option_values``, ``cases``, ``inputs``) are the ones the kit draws its cases from.

Import-light (PEP 562): importing ``flowlab.testing`` does not import torch; the conformance helpers load on use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flowlab.checks.strategies import batches, cases, dims, option_values, scales, seeds

_LAZY = {
    "inputs": "flowlab.checks.cases",
    "conformance_tests": "flowlab.testing.conformance",
    "check_flow": "flowlab.testing.conformance",
    "assert_conforms": "flowlab.testing.conformance",
}

__all__ = [
    "assert_conforms",
    "batches",
    "cases",
    "check_flow",
    "conformance_tests",
    "dims",
    "inputs",
    "option_values",
    "scales",
    "seeds",
]

if TYPE_CHECKING:
    from flowlab.checks.cases import inputs
    from flowlab.testing.conformance import assert_conforms, check_flow, conformance_tests


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flowlab.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
