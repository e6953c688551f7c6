"""The rational-quadratic spline coupling layer and the stack of them (neural spline flow).

Sign convention (flowlab's): ``forward(z) -> (x, log|det ∂x/∂z|)`` is sampling, ``inverse(x) -> (z, log|det ∂z/∂x|)``
is the density direction. As in Durkan et al. (and nflows, zuko), the spline ``S`` maps data to noise, so the density
direction evaluates ``S`` in closed form and sampling inverts it by the quadratic root (:mod:`flowlab_spline.spline`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowlab import Bijector, Compose, Permutation
from flowlab_spline.spline import constrain, rational_quadratic

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}


def conditioner(n_in: int, n_out: int, hidden: int, depth: int, activation: str, identity_init: bool) -> nn.Sequential:
    """An MLP with ``depth`` hidden layers of width ``hidden``; ``identity_init`` zeroes its last layer."""
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
        width = hidden
    last = nn.Linear(width, n_out)
    if identity_init:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class SplineCoupling(Bijector):
    """Keep the first ``⌊d/2⌋`` coordinates ``a``, move the others ``b`` by one spline each, conditioned on ``a``:

    ``z_a = x_a``,  ``z_b = S(x_b; θ(x_a))`` (density direction),  ``x_b = S⁻¹(z_b; θ(z_a))`` (sampling),
    ``log|det ∂z/∂x| = Σ_b log S'(x_b)``. ``θ``: per moved coordinate, ``3K − 1`` values (``K`` widths, ``K``
    heights, ``K − 1`` interior derivatives) from one MLP, made valid by :func:`flowlab_spline.spline.constrain`.
    With ``context_dim = k > 0`` the MLP reads ``[x_a, c]``, the context ``c`` (``[batch, k]``) appended:
    ``θ(x_a, c)``; the log-det at fixed ``c`` is the same sum.
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
        super().__init__()
        self.dim, self.bins, self.bound = dim, bins, float(bound)
        self.context_dim = int(context_dim)
        self.split = dim // 2
        self.conditioner = conditioner(
            self.split + self.context_dim, (dim - self.split) * (3 * bins - 1), hidden, depth, activation, identity_init
        )

    def _couple(self, kept: Tensor, moved: Tensor, inverse: bool, context: Tensor | None) -> tuple[Tensor, Tensor]:
        raw = self.conditioner(self.conditioner_input(kept, context)).view(*moved.shape, 3 * self.bins - 1)
        widths, heights, derivatives = constrain(raw, self.bins)
        out, log_slope = rational_quadratic(
            moved, widths, heights, derivatives, inverse=inverse, bound=self.bound, check=False
        )
        return torch.cat([kept, out], dim=-1), log_slope.sum(dim=-1)

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(z[:, : self.split], z[:, self.split :], True, context)

    def inverse(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(x[:, : self.split], x[:, self.split :], False, context)


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
