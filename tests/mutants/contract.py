"""Planted bugs against the flow contract (``FlowSpec.support``, ``dtypes``, ``eval_deterministic``, a stochastic
log-det, the build): each must fail the property named in ``EXPECTED``.

- ``mutant_support_overshoot``: declares the unit cube ``(0, 1)^d`` and maps part of R^d beyond it (a sigmoid
  stretched by 1.2 around 1/2: samples outside the support, where the density is 0).
- ``mutant_float64_silent``: declares that it computes in float64 only, and quietly computes a float32 density
  when given float32 (no refusal: a result in a precision it does not claim).
- ``mutant_eval_noise``: an exact affine map whose log-det carries zero-mean noise in eval mode, without declaring
  ``eval_deterministic=False`` (every row-by-row comparison would compare noise).
- ``mutant_biased_series``: a residual-style ``x = z + 0.4·tanh(W z)`` with ``log det(I + J)`` estimated by a
  randomly truncated power series *without* the ``1 / P(n ≥ k)`` reweighting (declared unbiased: it is not).
- ``mutant_unbuildable``: a constructor that raises at every dimension (one failure, of ``build``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from flowlab import Bijector, FlowSpec, Support, hookimpl


class StretchedCube(Bijector):
    """``x = 1/2 + 1.2·(sigmoid(z) − 1/2)``: onto (−0.1, 1.1)^d, though declared on (0, 1)^d."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u = z + self.shift
        x = 0.5 + 1.2 * (torch.sigmoid(u) - 0.5)
        return x, (math.log(1.2) + nn.functional.logsigmoid(u) + nn.functional.logsigmoid(-u)).sum(-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p = (x - 0.5) / 1.2 + 0.5
        u = torch.log(p) - torch.log1p(-p)
        return u - self.shift, (-math.log(1.2) - torch.log(p) - torch.log1p(-p)).sum(-1)


class SilentDouble(Bijector):
    """``x = a ⊙ z + b``, meant for float64 (declared so), computing in whatever dtype it is given."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.log_a = nn.Parameter(torch.zeros(dim, dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros(dim, dtype=torch.float64))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z * self.log_a.exp() + self.b, self.log_a.sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return (x - self.b) * (-self.log_a).exp(), -self.log_a.sum().expand(x.shape[0])


class EvalNoise(SilentDouble):
    """The affine map with ``0.1·N(0, 1)`` added to its log-dets, in every mode."""

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x, ladj = super().forward(z)
        return x, ladj + 0.1 * torch.randn(z.shape[0], dtype=z.dtype, device=z.device)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, ladj = super().inverse(x)
        return z, ladj + 0.1 * torch.randn(x.shape[0], dtype=x.dtype, device=x.device)


class BiasedSeries(Bijector):
    """``x = z + 0.4·tanh(W z)`` (contractive: ``‖W‖₂ ≤ 1``), inverse by fixed-point iteration; its log-det
    ``log det(I + J)`` by the series ``Σ_{k=1}^{n} (−1)^{k+1} tr(J^k)/k`` truncated at a random ``n = 1 + M``,
    ``M ~ Geometric(1/2)`` per row, in training mode, with no reweighting: biased towards the first terms. Eval mode:
    exact."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.weight = nn.Parameter(torch.eye(dim) * 0.9)  # ‖W‖₂ ≤ 1 after the normalisation below

    def _w(self) -> Tensor:
        return self.weight / torch.linalg.matrix_norm(self.weight, ord=2).clamp(min=1.0)

    def _jacobian(self, z: Tensor) -> Tensor:
        w = self._w()
        return 0.4 * (1 - torch.tanh(z @ w.T) ** 2)[:, :, None] * w[None]

    def _logdet(self, z: Tensor) -> Tensor:
        jacobian = self._jacobian(z)
        if not self.training:
            return torch.linalg.slogdet(torch.eye(self.dim, dtype=z.dtype) + jacobian).logabsdet
        rows = z.shape[0]
        terms = 1 + torch.distributions.Geometric(torch.full((rows,), 0.5)).sample().to(z.device)  # one n per row
        power, total = jacobian, torch.zeros(rows, dtype=z.dtype, device=z.device)
        for k in range(1, int(terms.max()) + 1):
            term = (-1) ** (k + 1) * power.diagonal(dim1=-2, dim2=-1).sum(-1) / k
            total = total + torch.where(terms >= k, term, torch.zeros_like(term))
            power = power @ jacobian
        return total

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z + 0.4 * torch.tanh(z @ self._w().T), self._logdet(z)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = x.clone()
        for _ in range(60):  # a 0.4-contraction: 0.4^60 ≈ 1e-24
            z = x - 0.4 * torch.tanh(z @ self._w().T)
        return z, -self._logdet(z)


def unbuildable(dim: int) -> Bijector:
    raise RuntimeError("an attribute referenced before it is set")


def spec(name: str, build: Any, **fields: Any) -> FlowSpec:
    return FlowSpec(name=name, summary="mutant", build=build, explanation="planted bug", **fields)


MUTANTS = (
    spec("mutant_support_overshoot", StretchedCube, support=Support(0.0, 1.0)),
    spec("mutant_float64_silent", SilentDouble, dtypes=("float64",)),
    spec("mutant_eval_noise", EvalNoise, logdet="stochastic"),
    spec("mutant_biased_series", BiasedSeries, logdet="stochastic"),
    spec("mutant_unbuildable", unbuildable),
)

EXPECTED: dict[str, str] = {
    "mutant_support_overshoot": "support",
    "mutant_float64_silent": "dtype_device",
    "mutant_eval_noise": "determinism",
    "mutant_biased_series": "logdet_estimator",
    "mutant_unbuildable": "build",
}


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    for mutant in MUTANTS:
        register(mutant)
