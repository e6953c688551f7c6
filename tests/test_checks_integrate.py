"""The mass estimators of the ``normalization`` check, on densities whose integrals are known."""

from __future__ import annotations

import math

import torch
from torch import distributions

from flowlab.checks.integrate import box_mass, box_quadrature, importance_sampling


def gaussian(dim: int, scale: float = 1.0) -> distributions.Distribution:
    torch.manual_seed(dim)  # statistical tests use fixed seeds
    loc = torch.zeros(dim, dtype=torch.float64)
    return distributions.Independent(distributions.Normal(loc, torch.full_like(loc, scale)), 1)


def test_simpson_in_a_box_matches_the_normal_cdf_and_bounds_its_own_error():
    exact = math.erf(1.5 / math.sqrt(2)) * math.erf(2.0 / math.sqrt(2))  # [-1.5, 1.5] × [-2, 2] under N(0, I)
    low, high = torch.tensor([-1.5, -2.0], dtype=torch.float64), torch.tensor([1.5, 2.0], dtype=torch.float64)
    result = box_quadrature(gaussian(2).log_prob, low, high, points_per_axis=101)
    assert abs(result.integral - exact) <= result.error_estimate < 1e-5


def test_box_mass_is_a_fraction_with_its_binomial_standard_error():
    samples = gaussian(1).sample((10_000,))
    mass, se = box_mass(
        samples, torch.tensor([0.0], dtype=torch.float64), torch.tensor([math.inf], dtype=torch.float64)
    )
    assert abs(mass - 0.5) < 5 * se and math.isclose(se, math.sqrt(mass * (1 - mass) / 10_000))


def test_importance_sampling_finds_a_normalised_density_and_a_mass_that_is_not():
    target = gaussian(4, scale=2.0)
    fit = target.sample((4096,))
    estimate = importance_sampling(target.log_prob, fit, 20_000, torch.Generator().manual_seed(0))
    assert abs(estimate.normalizer - 1) <= 5 * estimate.standard_error
    assert estimate.effective_sample_size > 0.2 * estimate.samples
    half = importance_sampling(
        lambda x: target.log_prob(x) - math.log(2), fit, 20_000, torch.Generator().manual_seed(0)
    )
    assert abs(half.normalizer - 0.5) <= 5 * half.standard_error and abs(half.normalizer - 1) > 5 * half.standard_error


def test_a_proposal_far_from_the_density_has_a_small_effective_sample_size():
    """Fitted to points that miss the density, the estimate is flagged (the check then says inconclusive)."""
    fit = gaussian(3, scale=0.05).sample((4096,)) + 6.0
    estimate = importance_sampling(gaussian(3).log_prob, fit, 20_000, torch.Generator().manual_seed(0))
    assert estimate.effective_sample_size < 0.05 * estimate.samples
