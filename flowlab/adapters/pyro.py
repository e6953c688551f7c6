"""``from_pyro``: a Pyro transform (``Transform``, ``TransformModule``, ``ConditionalTransformModule``) as a flowlab
bijector.

Direction and sign. Pyro's transforms are ``torch.distributions`` transforms (a ``TransformModule`` is also an
``nn.Module``): ``TransformedDistribution(base, [T])`` samples ``x = T(z)``, so ``T`` maps base to data, and
``T.log_abs_det_jacobian(z, x) = log|det ∂x/∂z|`` (summed over the last dimension for an elementwise ``T``). An
unconditional transform is adapted by :func:`~flowlab.adapters.from_torch` (which registers a ``TransformModule`` as
a submodule, so its parameters are trained and checked). A conditional one (``ConditionalTransformModule``, e.g.
``conditional_spline``) is ``T_c = module.condition(c)``::

    forward(z, c) = (T_c(z),     T_c.log_abs_det_jacobian(z, x))       # log|det ∂x/∂z| at fixed c
    inverse(x, c) = (T_c.inv(x), T_c.inv.log_abs_det_jacobian(x, z))   # log|det ∂z/∂x| at fixed c

with ``c`` of shape ``[batch, context_dim]`` (one context per row; Pyro broadcasts the conditioned parameters).

Pyro leaves the inverse of ``Sylvester``, ``Planar``, ``Radial``, ``Polynomial``, ``NeuralAutoregressive`` and
``BlockAutoregressive`` unimplemented (it answers only from the cache of the last forward call):
``solve_inverse=True`` inverts the adapted forward map with :class:`~flowlab.adapters.NumericInverse` instead.
Pyro's transforms cache their last call (``cache_size=1``); the adapter calls them as users do, cache included.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from flowlab.adapters.contents import require_exposed
from flowlab.adapters.core import Adapted
from flowlab.adapters.numeric_inverse import NumericInverse
from flowlab.adapters.torch_transform import from_torch
from flowlab.bijector import Bijector
from flowlab.errors import AdapterError, ShapeError

MAPPING = (
    "Pyro: T (a torch.distributions transform) maps base to data; forward(z) = (T(z), T.log_abs_det_jacobian(z, x)), "
    "inverse(x) = (T.inv(x), T.inv.log_abs_det_jacobian(x, z)), elementwise log-dets summed over the last dimension; "
    "a conditional transform is T_c = module.condition(c) with one context per row; the parameters of a "
    "TransformModule are the adapter's."
)


class PyroConditional(Adapted):
    """A Pyro ``ConditionalTransformModule`` on ``R^dim`` conditioned on ``R^context_dim`` (module docstring)."""

    def _conditioned(self, context: Tensor | None) -> Any:
        transform = self.peer.condition(context)
        event_dim = transform.domain.event_dim
        if event_dim > 1:
            raise ShapeError(
                f"from_pyro: expected a transform of vectors (event_dim 0 or 1), got event_dim {event_dim}"
            )
        return transform

    def peer_forward(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        transform = self._conditioned(context)
        x = transform(z)
        return x, _per_vector(transform.log_abs_det_jacobian(z, x), transform)

    def peer_inverse(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        inverse = self._conditioned(context).inv
        z = inverse(x)
        return z, _per_vector(inverse.log_abs_det_jacobian(x, z), inverse)


def _per_vector(ladj: Tensor, transform: Any) -> Tensor:
    return ladj.sum(dim=-1) if transform.domain.event_dim == 0 else ladj


def from_pyro(transform: Any, dim: int, *, context_dim: int = 0, solve_inverse: bool = False) -> Bijector:
    """A flowlab bijector on ``R^dim`` from a Pyro transform (see the module docstring).

    ``context_dim = k > 0`` for a ``ConditionalTransformModule`` (required for one, refused otherwise);
    ``solve_inverse=True`` for a transform whose inverse Pyro does not implement (unconditional only).
    """
    from pyro.distributions.conditional import ConditionalTransformModule
    from torch.distributions import Transform

    if isinstance(transform, ConditionalTransformModule):
        if not context_dim:
            raise AdapterError(
                f"from_pyro: {type(transform).__name__} is a conditional transform: expected context_dim > 0 (the "
                "size of the context it conditions on), got 0"
            )
        if solve_inverse:
            raise AdapterError("from_pyro: solve_inverse=True is for unconditional transforms; got a conditional one")
        bijector: Adapted = PyroConditional(transform, dim, context_dim=context_dim)
        require_exposed(bijector, transform, source="from_pyro")
        return bijector
    if not isinstance(transform, Transform):
        raise AdapterError(
            "from_pyro: expected a pyro.distributions Transform, TransformModule or ConditionalTransformModule, got "
            f"{type(transform).__name__}"
        )
    if context_dim:
        raise AdapterError(
            f"from_pyro: expected context_dim=0 for the unconditional {type(transform).__name__}, got {context_dim}"
        )
    adapted = from_torch(transform, dim)
    return NumericInverse(adapted) if solve_inverse else adapted
