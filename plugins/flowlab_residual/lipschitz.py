"""The residual function ``g`` of an invertible residual block, with ``Lip(g) ≤ coeff^L < 1``.

``g(z) = W_L φ(… φ(W_1 z + b_1) …) + b_L``: ``L = depth + 1`` linear layers and 1-Lipschitz activations ``φ``
(:data:`flowlab.nn.LIPSCHITZ_CHOICES`: ``LipSwish``, ``ELU``, each with ``value_and_derivative``).
Each weight is used as ``W̃ = W · coeff / max(σ(W), coeff)`` (spectral normalisation, Miyato et al. 2018;
Behrmann et al. 2019), so ``‖W̃‖₂ ≤ coeff`` and ``Lip(g) ≤ Π ‖W̃_l‖₂ ≤ coeff^L``.

``σ(W) = ‖W‖₂`` is computed exactly on each call (``torch.linalg.matrix_norm(W, 2)``, an SVD; skipped when the
Frobenius norm, an upper bound, is already ``≤ coeff``), not estimated by power iteration: an iteration's estimate
``σ̂ ≤ σ`` approaches from below, so ``W/σ̂`` can break the bound the inverse and the series rely on, and its
persistent vector ``u`` makes the map depend on the calls before (updated in training mode) or differ between
training and eval mode. Exact, the map is a deterministic function of the parameters in both modes. The price is an
O(k³) SVD per layer and call (k = the smaller side), against O(k²) for one power-iteration step: small for the
widths of this testbed (``docs/families/residual.md`` has the numbers).

The Jacobian is available in closed form: ``J_g(z) = W̃_L D_{L−1} W̃_{L−1} … D_1 W̃_1`` with ``D_l = diag φ'(a_l)``;
:meth:`LipschitzMLP.vjp` applies it to row vectors (``wᵀ J_g``), one matrix product per layer, under any grad mode.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowlab import FlowlabError
from flowlab.nn import LIPSCHITZ_CHOICES, activation_module


class LipschitzError(FlowlabError, ValueError):
    """A weight of a residual block violates ``‖W‖₂ ≤ coeff`` (only possible with ``spectral_norm=False``)."""


class SpectralLinear(nn.Module):
    """``y = W̃ a + b`` with ``‖W̃‖₂ ≤ coeff``: ``W̃ = W · coeff / max(σ(W), coeff)`` (only ever scaled down).

    With ``normalize=False`` the weight is used as stored and *checked* instead: a weight with ``‖W‖₂ > coeff``
    (set by the user, loaded from a state dict, reached by an optimizer step) raises :class:`LipschitzError` on
    load and on every call.
    """

    def __init__(self, n_in: int, n_out: int, *, coeff: float, normalize: bool, label: str) -> None:
        super().__init__()
        linear = nn.Linear(n_in, n_out)  # its initialisation (Kaiming uniform), parameters of our own
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = nn.Parameter(linear.bias.detach().clone())
        self.coeff, self.normalize, self.label = float(coeff), bool(normalize), label
        if not normalize:
            with torch.no_grad():  # start inside the constraint; from then on it is the user's to keep
                self.weight.mul_(self.coeff / max(float(torch.linalg.matrix_norm(self.weight, 2)), self.coeff))
            self.register_load_state_dict_post_hook(SpectralLinear._check_loaded)

    @staticmethod
    def _check_loaded(module: SpectralLinear, _incompatible_keys: object) -> None:
        module.check()

    def check(self) -> float:
        """The exact ``‖W‖₂`` of the stored weight (an SVD); :class:`LipschitzError` if it exceeds ``coeff``."""
        sigma = float(torch.linalg.matrix_norm(self.weight.detach(), 2))
        if not sigma <= self.coeff * (1 + 64 * torch.finfo(self.weight.dtype).eps):  # a weight scaled to coeff passes
            raise LipschitzError(
                f"residual: {self.label} has spectral norm ‖W‖₂ = {sigma:.6g}, expected ≤ coeff = {self.coeff:g} "
                "so that Lip(g) < 1 (the block is invertible, its fixed-point inverse and log-det series converge); "
                "scale the weight down, or build with spectral_norm=True to rescale every weight on each call"
            )
        return sigma

    def effective(self) -> tuple[Tensor, float]:
        """``(W̃, ‖W̃‖₂)``: the weight this call uses and its spectral norm (a float, without gradient)."""
        if not self.normalize:
            return self.weight, self.check()
        frobenius = float(self.weight.detach().norm())  # ≥ ‖W‖₂: nothing to rescale below coeff
        if frobenius <= self.coeff:
            return self.weight, frobenius
        sigma = torch.linalg.matrix_norm(self.weight, 2)  # differentiable: ∂σ/∂W = u₁ v₁ᵀ
        if float(sigma.detach()) <= self.coeff:
            return self.weight, float(sigma.detach())
        return self.weight * (self.coeff / sigma), self.coeff


@dataclass(frozen=True)
class Weights:
    """The normalised weights of one call, ``[(W̃_l, b_l)]``, and the bound ``Lip(g) ≤ Π ‖W̃_l‖₂``."""

    layers: list[tuple[Tensor, Tensor]]
    lipschitz: float

    def detached(self) -> Weights:
        return Weights([(w.detach(), b.detach()) for w, b in self.layers], self.lipschitz)


class LipschitzMLP(nn.Module):
    """``g: R^dim -> R^dim``, ``depth`` hidden layers of width ``hidden``, ``Lip(g) ≤ coeff^(depth + 1)``."""

    def __init__(
        self, dim: int, *, hidden: int, depth: int, activation: str, coeff: float, normalize: bool, label: str
    ) -> None:
        super().__init__()
        widths = [dim, *([hidden] * depth), dim]
        self.linears = nn.ModuleList(
            SpectralLinear(
                n_in, n_out, coeff=coeff, normalize=normalize, label=f"{label}, linear layer {i + 1} of {depth + 1}"
            )
            for i, (n_in, n_out) in enumerate(itertools.pairwise(widths))
        )
        self.activations = nn.ModuleList(activation_module(activation, LIPSCHITZ_CHOICES) for _ in range(depth))

    def weights(self) -> Weights:
        """The weights for one call (normalised here, once per call, not once per use)."""
        layers: list[tuple[Tensor, Tensor]] = []
        bound = 1.0
        for linear in self.linears:
            assert isinstance(linear, SpectralLinear)
            weight, norm = linear.effective()
            layers.append((weight, linear.bias))
            bound *= norm
        return Weights(layers, bound)

    def evaluate(self, z: Tensor, weights: Weights) -> tuple[Tensor, list[Tensor]]:
        """``(g(z), [φ'(a_l)])``: the output and the activations' derivatives, which :meth:`vjp` needs."""
        derivatives = []
        h = z
        for (weight, bias), activation in zip(weights.layers[:-1], self.activations, strict=True):
            h, derivative = activation.value_and_derivative(F.linear(h, weight, bias))  # type: ignore[operator]
            derivatives.append(derivative)
        weight, bias = weights.layers[-1]
        return F.linear(h, weight, bias), derivatives

    @staticmethod
    def vjp(w: Tensor, weights: Weights, derivatives: list[Tensor]) -> Tensor:
        """``wᵀ J_g(z)`` for row vectors ``w`` of shape ``[batch, m, dim]`` (``m = dim``, ``w = I``: the Jacobian)."""
        y = w @ weights.layers[-1][0]
        for (weight, _), derivative in zip(reversed(weights.layers[:-1]), reversed(derivatives), strict=True):
            y = (y * derivative.unsqueeze(1)) @ weight
        return y
