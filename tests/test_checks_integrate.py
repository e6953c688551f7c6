"""The numerics of ``flowlab.checks.integrate``, on integrals whose values are known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions

from flowlab.checks.integrate import FittedProposal, double_exponential_rule, mean_ratio

INF = math.inf


def f64(family, *parameters: float):
    """``family(*parameters)``'s log-density in float64 (float parameters would make it float32)."""
    return family(*(torch.tensor(p, dtype=torch.float64) for p in parameters)).log_prob


def log_integral(log_density, low: float, high: float, center: float = 0.0, scale: float = 1.0):
    rule = double_exponential_rule(low, high, center, scale)
    value, error = rule.log_integral(log_density(rule.nodes))
    return float(value.exp()), float(error)


@pytest.mark.parametrize(
    ("name", "log_density", "low", "high", "exact"),
    [
        ("normal on R", f64(distributions.Normal, 0.3, 1.0), -INF, INF, 1.0),
        ("normal on a half-line", f64(distributions.Normal, 0.0, 1.0), 0.0, INF, 0.5),
        ("normal below 1", f64(distributions.Normal, 0.0, 1.0), -INF, 1.0, 0.5 * (1 + math.erf(1 / 2**0.5))),
        ("Cauchy (heavy tails) on R", f64(distributions.Cauchy, 0.0, 1.0), -INF, INF, 1.0),
        ("Laplace (a kink) on R", f64(distributions.Laplace, 0.0, 1.0), -INF, INF, 1.0),
        ("a constant on (-1, 2)", lambda t: torch.zeros_like(t), -1.0, 2.0, 3.0),
        ("Beta(2, 5) on (0, 1)", f64(distributions.Beta, 2.0, 5.0), 0.0, 1.0, 1.0),
    ],
)
def test_the_double_exponential_rule_integrates_and_bounds_its_error(name, log_density, low, high, exact):
    value, error = log_integral(log_density, low, high)
    assert abs(value - exact) <= max(error * value, 1e-12), (name, value, error)
    assert error < 1e-3, name


def test_a_smooth_density_is_integrated_to_rounding():
    value, error = log_integral(f64(distributions.Normal, 2.0, 3.0), -INF, INF, center=2.0, scale=3.0)
    assert abs(value - 1) < 1e-13 and error < 1e-10


def test_nodes_that_round_onto_an_end_get_no_weight():
    rule = double_exponential_rule(0.0, 1.0, 0.0, 1.0)
    weighted = rule.nodes[rule.weights > 0]
    assert bool(((weighted > 0) & (weighted < 1)).all())
    assert (rule.coarse_weights > 0).sum() < (rule.weights > 0).sum()


@pytest.mark.parametrize("defensive", [0.0, 0.1, 1.0])
def test_a_fitted_proposal_is_a_density_and_samples_from_it(defensive):
    """``log_prob`` integrates to 1 (quadrature) and its first two moments match the draws' (CLT, 5 SE)."""
    generator = torch.Generator().manual_seed(0)
    samples = 2.0 + 0.5 * torch.randn(4096, 1, generator=generator, dtype=torch.float64)
    proposal = FittedProposal.fit(samples, defensive=defensive, dof=5)
    rule = double_exponential_rule(-INF, INF, 2.0, 0.5)
    log_q = proposal.log_prob(rule.nodes[:, None])
    total, _ = rule.log_integral(log_q)
    assert abs(float(total.exp()) - 1) < 1e-9
    draws = proposal.sample(200_000, generator)[:, 0]
    for power in (1, 2):
        expected = float((rule.weights * log_q.exp() * rule.nodes**power).sum())
        spread = float(draws.pow(power).std()) / math.sqrt(draws.numel())
        assert abs(float(draws.pow(power).mean()) - expected) < 5 * spread


def test_mean_ratio_is_a_mean_with_its_standard_error_and_never_overflows_early():
    values = torch.tensor([0.5, 1.0, 1.5, 3.0], dtype=torch.float64)
    ratio = mean_ratio(values.log())
    assert math.isclose(ratio.value, 1.5) and math.isclose(ratio.standard_error, float(values.std()) / 2)
    assert mean_ratio(torch.tensor([-INF, 0.0])).value == 0.5  # -inf is a ratio of 0
    assert mean_ratio(torch.tensor([-INF, -INF])).value == 0.0
    big = mean_ratio(torch.tensor([700.0, 700.0], dtype=torch.float64))
    assert math.isclose(big.value, math.exp(700.0)) and big.standard_error == 0.0
    assert mean_ratio(torch.tensor([800.0], dtype=torch.float64)).value == INF


def test_a_robust_fit_is_not_moved_by_a_few_far_out_samples():
    samples = 2.0 + 0.5 * torch.randn(4096, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    samples[:4] = 1e6
    robust = FittedProposal.fit_robust(samples, defensive=1.0)
    assert torch.allclose(robust.mean, torch.full((3,), 2.0, dtype=torch.float64), atol=0.05)
    assert torch.allclose(robust.tril.diagonal(), torch.full((3,), 0.5, dtype=torch.float64), atol=0.05)
    assert float(FittedProposal.fit(samples, defensive=1.0).mean.min()) > 900  # the mean is dragged away
