"""A third-party flowlab plugin in a few lines: ``x = exp(a) ⊙ z``, a learned per-coordinate scale."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowlab import Bijector, FlowSpec, hookimpl


class DiagonalScale(Bijector):
    """``x = exp(a) ⊙ z``; ``log|det ∂x/∂z| = Σ a``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z * self.log_scale.exp(), self.log_scale.sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * (-self.log_scale).exp(), (-self.log_scale.sum()).expand(x.shape[0])


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    register(
        FlowSpec(
            name="tiny_scale",
            summary="x = exp(a) ⊙ z (a third-party test plugin)",
            build=lambda dim: DiagonalScale(dim),
            explanation="`x = exp(a) ⊙ z`, `log|det ∂x/∂z| = Σ a`.",
        )
    )
