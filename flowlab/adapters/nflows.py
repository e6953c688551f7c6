"""``from_nflows``: an nflows ``Flow`` or ``Transform`` as a flowlab bijector.

Direction and sign. An nflows ``Transform`` maps **data to noise**: ``transform(x)`` returns
``(noise, log|det ∂noise/∂x|)`` and ``transform.inverse(noise)`` returns ``(x, log|det ∂x/∂noise|)``, both of shape
``[batch]`` (``Flow.log_prob(x) = base.log_prob(noise) + logabsdet``). So::

    forward(z) = transform.inverse(z)   # (x, log|det ∂x/∂z|)
    inverse(x) = transform(x)           # (z, log|det ∂z/∂x|)

A ``Flow`` must have nflows' ``StandardNormal`` base (its ``_transform`` is adapted); any other base raises
:class:`~flowlab.errors.AdapterError` (adapt ``flow._transform`` and give the base to
:func:`~flowlab.adapters.adapted_spec`). Only unconditional use (``context=None``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from flowlab.adapters.core import Adapted
from flowlab.errors import AdapterError, ShapeError

MAPPING = (
    "nflows: transform(x) maps data to noise and returns log|det ∂noise/∂x|; forward(z) = transform.inverse(z) "
    "(x, log|det ∂x/∂z|), inverse(x) = transform(x) (z, log|det ∂z/∂x|); the base is nflows' StandardNormal."
)


class NflowsTransform(Adapted):
    """``transform`` (an ``nflows.transforms.Transform`` mapping data to noise on ``R^dim``) as a flowlab bijector."""

    def peer_forward(self, z: Tensor) -> tuple[Tensor, Any]:
        result: tuple[Tensor, Any] = self.peer.inverse(z)
        return result

    def peer_inverse(self, x: Tensor) -> tuple[Tensor, Any]:
        result: tuple[Tensor, Any] = self.peer(x)
        return result


def from_nflows(flow_or_transform: nn.Module, dim: int) -> NflowsTransform:
    """A flowlab bijector on ``R^dim`` from an ``nflows.flows.Flow`` (standard-normal base) or ``Transform``."""
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.base import Transform

    peer = flow_or_transform
    if isinstance(peer, Flow):
        base = peer._distribution
        if not isinstance(base, StandardNormal):
            raise AdapterError(
                f"from_nflows: expected a flow with nflows' StandardNormal base, got {type(base).__name__}; adapt "
                "flow._transform and give the base to adapted_spec(base=...)"
            )
        if tuple(base._shape) != (dim,):
            raise ShapeError(f"from_nflows: expected a flow on R^{dim}, got a base of shape {list(base._shape)}")
        peer = peer._transform
    if not isinstance(peer, Transform):
        raise AdapterError(
            f"from_nflows: expected an nflows.flows.Flow or nflows.transforms.Transform, got "
            f"{type(flow_or_transform).__name__}"
        )
    return NflowsTransform(peer, dim)
