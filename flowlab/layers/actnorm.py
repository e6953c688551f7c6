"""ActNorm: a per-coordinate affine map initialised from the first training batch (Kingma & Dhariwal 2018)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowlab.bijector import Bijector

#: a coordinate whose standard deviation in ActNorm's first batch is at most this (a batch of one row, a constant
#: coordinate) is only centred, with scale 1: dividing by its std would give inf (or a scale of 1e6 with Glow's
#: ``std + 1e-6``)
MIN_STD = 1e-6


class ActNorm(Bijector):
    """``x = z ⊙ exp(log_scale) + bias`` per coordinate; ``log|det ∂x/∂z| = Σ log_scale``, O(d).

    **Data-dependent initialisation** (Glow). The first ``inverse`` call in training mode (data to noise, as in
    ``Flow.log_prob``) sets, before transforming, ``bias = mean(x)`` and ``log_scale = log std(x)`` per coordinate
    over that batch, so that its output has zero mean and unit variance. The std is the population one (divisor
    ``n``, which is 0, not NaN, for a single row) and a std ``≤ MIN_STD`` is replaced by 1: a batch of one row is
    only centred. The flag ``initialized`` is a buffer, so it is saved in checkpoints and a loaded model is not
    initialised again. A first training-mode ``forward`` (sampling) has no data to look at: it fixes the
    parameters as they are. In eval mode, and after the first training call, the layer is a fixed elementwise
    affine map: rows never influence each other, and training mode then eval mode give the same map.
    """

    initialized: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set ``bias`` and ``log_scale`` from the data ``x`` (any number of rows) so ``inverse(x)`` is standardised."""
        std = x.std(dim=0, correction=0)
        self.bias.copy_(x.mean(dim=0))
        self.log_scale.copy_(torch.where(std > MIN_STD, std, torch.ones_like(std)).log())
        self.initialized.fill_(True)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self.initialized.fill_(True)
        return z * self.log_scale.exp() + self.bias, self.log_scale.sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x)
        return (x - self.bias) * (-self.log_scale).exp(), (-self.log_scale.sum()).expand(x.shape[0])
