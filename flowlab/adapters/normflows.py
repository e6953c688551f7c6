"""``from_normflows``: a normflows ``NormalizingFlow`` (through its own methods, or layer by layer) or a list of
normflows flow layers as a flowlab bijector.

Direction and sign. normflows' layers map **noise to data** like flowlab's: ``layer(z)`` (its ``forward``) returns
``(x, log|det ∂x/∂z|)`` and ``layer.inverse(x)`` returns ``(z, log|det ∂z/∂x|)``; ``NormalizingFlow.flows`` are
applied in order from the base. Log-dets come as ``[batch]`` or as a scalar (``ActNorm``).

The base. normflows' usual base ``DiagGaussian`` has a trainable ``loc`` and ``log_scale``: ``z = loc + exp(s)·ε``
with ``ε ~ N(0, I)``. It is **folded** into the bijector as a first affine layer on ``ε`` (``log|det| = Σ s``) that
holds the ``DiagGaussian`` module itself, so its parameters stay trainable and are checked by the kit, and the
adapted flow has flowlab's standard-normal base: ``log p(x)`` is the same. Any other base raises
:class:`~flowlab.errors.AdapterError` (pass the list of layers and give the base to
:func:`~flowlab.adapters.adapted_spec`).

A whole model, as users call it (the default, ``model=True``)::

    forward(ε) = model.forward_and_log_det(loc + exp(s)·ε), log-det + Σ s     # log|det ∂x/∂ε|
    inverse(x) = ε = (model.inverse(x) − loc)·exp(−s),
                 log|det ∂ε/∂x| = model.log_prob(x) − log N(ε; 0, I)          # the model's own density

so the kit checks ``forward_and_log_det`` (what ``sample`` and ``reverse_kld`` run) and ``log_prob`` (what users
evaluate), accumulators included: flowlab's ``Flow.log_prob(x)`` is exactly ``model.log_prob(x)``.

Layer by layer (``model=False``, or a list of layers)::

    forward(z) = layers in order,   log-dets summed   # log|det ∂x/∂z|
    inverse(x) = layers reversed (.inverse), summed   # log|det ∂z/∂x|

summed by :func:`~flowlab.adapters.core.sum_logdets`, which keeps a layer's wrong dtype visible in the total (the
model's own accumulators are not used). A layer without an analytic inverse (``Planar`` with ``act="tanh"``,
``Radial``) is inverted by :class:`~flowlab.adapters.NumericInverse` when ``solve_inverse=True`` (with
``model=True`` the whole ``forward_and_log_det`` is inverted, and ``log_prob`` is not used).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import torch
from torch import Tensor, nn

from flowlab.adapters.contents import require_exposed
from flowlab.adapters.core import Adapted, density_logdet, sum_logdets
from flowlab.adapters.numeric_inverse import NumericInverse
from flowlab.bijector import Bijector
from flowlab.errors import AdapterError, ShapeError

MAPPING = (
    "normflows: flows[i](z) maps noise to data and returns log|det ∂x/∂z|, flows[i].inverse(x) returns "
    "(z, log|det ∂z/∂x|); a DiagGaussian base is folded in as a first affine layer z = loc + exp(log_scale)·ε. A "
    "whole model: forward(ε) = model.forward_and_log_det(z), inverse(x) from model.inverse(x) with the log-det "
    "model.log_prob(x) − log N(ε). Layer by layer: forward applies the layers in order, inverse in reverse, log-dets "
    "summed per layer (a layer's dtype kept)."
)


class NormflowsLayer(Adapted):
    """One normflows flow layer (``normflows.flows.Flow``, ``Composite`` included) on ``R^dim``; same direction."""

    def peer_forward(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        result: tuple[Tensor, Any] = self.peer(z)
        return result

    def peer_inverse(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        result: tuple[Tensor, Any] = self.peer.inverse(x)
        return result


def fold(base: Any, eps: Tensor) -> tuple[Tensor, Tensor]:
    """A ``DiagGaussian`` base's sample from the standard-normal ``ε``: ``(loc + exp(s)·ε, Σ s)``."""
    return base.loc + torch.exp(base.log_scale) * eps, base.log_scale.sum().expand(eps.shape[0])


def unfold(base: Any, z: Tensor) -> tuple[Tensor, Tensor]:
    """The standard-normal ``ε`` of a ``DiagGaussian`` base's point ``z``: ``((z − loc)·exp(−s), −Σ s)``."""
    return (z - base.loc) * torch.exp(-base.log_scale), -base.log_scale.sum().expand(z.shape[0])


class DiagGaussianBase(Adapted):
    """normflows' ``DiagGaussian`` base folded into an affine layer: ``x = loc + exp(log_scale)·ε``
    (:func:`fold`, :func:`unfold`)."""

    def peer_forward(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        return fold(self.peer, z)

    def peer_inverse(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        return unfold(self.peer, x)


class NormflowsModel(Adapted):
    """A ``normflows.NormalizingFlow`` with a ``DiagGaussian`` base, through its own methods (module docstring)."""

    def peer_forward(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        point, base_ladj = fold(self.peer.q0, z)
        x, ladj = self.peer.forward_and_log_det(point)
        return x, sum_logdets([base_ladj, ladj], z)

    def peer_inverse(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        eps, _ = unfold(self.peer.q0, self.peer.inverse(x))
        return eps, density_logdet(self.peer.log_prob(x), eps)


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
    model_or_flows: nn.Module | Iterable[nn.Module], dim: int, *, solve_inverse: bool = False, model: bool = True
) -> Bijector:
    """A flowlab bijector on ``R^dim`` from a ``normflows.NormalizingFlow`` (through its own methods; layer by layer
    with ``model=False``) or a sequence of normflows layers (see the module docstring).

    ``solve_inverse=True`` inverts with :class:`NumericInverse` (for layers without an analytic inverse).
    """
    import normflows

    if isinstance(model_or_flows, normflows.NormalizingFlow):
        base = _diag_gaussian(model_or_flows, dim)
        if model:
            whole = NormflowsModel(model_or_flows, dim)
            require_exposed(whole, model_or_flows, source="from_normflows")
            return NumericInverse(whole) if solve_inverse else whole
        layers: list[Bijector] = [DiagGaussianBase(base, dim)]
        flows: Iterable[nn.Module] = model_or_flows.flows
    elif isinstance(model_or_flows, nn.Module) and not isinstance(model_or_flows, nn.ModuleList):
        raise AdapterError(
            f"from_normflows: expected a normflows.NormalizingFlow or a sequence of normflows flows, got "
            f"{type(model_or_flows).__name__}"
        )
    else:
        layers, flows = [], model_or_flows
    for flow in flows:
        if not isinstance(flow, normflows.flows.Flow):
            raise AdapterError(f"from_normflows: expected normflows.flows.Flow layers, got {type(flow).__name__}")
        layer = NormflowsLayer(flow, dim)
        layers.append(NumericInverse(layer) if solve_inverse else layer)
    if not layers:
        raise ShapeError("from_normflows: expected at least one flow layer, got none")
    return NormflowsChain(layers, dim)


def _diag_gaussian(model: Any, dim: int) -> Any:
    """``model.q0``, checked to be a ``DiagGaussian`` on ``R^dim`` without a temperature."""
    import normflows

    base = model.q0
    if not isinstance(base, normflows.distributions.DiagGaussian) or base.temperature is not None:
        raise AdapterError(
            f"from_normflows: expected a NormalizingFlow with a DiagGaussian base without temperature (folded into "
            f"the bijector), got {type(base).__name__}; pass model.flows and give the base to adapted_spec(base=...)"
        )
    if tuple(base.shape) != (dim,):
        raise ShapeError(f"from_normflows: expected a model on R^{dim}, got a base of shape {list(base.shape)}")
    return base
