"""``from_nflows``: an nflows ``Flow`` or ``Transform`` as a flowlab bijector.

Direction and sign. An nflows ``Transform`` maps **data to noise**: ``transform(x, context)`` returns
``(noise, log|det ∂noise/∂x|)`` and ``transform.inverse(noise, context)`` returns ``(x, log|det ∂x/∂noise|)``, both
of shape ``[batch]``. A ``Flow`` adds a base and an embedding net ``e`` of the context ``c`` (``None`` or
``[batch, context_dim]``): ``flow.log_prob(x, c) = base.log_prob(noise) + logabsdet`` with the transform at
``e(c)``.

A whole flow, as users call it (the default, ``model=True``)::

    forward(z) = transform.inverse(z, e(c))              # (x, log|det ∂x/∂z|): what sample_and_log_prob runs
    inverse(x) = z = flow.transform_to_noise(x, c),
                 log|det ∂z/∂x| = flow.log_prob(x, c) − log N(z; 0, I)   # the flow's own density

so flowlab's ``Flow.log_prob(x)`` is exactly ``flow.log_prob(x, c)``, embedding and base included. A ``Transform``,
or a flow with ``model=False``, is called directly::

    forward(z) = transform.inverse(z, c)   # (x, log|det ∂x/∂z|)
    inverse(x) = transform(x, c)           # (z, log|det ∂z/∂x|)

A ``Flow`` must have nflows' ``StandardNormal`` base; any other base raises :class:`~flowlab.errors.AdapterError`
(adapt ``flow._transform`` and give the base to :func:`~flowlab.adapters.adapted_spec`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from flowlab.adapters.contents import require_exposed
from flowlab.adapters.core import Adapted, density_logdet
from flowlab.errors import AdapterError, ShapeError

MAPPING = (
    "nflows: transform(x) maps data to noise and returns log|det ∂noise/∂x|; forward(z) = transform.inverse(z) "
    "(x, log|det ∂x/∂z|); inverse(x) = transform(x), with the log-det flow.log_prob(x) − log N(z) for a whole flow "
    "(transform(x)'s own for a transform); the base is nflows' StandardNormal."
)


class NflowsTransform(Adapted):
    """``transform`` (an ``nflows.transforms.Transform`` mapping data to noise on ``R^dim``) as a flowlab bijector."""

    def peer_forward(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        result: tuple[Tensor, Any] = self.peer.inverse(z, context=context)
        return result

    def peer_inverse(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        result: tuple[Tensor, Any] = self.peer(x, context=context)
        return result


class NflowsFlow(Adapted):
    """A whole ``nflows.flows.Flow`` (``StandardNormal`` base) on ``R^dim``, through its own methods (module
    docstring)."""

    def peer_forward(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        result: tuple[Tensor, Any] = self.peer._transform.inverse(z, context=self.peer._embedding_net(context))
        return result

    def peer_inverse(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        z = self.peer.transform_to_noise(x, context=context)
        return z, density_logdet(self.peer.log_prob(x, context=context), z)


def from_nflows(flow_or_transform: nn.Module, dim: int, *, context_dim: int = 0, model: bool = True) -> Adapted:
    """A flowlab bijector on ``R^dim`` from an ``nflows.flows.Flow`` (standard-normal base; through its own
    methods, or its transform with ``model=False``) or ``Transform``; ``context_dim = k`` for a conditional one."""
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.base import Transform

    peer = flow_or_transform
    bijector: Adapted
    if isinstance(peer, Flow):
        base = peer._distribution
        if not isinstance(base, StandardNormal):
            raise AdapterError(
                f"from_nflows: expected a flow with nflows' StandardNormal base, got {type(base).__name__}; adapt "
                "flow._transform and give the base to adapted_spec(base=...)"
            )
        if tuple(base._shape) != (dim,):
            raise ShapeError(f"from_nflows: expected a flow on R^{dim}, got a base of shape {list(base._shape)}")
        if model:
            bijector = NflowsFlow(peer, dim, context_dim=context_dim)
            require_exposed(bijector, peer, source="from_nflows")
            return bijector
        peer = peer._transform
    if not isinstance(peer, Transform):
        raise AdapterError(
            f"from_nflows: expected an nflows.flows.Flow or nflows.transforms.Transform, got "
            f"{type(flow_or_transform).__name__}"
        )
    bijector = NflowsTransform(peer, dim, context_dim=context_dim)
    require_exposed(bijector, peer, source="from_nflows")
    return bijector
