"""``from_zuko``: a zuko flow (``zuko.lazy.Flow``) or lazy transform as a flowlab bijector.

Direction and sign. zuko's ``flow(c)`` is a ``NormalizingFlow(transform, base)`` whose ``transform`` maps **data to
noise** (``log_prob(x) = base.log_prob(f(x)) + log|det ∂f/∂x|``), and ``transform.call_and_ladj(x)`` returns
``(f(x), log|det ∂f/∂x|)`` of shape ``[batch]`` for vector transforms. So, with ``f = lazy(None)`` rebuilt at each
call (a lazy transform builds its transform from its current parameters)::

    forward(z) = f.inv.call_and_ladj(z)   # (x, log|det ∂x/∂z|)
    inverse(x) = f.call_and_ladj(x)       # (z, log|det ∂z/∂x|)

A ``zuko.lazy.Flow`` must have the standard-normal base flowlab's ``Flow`` uses (zuko's flows do: a ``DiagNormal``
of zeros and ones); any other base raises :class:`~flowlab.errors.AdapterError` (adapt ``flow.transform`` and give
the base to :func:`~flowlab.adapters.adapted_spec`). Only unconditional flows (``context=0``) are adapted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, distributions, nn

from flowlab.adapters.core import Adapted
from flowlab.errors import AdapterError, ShapeError

MAPPING = (
    "zuko: flow(c).transform f maps data to noise; forward(z) = f.inv.call_and_ladj(z) (x, log|det ∂x/∂z|), "
    "inverse(x) = f.call_and_ladj(x) (z, log|det ∂z/∂x|), f rebuilt from the lazy transform at every call; "
    "zuko's base is the standard normal."
)


class ZukoTransform(Adapted):
    """``lazy`` (a ``zuko.lazy.LazyTransform`` mapping data to noise on ``R^dim``) as a flowlab bijector."""

    def peer_forward(self, z: Tensor) -> tuple[Tensor, Any]:
        result: tuple[Tensor, Any] = self.peer(None).inv.call_and_ladj(z)
        return result

    def peer_inverse(self, x: Tensor) -> tuple[Tensor, Any]:
        result: tuple[Tensor, Any] = self.peer(None).call_and_ladj(x)
        return result


def _check_standard_normal(base: distributions.Distribution, dim: int) -> None:
    normal = base.base_dist if isinstance(base, distributions.Independent) else None
    if tuple(base.event_shape) != (dim,):
        raise ShapeError(f"from_zuko: expected a flow on R^{dim}, got a base of event shape {list(base.event_shape)}")
    if not (
        isinstance(normal, distributions.Normal)
        and bool(torch.all(normal.loc == 0))
        and bool(torch.all(normal.scale == 1))
    ):
        raise AdapterError(
            f"from_zuko: expected a flow with the standard-normal base, got {base!r}; adapt flow.transform and give "
            "the base to adapted_spec(base=...)"
        )


def from_zuko(flow_or_lazy_transform: nn.Module, dim: int) -> ZukoTransform:
    """A flowlab bijector on ``R^dim`` from a ``zuko.lazy.Flow`` (standard-normal base) or ``LazyTransform``."""
    import zuko

    peer = flow_or_lazy_transform
    if isinstance(peer, zuko.lazy.Flow):
        _check_standard_normal(peer.base(None), dim)
        peer = peer.transform
    if not isinstance(peer, zuko.lazy.LazyTransform):
        raise AdapterError(
            "from_zuko: expected a zuko.lazy.Flow or zuko.lazy.LazyTransform, got "
            f"{type(flow_or_lazy_transform).__name__}"
        )
    return ZukoTransform(peer, dim)
