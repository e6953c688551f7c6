"""``from_zuko``: a zuko flow (``zuko.lazy.Flow``, a ``LazyDistribution``) or lazy transform as a flowlab bijector.

Direction and sign. zuko's ``flow(c)`` is a ``NormalizingFlow(transform, base)`` distribution whose ``transform``
maps **data to noise** (``log_prob(x) = base.log_prob(f(x)) + log|det ∂f/∂x|``), and
``transform.call_and_ladj(x)`` returns ``(f(x), log|det ∂f/∂x|)`` of shape ``[batch]`` for vector transforms; a
lazy object builds its distribution or transform from its current parameters at every call, at the context ``c``
(``None`` for an unconditional flow, ``[batch, context_dim]`` for a conditional one built with ``context=k``).

A whole flow, as users call it (the default, ``model=True``), with ``d = flow(c)``::

    forward(z) = d.transform.inv.call_and_ladj(z)              # (x, log|det ∂x/∂z|): what d.rsample runs
    inverse(x) = z = d.transform(x),
                 log|det ∂z/∂x| = d.log_prob(x) − log N(z; 0, I)   # the flow's own density

so flowlab's ``Flow.log_prob(x)`` is exactly ``flow(c).log_prob(x)``, base included. A lazy transform, or a flow
with ``model=False``, is called through its transform ``f = lazy(c)``::

    forward(z) = f.inv.call_and_ladj(z)   # (x, log|det ∂x/∂z|)
    inverse(x) = f.call_and_ladj(x)       # (z, log|det ∂z/∂x|)

A ``zuko.lazy.Flow`` must have the standard-normal base flowlab's ``Flow`` uses (zuko's flows do: a ``DiagNormal``
of zeros and ones); any other base raises :class:`~flowlab.errors.AdapterError` (adapt ``flow.transform`` and give
the base to :func:`~flowlab.adapters.adapted_spec`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, distributions, nn

from flowlab.adapters.contents import require_exposed
from flowlab.adapters.core import Adapted, density_logdet
from flowlab.errors import AdapterError, ShapeError

MAPPING = (
    "zuko: flow(c).transform f maps data to noise; forward(z) = f.inv.call_and_ladj(z) (x, log|det ∂x/∂z|); "
    "inverse(x) = f(x) with the log-det flow(c).log_prob(x) − log N(z) for a whole flow, f.call_and_ladj(x) for a "
    "transform; f rebuilt from the lazy object at every call; zuko's base is the standard normal."
)


class ZukoTransform(Adapted):
    """``lazy`` (a ``zuko.lazy.LazyTransform`` mapping data to noise on ``R^dim``) as a flowlab bijector."""

    def peer_forward(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        result: tuple[Tensor, Any] = self.peer(context).inv.call_and_ladj(z)
        return result

    def peer_inverse(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        result: tuple[Tensor, Any] = self.peer(context).call_and_ladj(x)
        return result


class ZukoFlow(Adapted):
    """A whole ``zuko.lazy.Flow`` (standard-normal base) on ``R^dim``, through ``flow(c)`` (module docstring)."""

    def peer_forward(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        result: tuple[Tensor, Any] = self.peer(context).transform.inv.call_and_ladj(z)
        return result

    def peer_inverse(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        distribution = self.peer(context)
        z = distribution.transform(x)
        return z, density_logdet(distribution.log_prob(x), z)


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


def from_zuko(flow_or_lazy_transform: nn.Module, dim: int, *, context_dim: int = 0, model: bool = True) -> Adapted:
    """A flowlab bijector on ``R^dim`` from a ``zuko.lazy.Flow`` (standard-normal base; through ``flow(c)``, or its
    transform with ``model=False``) or a ``LazyTransform``; ``context_dim = k`` for one built with ``context=k``."""
    import zuko

    peer = flow_or_lazy_transform
    if isinstance(peer, zuko.lazy.Flow):
        _check_standard_normal(peer.base(None), dim)
        if model:
            return _exposed(ZukoFlow(peer, dim, context_dim=context_dim))
        peer = peer.transform
    if not isinstance(peer, zuko.lazy.LazyTransform):
        raise AdapterError(
            "from_zuko: expected a zuko.lazy.Flow or zuko.lazy.LazyTransform, got "
            f"{type(flow_or_lazy_transform).__name__}"
        )
    return _exposed(ZukoTransform(peer, dim, context_dim=context_dim))


def _exposed(bijector: Adapted) -> Adapted:
    require_exposed(bijector, bijector.peer, source="from_zuko")
    return bijector
