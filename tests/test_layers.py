"""flowlab.layers: a Coupling subclass gets an exact inverse and log-det from its elementwise map; AffineCoupling's
split, scale bound and identity start. (ActNorm's initialisation: tests/test_glow.py and tests/test_stacked.py.)"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

import flowlab
from flowlab.layers import AffineCoupling, Coupling

F64 = torch.float64


class Cubic(Coupling):
    """``τ(z; a, b) = exp(a)·(z + z³/3) + b``: strictly increasing, ``log τ' = a + log(1 + z²)``; a map that is not
    affine, so the log-det test sees more than a constant per row (the test needs only the forward direction)."""

    def __init__(self, dim: int, split: str) -> None:
        super().__init__(dim, split=split, params_per_coordinate=2, hidden=8, identity_init=False)

    def transform(self, moved: Tensor, theta: Tensor, *, inverse: bool) -> tuple[Tensor, Tensor]:
        if inverse:
            raise NotImplementedError
        a, b = theta.view(*moved.shape, 2).unbind(-1)
        return a.exp() * (moved + moved**3 / 3) + b, a + torch.log1p(moved**2)


@pytest.mark.parametrize("split", ["even", "odd", "halves"])
@given(dim=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_a_couplings_logdet_is_the_sum_of_its_maps_log_derivatives(split, dim, seed):
    torch.manual_seed(seed)
    layer = Cubic(dim, split).double()
    z = torch.randn(dim, dtype=F64)
    x, logdet = layer(z[None])
    jacobian = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], z)
    torch.testing.assert_close(logdet[0], torch.linalg.slogdet(jacobian).logabsdet)
    kept = layer.kept
    torch.testing.assert_close(x[0, kept], z[kept], rtol=0, atol=0)


@pytest.mark.parametrize("parity", ["even", "odd"])
@given(dim=st.integers(2, 6), seed=st.integers(0, 2**16), context_dim=st.sampled_from([0, 2]))
def test_affine_coupling_inverts_exactly_with_the_autograd_logdet(parity, dim, seed, context_dim, randomize):
    layer = randomize(AffineCoupling(dim, parity=parity, hidden=8, context_dim=context_dim), seed).double()
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(5, dim, generator=generator, dtype=F64)
    context = {"context": torch.randn(5, context_dim, generator=generator, dtype=F64)} if context_dim else {}
    x, forward = layer(z, **context)
    back, inverse = layer.inverse(x, **context)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(inverse, -forward)
    row = {"context": context["context"][:1]} if context_dim else {}
    jacobian = torch.autograd.functional.jacobian(lambda v: layer(v[None], **row)[0][0], z[0])
    torch.testing.assert_close(forward[0], torch.linalg.slogdet(jacobian).logabsdet)


def test_affine_coupling_scale_stays_within_its_bound_and_starts_as_the_identity():
    layer = AffineCoupling(4, scale_bound=2.0)
    z = torch.randn(3, 4)
    x, logdet = layer(z)
    assert torch.equal(x, z) and not logdet.any()  # identity_init: s = t = 0
    with torch.no_grad():
        layer.conditioner[-1].bias.fill_(1e6)  # ŝ = 1e6 for every input
    _, logdet = layer(z)
    torch.testing.assert_close(logdet, torch.full((3,), 2 * 2.0))  # two moved coordinates, each s = B


def test_a_bad_split_or_parity_is_a_clear_error():
    with pytest.raises(flowlab.OptionError, match="parity must be 'even' or 'odd', got 'middle'"):
        AffineCoupling(4, parity="middle")
    with pytest.raises(flowlab.OptionError, match="split must be one of even, odd, halves, got 'thirds'"):
        Cubic(4, "thirds")
