"""The estimators of ``flowlab.checks.flow_mass`` on flows and bases whose mass is known: the base's own mass and
sampler test, the mean of ``q/r`` over the flow's samples, and the mass outside the sampler's image."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, distributions, nn

from flowlab import Bijector, Flow
from flowlab.checks.flow_mass import base_mass, outside_image_mass, sampler_mass
from flowlab.support import REAL, support_of

F64 = torch.float64


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Scale(Bijector):
    """``x = z·exp(a)`` (``a`` fixed), whose reported log-dets are off by ``offset`` (``log_prob`` direction only
    with ``inverse_only``)."""

    def __init__(self, dim: int, offset: float = 0.0, inverse_only: bool = False) -> None:
        super().__init__()
        self.dim, self.offset, self.inverse_only = dim, offset, inverse_only
        self.log_scale = nn.Parameter(torch.linspace(-0.5, 0.5, dim, dtype=F64))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        offset = 0.0 if self.inverse_only else self.offset
        return z * self.log_scale.exp(), (self.log_scale.sum() + offset).expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * (-self.log_scale).exp(), (-self.log_scale.sum() - self.offset).expand(x.shape[0])


class Softplus(Bijector):
    """``x = softplus(z)``: onto ``(0, ∞)^d``; ``mirrored`` takes ``|x|`` in the inverse (mass off the image)."""

    def __init__(self, dim: int, mirrored: bool) -> None:
        super().__init__()
        self.dim, self.mirrored = dim, mirrored

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return nn.functional.softplus(z), nn.functional.logsigmoid(z).sum(dim=-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        size = x.abs() if self.mirrored else x
        z = torch.log(torch.expm1(size))
        return z, (size - z).sum(dim=-1)


def with_base(dim: int, base: distributions.Distribution | None) -> Flow:
    return Flow(Scale(dim).double(), base).double()


def draws(flow: Flow, rows: int = 4096, seed: int = 0) -> Tensor:
    torch.manual_seed(seed)
    return flow.base.sample((rows,))


def independent(family: type, *parameters: Tensor) -> distributions.Distribution:
    return distributions.Independent(family(*parameters), 1)


@pytest.mark.parametrize("dim", [1, 3, 64])
def test_the_standard_normal_base_has_mass_one_by_product_quadrature(dim):
    flow = with_base(dim, None)
    mass = base_mass(flow, draws(flow), support_of(flow.base), generator())
    assert mass.method == "product quadrature"
    assert abs(mass.log_normalizer) <= mass.error < 1e-8
    assert abs(mass.sampler_shift) < 5 * mass.sampler_standard_error


def bases(dim: int) -> dict[str, distributions.Distribution]:
    ones = torch.ones(dim, dtype=F64)
    correlated = 0.5 * torch.eye(dim, dtype=F64) + 0.5
    return {
        "diagonal normal": independent(distributions.Normal, torch.linspace(-1, 2, dim, dtype=F64), 0.3 + ones),
        "uniform box": independent(distributions.Uniform, -ones, 2 * ones),
        "laplace": independent(distributions.Laplace, 0 * ones, ones),
        "student-t": independent(distributions.StudentT, 3 * ones, 0 * ones, ones),
        "correlated normal": distributions.MultivariateNormal(0 * ones, covariance_matrix=correlated),
    }


@pytest.mark.parametrize("name", ["diagonal normal", "uniform box", "laplace", "student-t", "correlated normal"])
def test_other_bases_have_mass_one_within_the_stated_error(name):
    dim = 4
    flow = with_base(dim, bases(dim)[name])
    mass = base_mass(flow, draws(flow), support_of(flow.base), generator())
    expected = "importance sampling" if name == "correlated normal" else "product quadrature"
    bound = 5 * mass.error if mass.method == "importance sampling" else mass.error
    assert mass.method == expected and abs(mass.log_normalizer) <= max(bound, 1e-12) and mass.error < 1e-2
    assert abs(mass.sampler_shift) < 5 * mass.sampler_standard_error


class MissingConstant(distributions.Independent):
    """``N(0, I)`` with ``log_prob = −|z|²/2``."""

    def log_prob(self, value: Tensor) -> Tensor:
        return -0.5 * value.square().sum(dim=-1)


class WideSampler(distributions.Independent):
    """``log_prob`` of ``N(0, I)``, samples ``×1.05``."""

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        return 1.05 * super().sample(sample_shape)


def standard(dim: int) -> distributions.Normal:
    return distributions.Normal(torch.zeros(dim, dtype=F64), torch.ones(dim, dtype=F64))


def test_a_missing_normalizing_constant_is_measured_exactly():
    dim = 16
    mass = base_mass(with_base(dim, MissingConstant(standard(dim), 1)), draws(with_base(dim, None)), REAL, generator())
    assert math.isclose(mass.log_normalizer, dim / 2 * math.log(2 * math.pi), rel_tol=1e-10)


def test_a_sampler_that_does_not_draw_from_the_density_is_seen():
    dim = 16
    flow = with_base(dim, WideSampler(standard(dim), 1))
    mass = base_mass(flow, draws(flow), support_of(flow.base), generator())
    assert abs(mass.log_normalizer) < 1e-8  # the density itself is right
    assert abs(mass.sampler_shift) > 5 * mass.sampler_standard_error


@pytest.mark.parametrize("autograd", [False, True])
def test_the_mean_of_q_over_r_is_one_for_a_correct_flow_with_near_zero_variance(autograd):
    flow = with_base(8, None)
    mass = sampler_mass(flow, draws(flow), None, autograd=autograd)
    assert abs(mass.ratio.value - 1) < 1e-12 and mass.ratio.standard_error < 1e-14 and mass.unresolved == 0


def test_an_error_in_log_prob_alone_is_the_mean_ratio():
    flow = Flow(Scale(8, offset=math.log(1.02), inverse_only=True)).double()
    mass = sampler_mass(flow, draws(flow), None, autograd=False)
    assert math.isclose(mass.ratio.value, 1 / 1.02, rel_tol=1e-12)


def test_a_log_det_wrong_in_both_directions_is_seen_only_through_the_autograd_jacobian():
    flow = Flow(Scale(8, offset=math.log(1.02))).double()
    assert abs(sampler_mass(flow, draws(flow), None, autograd=False).ratio.value - 1) < 1e-12  # consistent: unseen
    assert math.isclose(sampler_mass(flow, draws(flow), None, autograd=True).ratio.value, 1 / 1.02, rel_tol=1e-12)


class NaNBeyond(Scale):
    """``log_prob`` is NaN where ``z₀ > edge`` (the flow's own samples reach it)."""

    def __init__(self, dim: int, edge: float) -> None:
        super().__init__(dim)
        self.edge = edge

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, ladj = super().inverse(x)
        return z, torch.where(z[:, 0] > self.edge, math.nan, ladj)


def test_non_finite_log_prob_at_a_few_samples_is_counted_at_ratio_one():
    flow = Flow(NaNBeyond(3, edge=3.0), validate=False).double()
    z = draws(flow)
    mass = sampler_mass(flow, z, None, autograd=False)
    assert mass.unresolved == int((z[:, 0] > 3.0).sum()) > 0
    assert abs(mass.ratio.value - 1) < 1e-12


@pytest.mark.parametrize("mirrored", [False, True])
def test_mass_off_the_sampler_image_is_counted(mirrored):
    """softplus maps R onto (0, ∞): the mirrored inverse gives ``log_prob`` a second unit of mass on (−∞, 0); the
    plain one gives NaN there (reported as unresolved, not counted)."""
    flow = Flow(Softplus(1, mirrored)).double()
    x = flow.sample(4096)
    mass = outside_image_mass(flow, x, 4096, None, 1e-8, generator())
    expected = 1.0 if mirrored else 0.0
    assert abs(mass.ratio.value - expected) <= 5 * mass.ratio.standard_error + 1e-12
    assert mass.outside > 0 and mass.unresolved == (0 if mirrored else mass.outside)
