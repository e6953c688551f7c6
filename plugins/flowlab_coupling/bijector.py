"""RealNVP affine coupling layer with a bounded log-scale."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowlab import Bijector

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}


def mlp(n_in: int, n_out: int, hidden: int, depth: int, activation: str) -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden``."""
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def soft_clamp(s: Tensor, bound: float) -> Tensor:
    """``bound · tanh(s / bound)``: the identity near 0, smooth, and inside ``(-bound, bound)`` everywhere."""
    return bound * torch.tanh(s / bound)


class AffineCoupling(Bijector):
    """Split ``z`` into kept coordinates ``z_a`` (``parity``: even or odd indices) and the rest ``z_b``:

    ``x_a = z_a``,  ``x_b = z_b · exp(s(z_a)) + t(z_a)``,  ``s = B · tanh(ŝ / B)``,
    ``log|det ∂x/∂z| = Σ_j s_j(z_a)``.

    With ``context_dim = k > 0`` the conditioner reads ``[z_a, c]`` (the context ``c``, ``[batch, k]``, appended to
    its input): ``s(z_a, c)``, ``t(z_a, c)``; the log-det is that of the map in ``z`` at fixed ``c``, the same sum.
    """

    def __init__(
        self,
        dim: int,
        *,
        parity: str = "even",
        hidden: int = 64,
        depth: int = 2,
        activation: str = "relu",
        scale_bound: float = 3.0,
        identity_init: bool = True,
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.context_dim = int(context_dim)
        self.scale_bound = float(scale_bound)
        start = 0 if parity == "even" else 1
        # strided slices (views) rather than index tensors: splitting and joining cost ~4x less than gathers
        self.kept, self.moved = slice(start, None, 2), slice(1 - start, None, 2)
        n_kept = len(range(dim)[self.kept])
        self.conditioner = mlp(n_kept + self.context_dim, 2 * (dim - n_kept), hidden, depth, activation)
        if identity_init:
            last = self.conditioner[-1]
            assert isinstance(last, nn.Linear)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def _scale_shift(self, kept: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        raw_scale, shift = self.conditioner(self.conditioner_input(kept, context)).chunk(2, dim=-1)
        return soft_clamp(raw_scale, self.scale_bound), shift

    def _join(self, kept: Tensor, moved: Tensor) -> Tensor:
        out = torch.empty(kept.shape[0], self.dim, dtype=moved.dtype, device=moved.device)
        out[:, self.kept] = kept
        out[:, self.moved] = moved
        return out

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z_a = z[:, self.kept]
        s, t = self._scale_shift(z_a, context)
        x_b = z[:, self.moved] * s.exp() + t
        return self._join(z_a, x_b), s.sum(dim=-1)

    def inverse(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_a = x[:, self.kept]
        s, t = self._scale_shift(x_a, context)
        z_b = (x[:, self.moved] - t) * (-s).exp()
        return self._join(x_a, z_b), -s.sum(dim=-1)
