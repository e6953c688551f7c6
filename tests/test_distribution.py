"""``Flow.as_distribution()``: a ``torch.distributions.Distribution`` that follows torch's conventions."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Distribution, constraints

import flowlab
from flowlab.distribution import FlowDistribution


@pytest.fixture(scope="module")
def flow() -> flowlab.Flow:
    torch.manual_seed(0)
    return flowlab.Flow(flowlab.build("stacked", 3, blocks=2))


def test_it_is_a_distribution_with_torchs_attributes(flow):
    dist = flow.as_distribution()
    assert isinstance(dist, Distribution) and isinstance(dist, FlowDistribution)
    assert dist.event_shape == torch.Size([3]) and dist.batch_shape == torch.Size()
    assert dist.support is constraints.real_vector and dist.has_rsample


@pytest.mark.parametrize("sample_shape", [(), (3,), (2, 3)])
def test_sample_and_rsample_shapes(flow, sample_shape):
    dist = flow.as_distribution()
    sample = dist.sample(sample_shape)
    assert sample.shape == torch.Size(sample_shape) + dist.event_shape and not sample.requires_grad
    rsample = dist.rsample(torch.Size(sample_shape))
    assert rsample.shape == sample.shape and rsample.requires_grad
    assert dist.log_prob(sample).shape == torch.Size(sample_shape)


def test_log_prob_on_batched_shapes_matches_the_flow(flow):
    dist = flow.as_distribution()
    x = torch.randn(2, 4, 3)
    expected = flow.log_prob(x.reshape(8, 3)).reshape(2, 4)
    torch.testing.assert_close(dist.log_prob(x), expected)
    torch.testing.assert_close(dist.log_prob(x[0, 0]), expected[0, 0])  # one event: a 0-d result


def test_rsample_is_reparametrised(flow):
    dist = flow.as_distribution()
    loss = dist.rsample((16,)).square().sum()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in flow.parameters())
    flow.zero_grad()


def test_validate_args_rejects_a_wrong_event_shape_and_values_outside_the_support(flow):
    dist = flow.as_distribution(validate_args=True)
    with pytest.raises(ValueError, match=r"expected a value of shape \(\.\.\., 3\).*got \[4, 2\]"):
        dist.log_prob(torch.randn(4, 2))
    with pytest.raises(ValueError, match="support"):
        dist.log_prob(torch.full((2, 3), float("nan")))


def test_validate_args_false_skips_torchs_support_check(flow):
    dist = flow.as_distribution(validate_args=False)
    assert not dist._validate_args
    with pytest.raises(flowlab.NonFiniteError):  # the flow's own input check still speaks
        dist.log_prob(torch.full((2, 3), float("nan")))
