"""Hypothesis property tests of the built-in discrete flows, in float64 against autograd."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import flowlab

FLOWS = {
    "affine": {"identity_init": False},
    "coupling": {"identity_init": False},
    "stacked": {"blocks": 3, "block_options": {"hidden": 16}},
}
FLOWS_WITH_OPTIONS = [
    ("affine", {}),
    ("coupling", {"parity": "odd", "activation": "tanh"}),
    ("stacked", {"blocks": 3, "permutation": "random", "actnorm": True, "block_options": {"hidden": 16}}),
    ("stacked", {"blocks": 2, "block": "affine"}),
]


def make(name: str, dim: int, seed: int, randomize, options=None, device: str = "cpu") -> torch.nn.Module:
    torch.manual_seed(seed)
    bijector = flowlab.build(name, dim, **(options if options is not None else FLOWS[name]))
    return randomize(bijector.double(), seed).to(device).eval()


cases = st.tuples(
    st.integers(2, 6),  # dim
    st.integers(1, 8),  # batch
    st.integers(0, 2**16),  # parameter seed
    st.floats(0.1, 4.0),  # input scale (several standard deviations)
)


def points(batch: int, dim: int, seed: int, scale: float, device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed + 1)
    return (torch.randn(batch, dim, generator=generator, dtype=torch.float64) * scale).to(device)


def jacobian_logabsdet(fn, z: torch.Tensor) -> torch.Tensor:
    """``log|det ∂fn/∂z|`` per row, from the dense autograd Jacobian."""
    rows = [torch.autograd.functional.jacobian(lambda v: fn(v[None])[0][0], zi) for zi in z]
    return torch.stack([torch.linalg.slogdet(j).logabsdet for j in rows])


@pytest.mark.parametrize("name", ["affine", "coupling", "stacked"])
@given(case=cases)
def test_round_trip_both_ways(name, case, randomize, device):
    dim, batch, seed, scale = case
    bijector = make(name, dim, seed, randomize, device=device)
    z = points(batch, dim, seed, scale, device)
    x, _ = bijector(z)
    torch.testing.assert_close(bijector.inverse(x)[0], z, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(bijector(bijector.inverse(z)[0])[0], z, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["affine", "coupling", "stacked"])
@given(case=cases)
def test_logdet_matches_autograd_jacobian(name, case, randomize):
    dim, batch, seed, scale = case
    bijector = make(name, dim, seed, randomize)
    z = points(batch, dim, seed, scale, "cpu")
    _, ladj = bijector(z)
    assert ladj.shape == (batch,)
    torch.testing.assert_close(ladj, jacobian_logabsdet(bijector, z), rtol=1e-8, atol=1e-8)
    x = points(batch, dim, seed + 7, scale, "cpu")
    torch.testing.assert_close(bijector.inverse(x)[1], jacobian_logabsdet(bijector.inverse, x), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(("name", "options"), FLOWS_WITH_OPTIONS)
@given(case=cases)
def test_forward_and_inverse_logdets_cancel(name, options, case, randomize):
    dim, batch, seed, scale = case
    bijector = make(name, dim, seed, randomize, options)
    z = points(batch, dim, seed, scale, "cpu")
    x, forward_ladj = bijector(z)
    _, inverse_ladj = bijector.inverse(x)
    torch.testing.assert_close(forward_ladj + inverse_ladj, torch.zeros_like(forward_ladj), rtol=0, atol=1e-9)


@pytest.mark.parametrize(("name", "options"), FLOWS_WITH_OPTIONS)
def test_float32_and_float64_keep_dtype(name, options, randomize, device):
    for dtype in (torch.float32, torch.float64):
        flow = flowlab.Flow(randomize(flowlab.build(name, 3, **options), 0)).to(device=device, dtype=dtype).eval()
        x = torch.randn(5, 3, dtype=dtype, device=device)
        log_prob = flow.log_prob(x)
        samples, sample_log_prob = flow.sample_and_log_prob(4)
        assert log_prob.dtype == samples.dtype == sample_log_prob.dtype == dtype
        assert log_prob.device.type == samples.device.type == device
        torch.testing.assert_close(flow.log_prob(samples), sample_log_prob, rtol=1e-4, atol=1e-4)
