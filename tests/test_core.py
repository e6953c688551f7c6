"""The core: Compose, Permutation, Flow with default and custom bases, dtype/device moves."""

from __future__ import annotations

import math

import pytest
import torch

import flowlab


def test_tutorial_affine_example_has_logdet_log_3():
    bijector = flowlab.build("affine", 2, matrix=[[2.0, 0.5], [0.0, 1.5]], shift=[1.0, -0.5])
    z = torch.randn(6, 2)
    x, ladj = bijector(z)
    torch.testing.assert_close(ladj, torch.full((6,), math.log(3.0)))
    torch.testing.assert_close(x, z @ torch.tensor([[2.0, 0.5], [0.0, 1.5]]).T + torch.tensor([1.0, -0.5]))
    assert math.isclose(float(torch.logdet(bijector.matrix())), 1.0986, abs_tol=1e-4)


def test_learned_affine_logdet_agrees_with_torch_logdet(randomize):
    bijector = randomize(flowlab.build("affine", 4), 3)
    _, ladj = bijector(torch.randn(2, 4))
    torch.testing.assert_close(ladj, torch.logdet(bijector.matrix()).expand(2))


def test_one_dimensional_affine_gives_the_gaussian_it_should():
    """x = 2z + 1 with z ~ N(0, 1) is N(1, 4)."""
    flow = flowlab.Flow(flowlab.build("affine", 1, matrix=[[2.0]], shift=[1.0]))
    x = torch.linspace(-5, 7, 25)[:, None]
    expected = torch.distributions.Normal(1.0, 2.0).log_prob(x[:, 0])
    torch.testing.assert_close(flow.log_prob(x), expected)


def test_compose_adds_logdets_and_inverts_in_reverse_order():
    a = flowlab.build("affine", 2, matrix=[[2.0, 0.0], [0.0, 1.0]])
    b = flowlab.build("affine", 2, matrix=[[1.0, 1.0], [0.0, 3.0]], shift=[0.5, 0.5])
    chain = flowlab.Compose([a, b])
    z = torch.randn(5, 2)
    x, ladj = chain(z)
    torch.testing.assert_close(x, b(a(z)[0])[0])
    torch.testing.assert_close(ladj, torch.full((5,), math.log(6.0)))
    torch.testing.assert_close(chain.inverse(x)[0], z)


class _Scaled(flowlab.Permutation):
    """A subclass of Permutation that is another map: it also doubles the coordinates (log-det d·log 2)."""

    def forward(self, z):
        x, _ = super().forward(z)
        return 2 * x, torch.full(z.shape[:1], z.shape[1] * math.log(2.0), dtype=z.dtype)

    def inverse(self, x):
        z, _ = super().inverse(x / 2)
        return z, torch.full(x.shape[:1], -x.shape[1] * math.log(2.0), dtype=x.dtype)


class _ScalarLogdet(flowlab.Bijector):
    """Adds 1, and returns its log-det 0 as a scalar that broadcasts (as some outside bijectors do)."""

    dim = 3

    def forward(self, z):
        return z + 1, torch.zeros(())

    def inverse(self, x):
        return x - 1, torch.zeros(())


def test_compose_skips_only_plain_permutations_and_always_returns_one_logdet_per_point():
    """Compose does not add a Permutation's zero log-det; it still adds a subclass's (another map), and a sum of no
    log-det or of broadcasting ones is still ``[batch]``."""
    z = torch.randn(4, 3)
    reverse = flowlab.Permutation.reverse(3)
    for chain in (flowlab.Compose([reverse, flowlab.Permutation.reverse(3)]), flowlab.Compose([_ScalarLogdet()])):
        for _, ladj in (chain(z), chain.inverse(z)):
            assert ladj.shape == (4,) and torch.equal(ladj, torch.zeros(4))
    chain = flowlab.Compose([reverse, _Scaled(torch.tensor([1, 2, 0])), reverse])
    x, ladj = chain(z)
    torch.testing.assert_close(x, 2 * z[:, [2, 1, 0]][:, [1, 2, 0]][:, [2, 1, 0]])
    torch.testing.assert_close(ladj, torch.full((4,), 3 * math.log(2.0)))
    z_back, minus = chain.inverse(x)
    torch.testing.assert_close(z_back, z)
    torch.testing.assert_close(minus, -ladj)


def test_compose_refuses_mixed_dimensions():
    with pytest.raises(flowlab.ShapeError, match="one dimension"):
        flowlab.Compose([flowlab.build("affine", 2), flowlab.build("affine", 3)])


def test_permutation_is_volume_preserving_and_invertible():
    perm = flowlab.Permutation([2, 0, 1])
    z = torch.randn(4, 3)
    x, ladj = perm(z)
    torch.testing.assert_close(x, z[:, [2, 0, 1]])
    assert torch.equal(ladj, torch.zeros(4))
    torch.testing.assert_close(perm.inverse(x)[0], z)
    with pytest.raises(flowlab.ShapeError, match=r"permutation of 0\.\.2"):
        flowlab.Permutation([0, 0, 1])


def test_flow_sample_and_log_prob_agree_with_log_prob(randomize):
    flow = flowlab.Flow(randomize(flowlab.build("stacked", 3, blocks=2), 1)).double().eval()
    x, log_prob = flow.sample_and_log_prob(16)
    assert x.shape == (16, 3) and log_prob.shape == (16,)
    torch.testing.assert_close(flow.log_prob(x), log_prob)


def test_flow_with_a_custom_base():
    base = torch.distributions.MultivariateNormal(torch.zeros(2), 4.0 * torch.eye(2))
    flow = flowlab.Flow(flowlab.build("affine", 2), base)  # identity at init: p = base
    x = torch.randn(3, 2)
    torch.testing.assert_close(flow.log_prob(x), base.log_prob(x))
    assert flow.sample(7).shape == (7, 2)


def test_default_base_follows_dtype():
    flow = flowlab.Flow(flowlab.build("coupling", 2)).to(torch.float64)
    assert flow.base.sample((2,)).dtype == torch.float64
    assert flow.log_prob(torch.zeros(1, 2, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("dim", [1, 5])
def test_default_base_log_prob_in_closed_form_is_the_standard_normal(dim):
    flow = flowlab.Flow(flowlab.build("affine", dim)).double()
    z = 3 * torch.randn(64, dim, dtype=torch.float64)
    torch.testing.assert_close(flow.base_log_prob(z), flow.base.log_prob(z), rtol=0, atol=1e-12)
    x, log_prob = flow.sample_and_log_prob(8)  # identity at init: both are log N(x; 0, I)
    torch.testing.assert_close(log_prob, flow.base.log_prob(x), rtol=0, atol=1e-12)


def test_flow_is_a_bijector_protocol_user():
    assert isinstance(flowlab.build("stacked", 2), flowlab.Bijector)
    assert not isinstance(object(), flowlab.VectorField)


@pytest.mark.cuda
def test_flow_moves_to_cuda():
    flow = flowlab.Flow(flowlab.build("stacked", 2)).to("cuda")
    x = torch.randn(4, 2, device="cuda")
    assert flow.log_prob(x).device.type == "cuda"
    assert flow.sample(3).device.type == "cuda"
    with pytest.raises(flowlab.DeviceError, match="on cuda"):
        flow.log_prob(x.cpu())
