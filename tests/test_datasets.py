"""The built-in datasets: registered, seeded by a local generator, and their stated entropies and densities right.

Statistical checks use fixed seeds and CLT bounds: a Monte-Carlo mean is within 4 standard errors of its
expectation with probability > 0.9999.
"""

from __future__ import annotations

import math
from functools import cache

import pytest
import torch

import flowlab

FFJORD = ("8gaussians", "checkerboard", "circles", "rings", "moons", "swissroll", "2spirals", "pinwheel")
WITH_DENSITY = [name for name in FFJORD if name != "pinwheel"]
HALF_WIDTH, CELLS = 6.0, 120  # quadrature grid: cell midpoints of [-6, 6]², cell side 0.1


def test_the_ffjord_toys_are_registered_by_the_datasets_plugin():
    assert set(FFJORD) <= set(flowlab.datasets())
    entry = flowlab.plugins.get_registry().get("datasets", "moons")
    assert entry.plugin.name == "datasets" and entry.plugin.builtin


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(flowlab.UnknownFlowError, match=r"unknown dataset 'moon'.*known datasets: .*moons.*'moons'\?"):
        flowlab.dataset_spec("moon")


@pytest.mark.parametrize("name", FFJORD)
def test_sampling_is_seeded_locally_and_points_are_independent_draws(name):
    spec = flowlab.dataset_spec(name)
    state = torch.random.get_rng_state()
    a = spec.sample(500, torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), state), "sampling touched the global RNG"
    assert a.shape == (500, 2) and a.dtype == torch.float32 and bool(torch.isfinite(a).all())
    assert torch.equal(a, spec.sample(500, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, spec.sample(500, torch.Generator().manual_seed(4)))
    assert spec.description and spec.summary and spec.entropy_source


def test_component_membership_is_random_per_point():
    """Independent points: any 100 of a draw are a fair sample, not a block of one circle (as a fixed split into
    halves would give). Outer-circle count ~ Binomial(100, ½): within 4 SD (±20) of 50."""
    x = flowlab.dataset_spec("circles").sample(1000, torch.Generator().manual_seed(5))
    outer = int((x[:100].norm(dim=-1) > 2.25).sum())
    assert 30 <= outer <= 70


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_sample_rejects_a_bad_count(n):
    with pytest.raises(flowlab.OptionError, match="positive integer"):
        flowlab.dataset_spec("moons").sample(n, torch.Generator())


@cache
def quadrature(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell midpoints of the grid and the probability mass ``p(x)·h²`` of each cell."""
    h = 2 * HALF_WIDTH / CELLS
    axis = -HALF_WIDTH + h * (torch.arange(CELLS, dtype=torch.float64) + 0.5)
    xs, ys = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten()], dim=-1)
    log_prob = flowlab.dataset_spec(name).log_prob
    assert log_prob is not None
    return points, log_prob(points).exp() * h * h


@pytest.mark.parametrize("name", WITH_DENSITY)
def test_log_prob_is_a_normalised_density(name):
    _, mass = quadrature(name)
    assert abs(float(mass.sum()) - 1.0) < 2e-3


@pytest.mark.parametrize("name", WITH_DENSITY)
def test_log_prob_is_the_density_of_the_sampler(name):
    """The fraction of sampled points in each 2×2 box matches the box's mass under ``log_prob`` (CLT bound)."""
    n = 4000
    points, mass = quadrature(name)
    box = lambda x: (torch.floor((x + HALF_WIDTH) / 2).clamp(0, 5) * torch.tensor([6, 1])).sum(-1).long()  # noqa: E731
    expected = torch.zeros(36, dtype=torch.float64).index_add_(0, box(points), mass)
    x = flowlab.dataset_spec(name).sample(n, torch.Generator().manual_seed(11)).double()
    observed = torch.bincount(box(x), minlength=36).double() / n
    bound = 4 * (expected * (1 - expected) / n).sqrt() + 3e-3
    assert bool(((observed - expected).abs() <= bound).all()), (observed - expected).abs().max()


@pytest.mark.parametrize("name", WITH_DENSITY)
def test_stated_entropy_matches_a_monte_carlo_estimate(name):
    """``H = −E[log p(x)]``: the stated value (2 decimals, itself a Monte-Carlo value of SE ≈ 0.003 where not
    closed form) is within 4 standard errors + 0.01 of a fresh estimate."""
    spec = flowlab.dataset_spec(name)
    assert spec.log_prob is not None and spec.entropy is not None
    x = spec.sample(3000, torch.Generator().manual_seed(7))
    nll = -spec.log_prob(x).double()
    se = float(nll.std()) / math.sqrt(len(nll))
    assert abs(float(nll.mean()) - spec.entropy) <= 4 * se + 0.01


def test_checkerboard_entropy_is_ln_32():
    assert flowlab.dataset_spec("checkerboard").entropy == pytest.approx(math.log(32), abs=0.005)


def test_pinwheel_states_why_its_entropy_is_unknown():
    spec = flowlab.dataset_spec("pinwheel")
    assert spec.entropy is None and spec.log_prob is None and "not known" in spec.entropy_source
