"""Planted-bug flows that only a sweep shows (dimensions × input scales, option sizes, contexts' scales and call
forms, float32 points, memory layouts): each must fail the property named in ``EXPECTED``, and passes the kit's
single points (one stress dimension, default sizes, unit contexts, contiguous per-row inputs).

- ``mutant_small_input_overflow``: ``x_i = z_i + c_i·z_i/(1 + |z_i|)`` (slope ``1 + c_i/(1 + |z_i|)²``, ~9 near 0)
  with the log-det computed as ``log ∏ slope_i``: the product overflows float32 at d = 64 for small inputs only
  (at d = 32, or at inputs of scale 1 and above, it stays finite).
- ``mutant_default_width``: an autoregressive (MADE) affine layer whose output mask recomputes the hidden units'
  degrees with the default width 64 instead of ``hidden``: at another width an output sees its own coordinate.
- ``mutant_float32_cancellation``: ``x = 10·asinh(z·e^a)`` with asinh written ``log(u + √(u² + 1) + 1e-30)``:
  for ``u ≪ −1`` float32 cancels every digit (the ``1e-30`` keeps it finite), float64 keeps them; its log-det uses
  the stable ``log 10 + a − ½·log1p(u²)``, right in both.
- ``mutant_shared_context``: a conditional elementwise affine layer with a fast path for one context shared by
  every row (``context.stride(0) == 0``, what ``Flow`` passes for a ``[k]`` context) that takes the network's two
  halves in the other order: each form is a bijection with the right log-det, they are different maps.
- ``mutant_context_clamped``: a conditional coupling whose forward clamps its context to ``[−3, 3]`` ("a guard
  against outliers") and whose inverse does not: right for the unit contexts drawn before, not for larger ones.
- ``mutant_strided_input``: an elementwise affine layer that reads its input as ``as_strided((rows·dim,), (1,))``,
  as a binding to a kernel written for contiguous row-major tensors does.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowlab import CONTEXT_OPTION, Bijector, FlowSpec, Option, hookimpl
from flowlab.validation import require_context


class SoftKnee(Bijector):
    """``x = z + c·z/(1 + |z|)`` per coordinate, ``c = exp(log_c) ≈ 8``; log-det ``log ∏(1 + c/(1 + |z|)²)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.log_c = nn.Parameter(torch.full((dim,), math.log(8.0)))

    def _log_slope(self, z: Tensor) -> Tensor:
        return torch.log(torch.prod(1 + self.log_c.exp() / (1 + z.abs()).square(), dim=-1))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z + self.log_c.exp() * z / (1 + z.abs()), self._log_slope(z)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # |x| = r + c·r/(1 + r) for r = |z|: r² + (1 + c − |x|)·r − |x| = 0, the positive root in a stable form
        b, size = 1 + self.log_c.exp() - x.abs(), x.abs()
        root = (b.square() + 4 * size).sqrt()
        r = torch.where(b >= 0, 2 * size / (b + root), (root - b) / 2)
        z = torch.sign(x) * r
        return z, -self._log_slope(z)


class WidthMADE(Bijector):
    """``x_i = z_i·exp(s_i(z_<i)) + t_i(z_<i)`` by a one-hidden-layer MADE of width ``hidden`` (degrees
    ``m_j = 1 + ⌊j(d − 1)/hidden⌋``); the output mask uses ``⌊j(d − 1)/64⌋`` instead."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.dim = dim
        degrees = 1 + torch.arange(hidden) * (dim - 1) // hidden
        recomputed = 1 + torch.arange(hidden) * (dim - 1) // 64  # the bug: the default width
        inputs, outputs = torch.arange(1, dim + 1), torch.arange(1, dim + 1).repeat(2)
        self.register_buffer("mask_in", (degrees[:, None] >= inputs[None, :]).float())
        self.register_buffer("mask_out", (outputs[:, None] > recomputed[None, :]).float())
        self.hidden, self.out = nn.Linear(dim, hidden), nn.Linear(hidden, 2 * dim)

    def _scale_shift(self, z: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.tanh(F.linear(z, self.hidden.weight * self.mask_in, self.hidden.bias))
        s, t = F.linear(h, self.out.weight * self.mask_out, self.out.bias).chunk(2, dim=-1)
        return torch.tanh(s), t

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._scale_shift(z)
        return z * s.exp() + t, s.sum(dim=-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = torch.zeros_like(x)
        for _ in range(self.dim):  # coordinate i is right after pass i when the layer is autoregressive
            s, t = self._scale_shift(z)
            z = (x - t) * (-s).exp()
        return z, -self._scale_shift(z)[0].sum(dim=-1)


class Arcsinh(Bijector):
    """``x = K·asinh(u)``, ``u = z·e^a`` (``K = 10``, ``a ≈ 5``); ``log|det ∂x/∂z| = Σ log K + a − ½·log1p(u²)``."""

    def __init__(self, dim: int, gain: float = 10.0) -> None:
        super().__init__()
        self.dim, self.log_gain = dim, math.log(gain)
        self.a = nn.Parameter(torch.full((dim,), 5.0))

    def _ladj(self, u: Tensor) -> Tensor:
        return (self.log_gain + self.a - 0.5 * torch.log1p(u * u)).sum(dim=-1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u = z * self.a.exp()
        return math.exp(self.log_gain) * torch.log(u + torch.sqrt(u * u + 1) + 1e-30), self._ladj(u)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u = torch.sinh(x * math.exp(-self.log_gain))
        return u * (-self.a).exp(), -self._ladj(u)


class SharedContextAffine(Bijector):
    """``x = z·exp(s(c)) + t(c)``, ``(s, t)`` the halves of a network of the context; a fast path for a context
    shared by every row (stride 0) evaluates the network once and takes the halves as ``(t, s)``."""

    def __init__(self, dim: int, context_dim: int) -> None:
        super().__init__()
        self.dim, self.context_dim = dim, context_dim
        self.net = nn.Sequential(nn.Linear(context_dim, 16), nn.Tanh(), nn.Linear(16, 2 * dim))

    def _scale_shift(self, rows: int, context: Tensor | None) -> tuple[Tensor, Tensor]:
        context = require_context(context, self.context_dim, rows, owner="SharedContextAffine")
        assert context is not None
        if context.stride(0) == 0:  # one context for every row: the network once
            t, s = self.net(context[:1]).chunk(2, dim=-1)
            return torch.tanh(s).expand(rows, -1), t.expand(rows, -1)
        s, t = self.net(context).chunk(2, dim=-1)
        return torch.tanh(s), t

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        s, t = self._scale_shift(z.shape[0], context)
        return z * s.exp() + t, s.sum(dim=-1)

    def inverse(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        s, t = self._scale_shift(x.shape[0], context)
        return (x - t) * (-s).exp(), -s.sum(dim=-1)


class ClampedContextCoupling(Bijector):
    """Conditional affine coupling ``x_b = z_b·exp(s) + t``, ``(s, t)`` from ``[z_a, c]``; ``forward`` clamps ``c``
    to ``[−3, 3]``, ``inverse`` does not."""

    def __init__(self, dim: int, context_dim: int) -> None:
        super().__init__()
        self.dim, self.context_dim = dim, context_dim
        self.kept, self.moved = list(range(0, dim, 2)), list(range(1, dim, 2))
        self.net = nn.Sequential(
            nn.Linear(len(self.kept) + context_dim, 16), nn.Tanh(), nn.Linear(16, 2 * len(self.moved))
        )

    def _scale_shift(self, kept: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        raw, shift = self.net(self.conditioner_input(kept, context)).chunk(2, dim=-1)
        return torch.tanh(raw), shift

    def _join(self, kept: Tensor, moved: Tensor) -> Tensor:
        out = torch.empty(kept.shape[0], self.dim, dtype=kept.dtype, device=kept.device)
        out[:, self.kept], out[:, self.moved] = kept, moved
        return out

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        kept = z[:, self.kept]
        s, t = self._scale_shift(kept, None if context is None else context.clamp(-3, 3))
        return self._join(kept, z[:, self.moved] * s.exp() + t), s.sum(dim=-1)

    def inverse(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        kept = x[:, self.kept]
        s, t = self._scale_shift(kept, context)
        return self._join(kept, (x[:, self.moved] - t) * (-s).exp()), -s.sum(dim=-1)


class FlatStorageAffine(Bijector):
    """``x = z·exp(a) + b`` per coordinate, computed on ``z.as_strided((rows·dim,), (1,))`` reshaped back."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

    def _flat(self, points: Tensor) -> Tensor:
        rows = points.shape[0]
        return points.as_strided((rows * self.dim,), (1,)).reshape(rows, self.dim)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._flat(z) * self.log_scale.exp() + self.shift, self.log_scale.sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return (self._flat(x) - self.shift) * (-self.log_scale).exp(), -self.log_scale.sum().expand(x.shape[0])


CONDITIONAL = {"options": {"context_dim": CONTEXT_OPTION}, "check_options": {"context_dim": 2}}

BUILDERS: dict[str, tuple[str, Any, dict[str, Any]]] = {
    "mutant_small_input_overflow": ("stress", SoftKnee, {}),
    "mutant_default_width": (
        "logdet",
        WidthMADE,
        {"min_dim": 2, "options": {"hidden": Option(64, "MADE width", low=1)}},
    ),
    "mutant_float32_cancellation": ("stress", Arcsinh, {}),
    "mutant_shared_context": ("call_forms", SharedContextAffine, CONDITIONAL),
    "mutant_context_clamped": ("invertibility", ClampedContextCoupling, {"min_dim": 2, **CONDITIONAL}),
    "mutant_strided_input": ("call_forms", FlatStorageAffine, {}),
}

EXPECTED: dict[str, str] = {name: prop for name, (prop, _, _) in BUILDERS.items()}


def _spec(name: str, build: Any, fields: dict[str, Any]) -> FlowSpec:
    return FlowSpec(
        name=name,
        summary=f"mutant: must fail {EXPECTED[name]}",
        build=build,
        explanation=f"A planted bug (see tests/mutants/sweeps.py); must fail {EXPECTED[name]}.",
        **fields,
    )


SPECS: dict[str, FlowSpec] = {name: _spec(name, build, fields) for name, (_, build, fields) in BUILDERS.items()}


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    for spec in SPECS.values():
        register(spec)
