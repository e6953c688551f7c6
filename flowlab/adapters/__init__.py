"""Adapters: flows of other libraries (torch.distributions, Pyro, FrEIA, zuko, nflows, normflows) and velocity
fields trained elsewhere (torchcfm, Meta's flow_matching, any ``f(t, x)``) as flowlab bijectors.

Each adapter maps the peer's direction and sign to flowlab's (``forward(z) -> (x, log|det ∂x/∂z|)``,
``inverse(x) -> (z, log|det ∂z/∂x|)``) and its log-det to shape ``[batch]``, and passes the peer's dtype and device
through unchanged, so the conformance kit checks the peer, not the adapter. Every learnable tensor of the peer is a
parameter of the adapted module (an :class:`~flowlab.errors.AdapterError` names any that cannot be). The mapping of
each library is stated in its module. The libraries are imported when an adapter is called, never at import time.

- :func:`from_torch`, :func:`from_pyro`, :func:`from_freia`, :func:`from_zuko`, :func:`from_nflows`,
  :func:`from_normflows`: the adapters (whole models of zuko, nflows and normflows through their own methods);
- :func:`from_velocity_field`: a velocity field as a CNF (flowlab's ``ODEBijector``);
- :class:`NumericInverse`: the inverse of a forward-only layer by damped Newton;
- :func:`adapted_spec`, :func:`velocity_spec`: the ``FlowSpec`` of an adapted flow (library version and mapping in
  its explanation).
"""

from __future__ import annotations

from flowlab.adapters.core import Adapted, logdet_rows, sum_logdets
from flowlab.adapters.freia import from_freia
from flowlab.adapters.nflows import from_nflows
from flowlab.adapters.normflows import from_normflows
from flowlab.adapters.numeric_inverse import NumericInverse
from flowlab.adapters.pyro import from_pyro
from flowlab.adapters.spec import adapted_spec, peer_version, velocity_spec
from flowlab.adapters.torch_transform import from_torch
from flowlab.adapters.velocity import VelocityField, from_velocity_field
from flowlab.adapters.zuko import from_zuko

__all__ = [
    "Adapted",
    "NumericInverse",
    "VelocityField",
    "adapted_spec",
    "from_freia",
    "from_nflows",
    "from_normflows",
    "from_pyro",
    "from_torch",
    "from_velocity_field",
    "from_zuko",
    "logdet_rows",
    "peer_version",
    "sum_logdets",
    "velocity_spec",
]
