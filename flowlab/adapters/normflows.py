"""``from_normflows``: a normflows ``NormalizingFlow`` (or its list of flow layers) as a flowlab bijector.

Direction and sign. normflows' layers map **noise to data** like flowlab's: ``layer(z)`` (its ``forward``) returns
``(x, log|det ∂x/∂z|)`` and ``layer.inverse(x)`` returns ``(z, log|det ∂z/∂x|)``; ``NormalizingFlow.flows`` are
applied in order from the base. Log-dets come as ``[batch]`` or as a scalar (``ActNorm``). So::

    forward(z) = layers in order,   log-dets summed   # log|det ∂x/∂z|
    inverse(x) = layers reversed (.inverse), summed   # log|det ∂z/∂x|

The layers are called one by one (not through ``NormalizingFlow.forward_and_log_det``) and their log-dets summed by
:func:`~flowlab.adapters.core.sum_logdets`, which keeps a layer's wrong dtype visible in the total. A layer without
an analytic inverse (``Planar`` with ``act="tanh"``, ``Radial``) is inverted by
:class:`~flowlab.adapters.NumericInverse` when ``solve_inverse=True``.

The base. normflows' usual base ``DiagGaussian`` has a trainable ``loc`` and ``log_scale``: ``z = loc + exp(s)·ε``
with ``ε ~ N(0, I)``. It is **folded** into the bijector as a first affine layer on ``ε``
(``log|det| = Σ log_scale``) that holds the ``DiagGaussian`` module itself, so its parameters stay trainable and are
checked by the kit, and the adapted flow has flowlab's standard-normal base: ``log p(x)`` is the same. Any other
base raises :class:`~flowlab.errors.AdapterError` (pass the list of layers and give the base to
:func:`~flowlab.adapters.adapted_spec`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import torch
from torch import Tensor, nn

from flowlab.adapters.core import Adapted, sum_logdets
from flowlab.adapters.numeric_inverse import NumericInverse
from flowlab.bijector import Bijector
from flowlab.errors import AdapterError, ShapeError

MAPPING = (
    "normflows: flows[i](z) maps noise to data and returns log|det ∂x/∂z|, flows[i].inverse(x) returns "
    "(z, log|det ∂z/∂x|); forward applies the layers in order, inverse in reverse, log-dets summed per layer "
    "(a layer's dtype kept); a DiagGaussian base is folded in as a first affine layer z = loc + exp(log_scale)·ε."
)


class NormflowsLayer(Adapted):
    """One normflows flow layer (``normflows.flows.Flow``, ``Composite`` included) on ``R^dim``; same direction."""

    def peer_forward(self, z: Tensor) -> tuple[Tensor, Any]:
        result: tuple[Tensor, Any] = self.peer(z)
        return result

    def peer_inverse(self, x: Tensor) -> tuple[Tensor, Any]:
        result: tuple[Tensor, Any] = self.peer.inverse(x)
        return result


class DiagGaussianBase(Adapted):
    """normflows' ``DiagGaussian`` base folded into an affine layer: ``x = loc + exp(log_scale)·ε``.

    ``forward(ε) = (loc + exp(s)·ε, Σ s)``, ``inverse(x) = ((x − loc)·exp(−s), −Σ s)`` with ``s = log_scale``.
    """

    def peer_forward(self, z: Tensor) -> tuple[Tensor, Any]:
        loc, log_scale = self.peer.loc, self.peer.log_scale
        return loc + torch.exp(log_scale) * z, log_scale.sum()

    def peer_inverse(self, x: Tensor) -> tuple[Tensor, Any]:
        loc, log_scale = self.peer.loc, self.peer.log_scale
        return (x - loc) * torch.exp(-log_scale), -log_scale.sum()


class NormflowsChain(Bijector):
    """The base layer (if any) then the flow layers; log-dets summed with :func:`sum_logdets` (dtype kept).

    ``log|det ∂x/∂z| = Σ_k log|det ∂f_k/∂(input of f_k)|``, as flowlab's ``Compose``, whose float64 accumulator
    would hide a layer's float32 log-det.
    """

    def __init__(self, layers: Iterable[Bijector], dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dim = dim

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x, terms = z, []
        for layer in self.layers:
            x, ladj = layer(x)
            terms.append(ladj)
        return x, sum_logdets(terms, z)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, terms = x, []
        for layer in reversed(self.layers):
            z, ladj = cast(Bijector, layer).inverse(z)
            terms.append(ladj)
        return z, sum_logdets(terms, x)


def from_normflows(
    model_or_flows: nn.Module | Iterable[nn.Module], dim: int, *, solve_inverse: bool = False
) -> NormflowsChain:
    """A flowlab bijector on ``R^dim`` from a ``normflows.NormalizingFlow`` or a sequence of normflows layers.

    ``solve_inverse=True`` inverts every layer with :class:`NumericInverse` (for layers without an analytic inverse).
    """
    import normflows

    layers: list[Bijector] = []
    if isinstance(model_or_flows, normflows.NormalizingFlow):
        base = model_or_flows.q0
        if not isinstance(base, normflows.distributions.DiagGaussian):
            raise AdapterError(
                f"from_normflows: expected a NormalizingFlow with a DiagGaussian base (folded into the bijector), "
                f"got {type(base).__name__}; pass model.flows and give the base to adapted_spec(base=...)"
            )
        if tuple(base.shape) != (dim,):
            raise ShapeError(f"from_normflows: expected a model on R^{dim}, got a base of shape {list(base.shape)}")
        layers.append(DiagGaussianBase(base, dim))
        flows: Iterable[nn.Module] = model_or_flows.flows
    elif isinstance(model_or_flows, nn.Module) and not isinstance(model_or_flows, nn.ModuleList):
        raise AdapterError(
            f"from_normflows: expected a normflows.NormalizingFlow or a sequence of normflows flows, got "
            f"{type(model_or_flows).__name__}"
        )
    else:
        flows = model_or_flows
    for flow in flows:
        if not isinstance(flow, normflows.flows.Flow):
            raise AdapterError(f"from_normflows: expected normflows.flows.Flow layers, got {type(flow).__name__}")
        layer = NormflowsLayer(flow, dim)
        layers.append(NumericInverse(layer) if solve_inverse else layer)
    if not layers:
        raise ShapeError("from_normflows: expected at least one flow layer, got none")
    return NormflowsChain(layers, dim)
