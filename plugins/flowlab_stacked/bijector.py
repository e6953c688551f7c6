"""ActNorm and the stack of blocks with permutations between them."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowlab import Bijector


class ActNorm(Bijector):
    """``x = z · exp(log_scale) + bias``, per coordinate; ``log|det ∂x/∂z| = Σ log_scale``.

    Data-dependent initialisation (Glow): if the first call in training mode is an ``inverse`` (data to noise, as in
    ``log_prob``), it sets ``bias`` and ``log_scale`` from that batch so that its output has zero mean and unit
    variance per coordinate. Any first call fixes the parameters (a first ``forward`` keeps the identity), so the
    layer is a bijection from its first call on. After that (and always in eval mode) it is an ordinary
    per-coordinate affine map: rows never influence each other.
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
        """Set the parameters from data ``x`` (at least 2 rows) so that ``inverse(x)`` is standardised."""
        self.bias.copy_(x.mean(dim=0))
        self.log_scale.copy_(x.std(dim=0).clamp_min(1e-6).log())
        self.initialized.fill_(True)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self.initialized.fill_(True)
        return z * self.log_scale.exp() + self.bias, self.log_scale.sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized) and x.shape[0] > 1:
            self.initialize(x)
        return (x - self.bias) * (-self.log_scale).exp(), (-self.log_scale.sum()).expand(x.shape[0])
