"""The built-in datasets: registered, seeded by a local generator, and their stated entropies and densities right.

Statistical checks use fixed seeds and CLT bounds: a Monte-Carlo mean is within 4 standard errors of its
expectation with probability > 0.9999.
"""

from __future__ import annotations

import math
from functools import cache

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import flowlab
from flowlab.checks.measure import batch_jacobian
from flowlab.preprocess import Logit, Preprocessed

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


# -- finite datasets: the split, digits, the preprocessing bijectors -----------------------------------------------
def test_split_is_fixed_disjoint_and_covers_every_row():
    from flowlab.data import Split

    points = torch.arange(50, dtype=torch.float32)[:, None].repeat(1, 2)
    split = Split.of(points, torch.arange(50))
    assert (len(split.train), len(split.validation), len(split.test)) == (35, 5, 10)
    seen = torch.cat([split.train[:, 0], split.validation[:, 0], split.test[:, 0]]).long().sort().values
    assert torch.equal(seen, torch.arange(50)), "every row exactly once, the three parts disjoint"
    for part in ("train", "validation", "test"):
        rows, labels = split.part(part)
        assert labels is not None and torch.equal(labels, rows[:, 0].long()), part
    assert torch.equal(Split.of(points).test, split.test), "the split is a function of the data alone"
    assert torch.equal(Split.of(points).validation, split.validation)
    with pytest.raises(flowlab.OptionError, match="at least 6 rows"):
        Split.of(points[:5])


def test_a_stream_holds_out_fresh_points_of_its_own_sampler():
    spec = flowlab.dataset_spec("moons")
    assert not spec.finite and spec.preprocessing() is None
    assert torch.equal(
        spec.test_points(7, torch.Generator().manual_seed(2)), spec.sample(7, torch.Generator().manual_seed(2))
    )


def digits_spec():
    pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn (pip install -e '.[data]')")
    return flowlab.dataset_spec("digits")


def test_digits_are_dequantised_training_rows_drawn_with_replacement():
    spec = digits_spec()
    split = spec.split()
    assert spec.dim == 64 and spec.finite and spec.discrete
    assert (len(split.train), len(split.validation), len(split.test)) == (1258, 180, 359)
    x = spec.sample(2000, torch.Generator().manual_seed(0))
    assert x.shape == (2000, 64) and bool((x >= 0).all()) and bool((x < 17).all())
    pixels = x.floor()
    train = {tuple(row) for row in split.train.tolist()}
    assert all(tuple(row) in train for row in pixels.tolist()), "every point is a training row plus U(0, 1) noise"
    # with replacement: 2000 draws from 1258 rows repeat some (a permutation could not)
    assert len({tuple(row) for row in pixels.tolist()}) < 2000
    # the noise is U(0, 1): mean 1/2, SD of the mean sqrt(1/12/N) over N = 128000 coordinates; within 4 SD
    noise = (x - pixels).double()
    assert abs(float(noise.mean()) - 0.5) < 4 * math.sqrt(1 / 12 / noise.numel())


def test_digits_test_points_are_the_whole_test_split_dequantised_by_the_generator():
    spec = digits_spec()
    a = spec.test_points(5, torch.Generator().manual_seed(1))
    assert a.shape == (359, 64) and torch.equal(a.floor(), spec.split().test)
    assert torch.equal(a, spec.test_points(5, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, spec.test_points(5, torch.Generator().manual_seed(2)))


def test_digits_labels_are_the_context_of_the_drawn_rows():
    spec = digits_spec()
    x, labels = spec.sample_with_context(300, torch.Generator().manual_seed(4))
    assert torch.equal(x, spec.sample(300, torch.Generator().manual_seed(4)))
    split = spec.split()
    assert split.train_context is not None and labels.dtype == torch.int64
    by_row = {tuple(row): int(c) for row, c in zip(split.train.tolist(), split.train_context.tolist(), strict=True)}
    assert [by_row[tuple(row)] for row in x.floor().tolist()] == labels.tolist()
    assert set(labels.tolist()) == set(range(10))
    with pytest.raises(flowlab.OptionError, match="no context"):
        flowlab.dataset_spec("moons").sample_with_context(3, torch.Generator())


def test_digits_without_scikit_learn_names_the_extra(monkeypatch):
    import sys

    from flowlab_datasets import digits

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(flowlab.MissingDependencyError, match=r"pip install -e '\.\[data\]' from the root of a flowlab"):
        digits.split.__wrapped__()


@given(seed=st.integers(0, 2**16), dim=st.integers(1, 5), batch=st.integers(1, 6), alpha=st.floats(1e-3, 0.2))
def test_logit_inverts_and_its_log_dets_are_the_autograd_jacobians(seed, dim, batch, alpha):
    logit = Logit(dim, 17, alpha)
    x = 17 * torch.rand(batch, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y, inverse_ladj = logit.inverse(x)
    back, forward_ladj = logit(y)
    assert torch.allclose(back, x, atol=1e-10, rtol=0)
    expected = torch.linalg.slogdet(batch_jacobian(lambda v: logit.inverse(v)[0], x))[1]
    assert torch.allclose(inverse_ladj, expected, atol=1e-10, rtol=1e-10)
    assert torch.allclose(forward_ladj, -inverse_ladj, atol=1e-10, rtol=1e-10)


def test_a_flow_through_the_logit_is_a_normalised_density_of_the_pixels():
    """1-D, 17 levels: ``∫ q(v) dv = 1`` over the support of ``levels (σ(y) − α)/(1 − 2α)`` (midpoint rule; the
    learned part is a perturbed affine flow so that the test does not ride on the identity)."""
    learned = flowlab.build("affine", 1).double()
    with torch.no_grad():
        for p in learned.parameters():
            p.add_(0.7)
    logit = Logit(1, 17, 0.05)
    flow = flowlab.Flow(Preprocessed(learned, logit)).double()
    low, high = -0.05 * 17 / 0.9, 17 * 0.95 / 0.9
    m = 200000
    v = low + (high - low) * (torch.arange(m, dtype=torch.float64) + 0.5) / m
    with torch.no_grad():
        mass = float(flow.log_prob(v[:, None]).exp().sum()) * (high - low) / m
    assert abs(mass - 1) < 1e-4


def test_train_eval_and_plot_on_digits_report_bits_per_dim_of_the_dequantised_pixels(tmp_path, capsys):
    import json

    from flowlab.cli import main

    digits_spec()
    out = tmp_path / "d"
    args = ["--flow", "affine", "--data", "digits", "--steps", "2", "--batch-size", "32", "--eval-every", "2"]
    assert main(["train", *args, "--out", str(out)]) == 0
    assert "bits/dim" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt"]
    assert main(["eval", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 359 and result["data"] == "digits"
    assert result["bits_per_dim"] == pytest.approx(result["nll_nats"] / (64 * math.log(2)))
    # an untrained affine flow is far from the data, but its density is in pixel units: well above 0 bits/dim
    assert result["bits_per_dim"] > 1
    pytest.importorskip("matplotlib", reason="plot needs matplotlib (the plot extra)")
    assert main(["plot", str(out), "--out", str(tmp_path / "d.png")]) == 0
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
