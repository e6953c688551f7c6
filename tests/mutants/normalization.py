"""Planted-bug flows whose density does not integrate to 1: each must fail ``normalization``.

The bijectors below are one-to-one with matching forward and inverse log-dets, so ``invertibility`` and
``sample_consistency`` cannot see these bugs; those whose log-det is wrong declare it stochastic (as an estimator
would be), so ``logdet`` does not apply and only ``normalization``, with the autograd log-det, can tell.

- ``mutant_density_up`` / ``mutant_density_down``: ``x = z·exp(a)`` after a coupling, both log-dets shifted so the
  density is 1.02 times too high (too low) everywhere.
- ``mutant_base_unnormalized``: a correct coupling on a custom base whose ``log_prob`` drops the normalizing
  constant ``−(d/2)·log 2π`` (the flow's own log-dets are right: only the base's mass shows it).
- ``mutant_tail_logdet``: a coupling, then a map of ``z₀`` that is the identity on ``[−2, 2]`` and has slope 2
  outside, whose log-det forgets that slope: the density is doubled in the tails only (4.6 % of the mass).
- ``mutant_context_normalized_once``: a conditional coupling, then an identity whose log-dets carry ``0.1·|c|²``:
  normalized at ``c = 0`` only.
- ``mutant_not_onto``: ``x = softplus(z)`` per coordinate maps onto ``(0, ∞)^d`` but its inverse takes ``|x|``:
  ``log_prob`` is the mirror image on the other orthants, mass the flow's sampler never reaches (``∫ p = 2^d``).
- ``mutant_base_sampler``: a base whose ``log_prob`` is ``N(0, I)`` but whose sampler draws from ``N(0, 1.2² I)``:
  every density is consistent with every other, yet the samples do not come from the density.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, distributions, nn

from flowlab import CONTEXT_OPTION, Bijector, Compose, FlowSpec, hookimpl
from flowlab.layers import AffineCoupling


def coupling(dim: int, context_dim: int = 0) -> AffineCoupling:
    """A correct conditional (or not) affine coupling, the layer the bugs below are planted next to."""
    return AffineCoupling(dim, hidden=16, context_dim=context_dim)


class ContextScaledDensity(Bijector):
    """``x = z`` whose log-dets both carry ``error·|c|²``: the density is scaled by ``exp(−error·|c|²)``, right at
    ``c = 0`` only."""

    def __init__(self, dim: int, context_dim: int, error: float) -> None:
        super().__init__()
        self.dim, self.context_dim, self.error = dim, context_dim, error

    def forward(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        return z, self.error * context.square().sum(dim=-1)

    def inverse(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        return x, -self.error * context.square().sum(dim=-1)


class ScaledDensity(Bijector):
    """``x = z·exp(a)`` whose log-dets both claim a density ``factor`` times the true one."""

    def __init__(self, dim: int, factor: float) -> None:
        super().__init__()
        self.dim, self.offset = dim, math.log(factor)
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z * self.log_scale.exp(), (self.log_scale.sum() - self.offset).expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * (-self.log_scale).exp(), (self.offset - self.log_scale.sum()).expand(x.shape[0])


class SteepTails(Bijector):
    """``x₀ = z₀`` on ``[−EDGE, EDGE]``, slope 2 outside (continuous); the log-det is 0 everywhere (it forgets the
    tails' ``log 2``); the other coordinates pass unchanged."""

    EDGE = 2.0

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        head = z[:, :1]
        beyond = head.abs() > self.EDGE
        x = torch.where(beyond, head.sign() * (self.EDGE + 2 * (head.abs() - self.EDGE)), head)
        return torch.cat([x, z[:, 1:]], dim=1), z.new_zeros(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        head = x[:, :1]
        beyond = head.abs() > self.EDGE
        z = torch.where(beyond, head.sign() * (self.EDGE + (head.abs() - self.EDGE) / 2), head)
        return torch.cat([z, x[:, 1:]], dim=1), x.new_zeros(x.shape[0])


class MirroredSoftplus(Bijector):
    """``x = softplus(z)`` (onto ``(0, ∞)``), inverse ``log(expm1(|x|))``: right on the image, mirrored off it."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return nn.functional.softplus(z), nn.functional.logsigmoid(z).sum(dim=-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        size = x.abs()
        z = torch.log(torch.expm1(size))
        return z, (size - z).sum(dim=-1)  # log|dz/dx| = log(e^|x| / (e^|x| − 1)) = |x| − log(expm1|x|)


class UnnormalizedNormal(distributions.Independent):
    """``N(0, I)`` whose ``log_prob`` is ``−|z|²/2``: the normalizing constant is missing."""

    def __init__(self, dim: int, dtype: torch.dtype, device: torch.device) -> None:
        loc = torch.zeros(dim, dtype=dtype, device=device)
        super().__init__(distributions.Normal(loc, torch.ones_like(loc)), 1)

    def log_prob(self, value: Tensor) -> Tensor:
        return -0.5 * value.square().sum(dim=-1)


class WideSampler(distributions.Independent):
    """``log_prob`` of ``N(0, I)``, samples of ``N(0, 1.2² I)``."""

    def __init__(self, dim: int, dtype: torch.dtype, device: torch.device) -> None:
        loc = torch.zeros(dim, dtype=dtype, device=device)
        super().__init__(distributions.Normal(loc, torch.ones_like(loc)), 1)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        return 1.2 * super().sample(sample_shape)


def _base(cls: Any) -> Any:
    return lambda dim, *, dtype, device: cls(dim, dtype, device)


def _spec(**fields: Any) -> FlowSpec:
    explanation = "A planted bug (see tests/mutants/normalization.py); must fail normalization."
    return FlowSpec(explanation=explanation, **fields)


SPECS = [
    _spec(
        name="mutant_density_up",
        summary="mutant: the density is 1.02 times too high everywhere (must fail normalization)",
        build=lambda dim: Compose([coupling(dim), ScaledDensity(dim, 1.02)]),
        logdet="stochastic",
        min_dim=2,
    ),
    _spec(
        name="mutant_density_down",
        summary="mutant: the density is 1.02 times too low everywhere (must fail normalization)",
        build=lambda dim: Compose([coupling(dim), ScaledDensity(dim, 1 / 1.02)]),
        logdet="stochastic",
        min_dim=2,
    ),
    _spec(
        name="mutant_base_unnormalized",
        summary="mutant: a base without its normalizing constant (must fail normalization)",
        build=coupling,
        base=_base(UnnormalizedNormal),
        min_dim=2,
    ),
    _spec(
        name="mutant_tail_logdet",
        summary="mutant: the log-det forgets the slope of the tails (must fail normalization)",
        build=lambda dim: Compose([coupling(dim), SteepTails(dim)]),
        logdet="stochastic",
        min_dim=2,
    ),
    _spec(
        name="mutant_context_normalized_once",
        summary="mutant: a conditional density normalized at context 0 only (must fail normalization)",
        build=lambda dim, *, context_dim: Compose(
            [coupling(dim, context_dim), ContextScaledDensity(dim, context_dim, 0.1)]
        ),
        logdet="stochastic",
        min_dim=2,
        options={"context_dim": CONTEXT_OPTION},
        check_options={"context_dim": 2},  # the bug is in the conditioning: every case has a context
    ),
    _spec(
        name="mutant_not_onto",
        summary="mutant: log_prob has mass where the sampler never goes (must fail normalization)",
        build=MirroredSoftplus,
        min_dim=2,  # 2^d − 1 units of mass off the image: 3 from d = 2 (at d = 1 one unit is ~5 SE of 512 draws)
    ),
    _spec(
        name="mutant_base_sampler",
        summary="mutant: the base's sampler does not draw from its density (must fail normalization)",
        build=coupling,
        base=_base(WideSampler),
        min_dim=2,
    ),
]

EXPECTED: dict[str, str] = {spec.name: "normalization" for spec in SPECS}


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    for spec in SPECS:
        register(spec)
