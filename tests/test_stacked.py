"""The stack mixes every coordinate; the tutorial's stack without permutations does not. ActNorm's init."""

from __future__ import annotations

import pytest
import torch
from flowlab_stacked.chain import CouplingChain
from hypothesis import given, settings
from hypothesis import strategies as st

import flowlab
from flowlab.checks.cases import perturb_


def dependence(bijector: torch.nn.Module, dim: int, seed: int = 0) -> torch.Tensor:
    """``|∂x_i/∂z_j| > 0`` at a random point: which outputs depend on which inputs."""
    z = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: bijector(v[None])[0][0], z)
    return jac.abs() > 1e-12


@pytest.mark.parametrize("dim", [2, 3, 4, 5, 7])
@pytest.mark.parametrize(("permutation", "blocks"), [("reverse", 4), ("random", 8)])
def test_every_output_depends_on_every_input(dim, permutation, blocks, randomize):
    """Reverse mixes fully within 4 blocks; random permutations need more (8, the default) for d up to 7."""
    stack = randomize(flowlab.build("stacked", dim, blocks=blocks, permutation=permutation), dim).double()
    assert dependence(stack, dim).all()


@pytest.mark.parametrize("dim", [2, 4, 5])
def test_the_tutorials_stack_without_permutations_leaves_coordinates_unchanged(dim, randomize):
    stack = randomize(flowlab.build("stacked", dim, blocks=4, permutation="none"), dim).double()
    z = torch.randn(8, dim, dtype=torch.float64)
    x, _ = stack(z)
    kept = torch.arange(dim) % 2 == 0
    torch.testing.assert_close(x[:, kept], z[:, kept], rtol=0, atol=0)
    assert not dependence(stack, dim).all()


def test_actnorm_initialises_from_the_first_data_batch_then_is_batch_independent():
    stack = flowlab.build("stacked", 2, blocks=1, actnorm=True)
    data = torch.randn(512, 2) * torch.tensor([3.0, 0.5]) + torch.tensor([1.0, -2.0])
    stack.train()
    stack.inverse(data)  # the data reach the ActNorm first in the inverse direction
    actnorm = stack.bijectors[0]
    assert bool(actnorm.initialized)
    torch.testing.assert_close(actnorm.bias, data.mean(0))
    # the population std (divisor n: 0, not NaN, for a single row)
    torch.testing.assert_close(actnorm.log_scale, data.std(0, correction=0).log())
    row = data[:1]
    alone, _ = stack.inverse(row)
    torch.testing.assert_close(stack.inverse(torch.cat([row, data[1:4] * 10]))[0][:1], alone)


def test_actnorm_first_call_forward_keeps_it_a_bijection():
    stack = flowlab.build("stacked", 2, blocks=2, actnorm=True).train()
    z = torch.randn(16, 2)
    x, _ = stack(z)
    torch.testing.assert_close(stack.inverse(x)[0], z)


@settings(deadline=None)
@given(
    dim=st.integers(2, 9),
    permutation=st.sampled_from(["reverse", "random", "none"]),
    blocks=st.integers(1, 5),
    context_dim=st.sampled_from([0, 2]),
    seed=st.integers(0, 2**16),
)
def test_the_coupling_chain_is_the_plain_composition_of_its_layers(dim, permutation, blocks, context_dim, seed):
    """``CouplingChain`` keeps the two parts apart and permutes weights instead of data: the same map, log-dets
    and gradients as ``Compose`` of the same layers (float64, to rounding)."""
    chain = flowlab.build("stacked", dim, blocks=blocks, permutation=permutation, context_dim=context_dim, seed=seed)
    assert isinstance(chain, CouplingChain)
    chain = perturb_(chain, seed).double()
    plain = flowlab.Compose(chain.layers)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(5, dim, generator=generator, dtype=torch.float64, requires_grad=True)
    context = {"context": torch.randn(5, context_dim, generator=generator, dtype=torch.float64)} if context_dim else {}
    for direction in ("forward", "inverse"):
        ours, reference = getattr(chain, direction)(x, **context), getattr(plain, direction)(x, **context)
        for a, b in zip(ours, reference, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        gradients = [
            torch.autograd.grad(out[0].sum() + out[1].sum(), [x, *chain.parameters()]) for out in (ours, reference)
        ]
        for a, b in zip(*gradients, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_coupling_chain_saves_what_compose_saves_and_replans_when_loading_other_permutations():
    chain = flowlab.build("stacked", 6, blocks=3, permutation="random", seed=1)
    assert set(chain.state_dict()) == set(flowlab.Compose(chain.layers).state_dict())
    other = perturb_(flowlab.build("stacked", 6, blocks=3, permutation="random", seed=2), 0)
    chain.load_state_dict(other.state_dict())  # the other seed's permutations come with its state
    x = torch.randn(4, 6)
    for a, b in zip(chain.inverse(x), flowlab.Compose(chain.layers).inverse(x), strict=True):
        torch.testing.assert_close(a, b)


def test_a_stack_with_actnorm_or_another_block_is_a_plain_composition():
    assert not isinstance(flowlab.build("stacked", 4, actnorm=True), CouplingChain)
    assert not isinstance(flowlab.build("stacked", 4, block="affine"), CouplingChain)
