"""The stack mixes every coordinate; the tutorial's stack without permutations does not. ActNorm's init."""

from __future__ import annotations

import pytest
import torch

import flowlab


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
