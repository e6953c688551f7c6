"""The planar layer ``x = z + û·tanh(wᵀz + b)`` with an exact inverse (a monotone scalar equation)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional

from flowlab import Bijector

#: bisection steps of the inverse; each halves the bracket of width 2|wᵀû| (60 reach float64's resolution)
BISECTION_STEPS = 80


class PlanarLayer(Bijector):
    """``x = z + û·h(wᵀz + b)``, ``h = tanh``, with ``û = u + (m(wᵀu) − wᵀu)·w/‖w‖²``, ``m(a) = −1 + softplus(a)``.

    ``∂x/∂z = I + h'(wᵀz + b)·û wᵀ`` (a rank-one update), so by the matrix determinant lemma
    ``log|det ∂x/∂z| = log(1 + h'(wᵀz + b)·wᵀû)``. The reparametrisation makes ``wᵀû = m(wᵀu) > −1``, hence
    ``1 + h'·wᵀû > 0`` for ``h' ∈ (0, 1]``: the map is invertible for every parameter value.

    Inverse: with ``α = wᵀz``, ``wᵀx = α + wᵀû·tanh(α + b)``, strictly increasing in ``α``; it is solved by bisection
    on ``[wᵀx − |wᵀû|, wᵀx + |wᵀû|]`` and one Newton step (which carries the gradient, by the implicit function
    theorem), then ``z = x − û·tanh(α + b)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.u = nn.Parameter(torch.randn(dim) * 0.1)
        self.w = nn.Parameter(torch.randn(dim) * 0.1)
        self.b = nn.Parameter(torch.zeros(()))

    def u_hat(self) -> Tensor:
        """``û``, the reparametrised ``u`` with ``wᵀû > −1``."""
        wu = self.w @ self.u
        return self.u + (functional.softplus(wu) - 1 - wu) * self.w / (self.w @ self.w).clamp_min(1e-12)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u_hat = self.u_hat()
        pre = z @ self.w + self.b
        x = z + u_hat * torch.tanh(pre)[:, None]
        return x, torch.log1p((1 - torch.tanh(pre) ** 2) * (self.w @ u_hat))

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u_hat = self.u_hat()
        c, y = self.w @ u_hat, x @ self.w

        def residual(alpha: Tensor) -> Tensor:
            return alpha + c * torch.tanh(alpha + self.b) - y

        with torch.no_grad():
            low, high = y - c.abs(), y + c.abs()
            for _ in range(BISECTION_STEPS):
                middle = (low + high) / 2
                above = residual(middle) > 0
                low, high = torch.where(above, low, middle), torch.where(above, middle, high)
            root = (low + high) / 2
        slope = 1 + c * (1 - torch.tanh(root + self.b) ** 2)
        alpha = root - residual(root) / slope  # one Newton step: the same value, with the right gradient
        z = x - u_hat * torch.tanh(alpha + self.b)[:, None]
        return z, -torch.log1p((1 - torch.tanh(alpha + self.b) ** 2) * c)
