"""Adapters: flows of other libraries (torch.distributions, zuko, nflows, normflows) as flowlab bijectors.

Each adapter maps the peer's direction and sign to flowlab's (``forward(z) -> (x, log|det ∂x/∂z|)``,
``inverse(x) -> (z, log|det ∂z/∂x|)``) and its log-det to shape ``[batch]``, and passes the peer's dtype and device
through unchanged, so the conformance kit checks the peer, not the adapter. The mapping of each library is stated
in its module. The libraries are imported when an adapter is called, never at import time.

- :func:`from_torch`, :func:`from_zuko`, :func:`from_nflows`, :func:`from_normflows`: the adapters;
- :class:`NumericInverse`: the inverse of a forward-only layer by damped Newton;
- :func:`adapted_spec`: the ``FlowSpec`` of an adapted flow (library version and mapping in its explanation).
"""

from __future__ import annotations

from flowlab.adapters.core import Adapted, logdet_rows, sum_logdets
from flowlab.adapters.nflows import from_nflows
from flowlab.adapters.normflows import from_normflows
from flowlab.adapters.numeric_inverse import NumericInverse
from flowlab.adapters.spec import adapted_spec, peer_version
from flowlab.adapters.torch_transform import from_torch
from flowlab.adapters.zuko import from_zuko

__all__ = [
    "Adapted",
    "NumericInverse",
    "adapted_spec",
    "from_nflows",
    "from_normflows",
    "from_torch",
    "from_zuko",
    "logdet_rows",
    "peer_version",
    "sum_logdets",
]
