"""The rational-quadratic spline coupling layer and the stack of them (neural spline flow).

Sign convention (flowlab's): ``forward(z) -> (x, log|det ∂x/∂z|)`` is sampling, ``inverse(x) -> (z, log|det ∂z/∂x|)``
is the density direction. As in Durkan et al. (and nflows, zuko), the spline ``S`` maps data to noise, so the density
direction evaluates ``S`` in closed form and sampling inverts it by the quadratic root (:mod:`flowlab_spline.spline`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowlab import Compose, Permutation
from flowlab.layers import Coupling
from flowlab_spline.spline import constrain, rational_quadratic


class SplineCoupling(Coupling):
    """Keep the first ``⌊d/2⌋`` coordinates ``a``, move the others ``b`` by one spline each, conditioned on ``a``:

    ``z_a = x_a``,  ``z_b = S(x_b; θ(x_a))`` (density direction),  ``x_b = S⁻¹(z_b; θ(z_a))`` (sampling),
    ``log|det ∂z/∂x| = Σ_b log S'(x_b)``. ``θ``: per moved coordinate, ``3K − 1`` values (``K`` widths, ``K``
    heights, ``K − 1`` interior derivatives) from one MLP, made valid by :func:`flowlab_spline.spline.constrain`.
    With ``context_dim = k > 0`` the MLP reads ``[x_a, c]``, the context ``c`` (``[batch, k]``) appended:
    ``θ(x_a, c)``; the log-det at fixed ``c`` is the same sum. (:class:`flowlab.layers.Coupling` splits, runs the
    MLP and joins; in its terms ``τ = S⁻¹``.)
    """

    def __init__(
        self,
        dim: int,
        *,
        bins: int,
        bound: float,
        hidden: int,
        depth: int,
        activation: str,
        identity_init: bool,
        context_dim: int = 0,
    ) -> None:
        super().__init__(
            dim,
            split="halves",
            params_per_coordinate=3 * bins - 1,
            hidden=hidden,
            depth=depth,
            activation=activation,
            identity_init=identity_init,
            context_dim=context_dim,
        )
        self.bins, self.bound = bins, float(bound)

    def transform(self, moved: Tensor, theta: Tensor, *, inverse: bool) -> tuple[Tensor, Tensor]:
        widths, heights, derivatives = constrain(theta.view(*moved.shape, 3 * self.bins - 1), self.bins)
        # S maps data to noise: sampling (forward) is S⁻¹, the density direction (inverse) is S
        return rational_quadratic(
            moved, widths, heights, derivatives, inverse=not inverse, bound=self.bound, check=False
        )


def roll(dim: int) -> Permutation:
    """``x_i = z_{(i + ⌊d/2⌋) mod d}``: the coordinates a coupling layer just moved come first, to be kept next.

    With the half split of :class:`SplineCoupling` this mixes every coordinate into every other in 3 layers for
    even ``d`` (the halves swap) and 4 for odd ``d`` (a reversal would not: for odd ``d`` it leaves the middle
    coordinate moved by every layer and kept by none, so no output would depend on it).
    """
    return Permutation((torch.arange(dim) + dim // 2) % dim)


def neural_spline_flow(dim: int, *, layers: int, **coupling: Any) -> Compose:
    """``layers`` :class:`SplineCoupling` layers (``coupling``: their options) with :func:`roll` between them."""
    stack: list[nn.Module] = []
    for k in range(layers):
        if k > 0:
            stack.append(roll(dim))
        stack.append(SplineCoupling(dim, **coupling))
    return Compose(stack)
