"""``from_torch``: a ``torch.distributions.transforms.Transform`` as a flowlab bijector.

Direction and sign. ``TransformedDistribution(base, T)`` samples ``x = T(z)``, so ``T`` maps base to data, as
flowlab's ``forward`` does, and ``T.log_abs_det_jacobian(z, x) = log|∂x/∂z|`` per element (``event_dim = 0``) or
per vector (``event_dim = 1``)::

    forward(z) = (T(z),     Σ_event T.log_abs_det_jacobian(z, x))        # log|det ∂x/∂z|
    inverse(x) = (T.inv(x), Σ_event T.inv.log_abs_det_jacobian(x, z))    # log|det ∂z/∂x|

where ``Σ_event`` sums an elementwise log-det over the last dimension.

Keeping what the transform holds. Transforms act on tensors they hold as plain attributes (e.g.
``AffineTransform(loc, scale)``), inside the distributions they hold (``CumulativeDistributionTransform(Normal(loc,
scale))``) or in lists and dicts, which ``nn.Module.to`` cannot see. Every such tensor is registered on the adapter,
an ``nn.Parameter`` (or any leaf that requires grad) as a parameter (trainable, checked) and any other tensor as a
buffer, and written back where it was found before each call, so ``.to(dtype/device)`` moves it. An ``nn.Module``
the transform is or holds (a Pyro ``TransformModule``) becomes a submodule of the adapter, with its parameters and
buffers. A learnable tensor the adapter cannot keep (one computed from a parameter in a constructor, which would not
follow it) is an :class:`~flowlab.errors.AdapterError` naming it (:func:`~flowlab.adapters.contents
.require_exposed`). Each call also re-links the inverses built with ``.inv`` (``_InverseTransform._inv``), which
torch drops when a transform is copied or pickled (``Transform.__getstate__`` sets ``_inv = None``), so
``copy.deepcopy`` of the adapter works. The log-det's dtype is the transform's own.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.distributions import transforms

from flowlab.adapters.contents import is_cache, require_exposed, walk
from flowlab.adapters.core import Adapted
from flowlab.errors import AdapterError, ShapeError

MAPPING = (
    "torch.distributions: T maps base to data (TransformedDistribution samples x = T(z)); "
    "forward(z) = (T(z), T.log_abs_det_jacobian(z, x)), inverse(x) = (T.inv(x), T.inv.log_abs_det_jacobian(x, z)), "
    "elementwise log-dets summed over the last dimension; tensors the transform holds (in distributions and lists "
    "too) are registered as buffers, learnable ones as parameters, and modules it holds as submodules."
)


class TorchTransform(Adapted):
    """``transform`` (a ``torch.distributions.transforms.Transform`` on ``R^dim``) as a flowlab bijector."""

    def __init__(self, transform: transforms.Transform, dim: int) -> None:
        if not isinstance(transform, transforms.Transform):
            raise AdapterError(
                f"from_torch: expected a torch.distributions.transforms.Transform, got {type(transform).__name__}"
            )
        event_dim = transform.domain.event_dim
        if event_dim > 1 or transform.codomain.event_dim != event_dim:
            raise ShapeError(
                f"from_torch: expected a transform of vectors (domain and codomain event_dim 0 or 1), got event_dim "
                f"{event_dim} -> {transform.codomain.event_dim}"
            )
        super().__init__(nn.Module(), dim)
        self.transform = transform
        self.event_dim = event_dim
        self._slots: list[tuple[Any, Any, str]] = []
        self._links: list[tuple[Any, str, transforms.Transform]] = []
        self._hold(transform)

    def _hold(self, transform: transforms.Transform) -> None:
        """Register what ``transform`` holds (see the module docstring): modules, tensors, inverse links."""
        self._links = _inverse_links(transform)
        if isinstance(transform, nn.Module):  # a Pyro TransformModule: its parameters and buffers are its own
            self.peer.add_module("module0", transform)
            return
        for found in walk(transform, "transform", report=(nn.Module,), stop=(nn.Module,)):
            value = found.value
            if isinstance(value, nn.Module):
                self.peer.add_module(f"module{len(self.peer._modules)}", value)
            elif is_cache(found.path) or value.grad_fn is not None or isinstance(found.owner, (tuple, frozenset)):
                continue  # a cache is not state; a computed or immutably held learnable one: require_exposed refuses it
            else:
                name = f"tensor{len(self._slots)}"
                if value.requires_grad:
                    parameter = value if isinstance(value, nn.Parameter) else nn.Parameter(value)
                    self.peer.register_parameter(name, parameter)
                else:
                    self.peer.register_buffer(name, value)
                self._slots.append((found.owner, found.key, name))

    def _bind(self) -> None:
        for owner, key, name in self._slots:
            _put(owner, key, getattr(self.peer, name))
        for owner, attribute, target in self._links:
            setattr(owner, attribute, target)

    def _per_vector(self, ladj: Tensor) -> Tensor:
        return ladj.sum(dim=-1) if self.event_dim == 0 else ladj

    def peer_forward(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        self._bind()
        x = self.transform(z)
        return x, self._per_vector(self.transform.log_abs_det_jacobian(z, x))

    def peer_inverse(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        self._bind()
        inverse = self.transform.inv
        z = inverse(x)
        return z, self._per_vector(inverse.log_abs_det_jacobian(x, z))


def _put(owner: Any, key: Any, value: Tensor) -> None:
    """``owner[key] = value`` for a dict or list, ``setattr`` otherwise."""
    if isinstance(owner, (dict, list)):
        owner[key] = value
    else:
        setattr(owner, key, value)


def _inverse_links(transform: transforms.Transform) -> list[tuple[Any, str, transforms.Transform]]:
    """``(inverse, "_inv", target)`` for every ``_InverseTransform`` reachable from ``transform`` and the transform
    it inverts (torch drops the link when copying)."""
    links = []
    for found in walk(transform, report=(transforms.Transform,)):
        if found.key == "_inv" and isinstance(found.value, transforms.Transform):
            links.append((found.owner, "_inv", found.value))
    return links


def from_torch(transform: transforms.Transform, dim: int) -> TorchTransform:
    """A flowlab bijector on ``R^dim`` from a torch ``Transform`` mapping base to data (see the module docstring);
    :class:`~flowlab.errors.AdapterError` if a learnable tensor it holds cannot be kept."""
    bijector = TorchTransform(transform, dim)
    require_exposed(bijector, transform, source="from_torch")
    return bijector
