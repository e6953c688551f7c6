"""``from_torch``: a ``torch.distributions.transforms.Transform`` as a flowlab bijector.

Direction and sign. ``TransformedDistribution(base, T)`` samples ``x = T(z)``, so ``T`` maps base to data, as
flowlab's ``forward`` does, and ``T.log_abs_det_jacobian(z, x) = log|∂x/∂z|`` per element (``event_dim = 0``) or
per vector (``event_dim = 1``)::

    forward(z) = (T(z),     Σ_event T.log_abs_det_jacobian(z, x))        # log|det ∂x/∂z|
    inverse(x) = (T.inv(x), Σ_event T.inv.log_abs_det_jacobian(x, z))    # log|det ∂z/∂x|

where ``Σ_event`` sums an elementwise log-det over the last dimension. Transforms act on tensors they hold as
plain attributes (e.g. ``AffineTransform(loc, scale)``), which ``nn.Module.to`` cannot see: every tensor found in
the transform (through ``ComposeTransform.parts``, inverses and ``IndependentTransform``) is registered on the
adapter, an ``nn.Parameter`` as a parameter (trainable, checked) and any other tensor as a buffer, and written
back into the transform before each call, so ``.to(dtype/device)`` moves it. Each call also re-links the inverses
built with ``.inv`` (``_InverseTransform._inv``), which torch drops when a transform is copied or pickled
(``Transform.__getstate__`` sets ``_inv = None``), so ``copy.deepcopy`` of the adapter works. The log-det's dtype is
the transform's own.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.distributions import transforms

from flowlab.adapters.core import Adapted
from flowlab.errors import AdapterError, ShapeError

MAPPING = (
    "torch.distributions: T maps base to data (TransformedDistribution samples x = T(z)); "
    "forward(z) = (T(z), T.log_abs_det_jacobian(z, x)), inverse(x) = (T.inv(x), T.inv.log_abs_det_jacobian(x, z)), "
    "elementwise log-dets summed over the last dimension; tensors the transform holds are registered as buffers "
    "(parameters stay parameters)."
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
        self._slots: list[tuple[Any, str, str]] = []
        tensors, self._links = _contents(transform)
        for owner, attribute, tensor in tensors:
            name = f"tensor{len(self._slots)}"
            if isinstance(tensor, nn.Parameter):
                self.peer.register_parameter(name, tensor)
            else:
                self.peer.register_buffer(name, tensor)
            self._slots.append((owner, attribute, name))

    def _bind(self) -> None:
        for owner, attribute, name in self._slots:
            setattr(owner, attribute, getattr(self.peer, name))
        for owner, attribute, target in self._links:
            setattr(owner, attribute, target)

    def _per_vector(self, ladj: Tensor) -> Tensor:
        return ladj.sum(dim=-1) if self.event_dim == 0 else ladj

    def peer_forward(self, z: Tensor) -> tuple[Tensor, Any]:
        self._bind()
        x = self.transform(z)
        return x, self._per_vector(self.transform.log_abs_det_jacobian(z, x))

    def peer_inverse(self, x: Tensor) -> tuple[Tensor, Any]:
        self._bind()
        inverse = self.transform.inv
        z = inverse(x)
        return z, self._per_vector(inverse.log_abs_det_jacobian(x, z))


def _contents(
    transform: transforms.Transform,
) -> tuple[list[tuple[Any, str, Tensor]], list[tuple[Any, str, transforms.Transform]]]:
    """``(owner, attribute, tensor)`` for every tensor attribute of ``transform`` and the transforms it holds, and
    ``(owner, "_inv", transform)`` for every inverse's link to the transform it inverts."""
    tensors: list[tuple[Any, str, Tensor]] = []
    links: list[tuple[Any, str, transforms.Transform]] = []
    seen: set[int] = set()
    stack: list[Any] = [transform]
    while stack:
        owner = stack.pop()
        if id(owner) in seen:
            continue
        seen.add(id(owner))
        for attribute, value in vars(owner).items():
            if attribute.startswith("_cached"):  # the transform's (x, y) cache, not a parameter
                continue
            if isinstance(value, Tensor):
                tensors.append((owner, attribute, value))
            elif isinstance(value, transforms.Transform):
                if attribute == "_inv":
                    links.append((owner, attribute, value))
                stack.append(value)
            elif isinstance(value, (list, tuple)):
                stack.extend(item for item in value if isinstance(item, transforms.Transform))
    return tensors, links


def from_torch(transform: transforms.Transform, dim: int) -> TorchTransform:
    """A flowlab bijector on ``R^dim`` from a torch ``Transform`` mapping base to data (see the module docstring)."""
    return TorchTransform(transform, dim)
