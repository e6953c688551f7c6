"""flowlab.nn: one activation table, the Lipschitz activations' derivatives, the soft clamp's guarantee, the MLP,
zero-initialised layers and MADE's masked linear layer."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import flowlab
from flowlab import nn as fnn

F64 = torch.float64
finite = st.floats(-1e6, 1e6, allow_nan=False)


def test_one_read_only_table_holds_every_familys_choices():
    for choices in (fnn.CONDITIONER_CHOICES, fnn.SMOOTH_CHOICES, fnn.LIPSCHITZ_CHOICES):
        assert set(choices) <= set(fnn.ACTIVATIONS)
    assert "relu" not in fnn.SMOOTH_CHOICES  # the trace's gradient needs second derivatives
    with pytest.raises(TypeError):
        fnn.ACTIVATIONS["gelu"] = torch.nn.GELU  # type: ignore[index]
    with pytest.raises(flowlab.OptionError, match="activation must be one of lipswish, elu, got 'relu'"):
        fnn.activation_module("relu", fnn.LIPSCHITZ_CHOICES)


@pytest.mark.parametrize("name", sorted(set(fnn.LIPSCHITZ_CHOICES) | set(fnn.SMOOTH_CHOICES)))
@given(a=st.lists(finite, min_size=1, max_size=8))
def test_activations_give_their_value_and_autograd_derivative(name, a):
    """``value_and_derivative`` of every activation that has one: the residual blocks' Lipschitz bound (``|φ'| ≤ 1``)
    and ``TimeMLP.jacobian``'s CNF trace (a wrong ``φ'`` would be a wrong trace) rest on it."""
    module = fnn.activation_module(name).double()
    a = torch.tensor(a, dtype=F64, requires_grad=True)
    value, derivative = module.value_and_derivative(a)
    (autograd,) = torch.autograd.grad(module(a).sum(), a)
    torch.testing.assert_close(value, module(a))
    torch.testing.assert_close(derivative, autograd)
    if name in fnn.LIPSCHITZ_CHOICES:
        assert (derivative.abs() <= 1).all()


@pytest.mark.parametrize("rows", [1, fnn.TANH_THROUGH_SIGMOID // 8, fnn.TANH_THROUGH_SIGMOID])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_tanh_is_torch_tanh_on_both_sides_of_the_sigmoid_threshold(rows, dtype):
    """Small tensors, and any that autograd records, take ``torch.tanh``; large ones without autograd
    ``2σ(2a) − 1``: the same values to a few ulps of 1 (absolute), the bound ``|tanh| ≤ 1`` kept at ±inf, and the
    derivative of autograd where it records."""
    torch.manual_seed(0)
    a = torch.randn(rows, 8, dtype=dtype) * 4
    eps = torch.finfo(dtype).eps
    with torch.no_grad():
        torch.testing.assert_close(fnn.tanh(a), torch.tanh(a), rtol=0, atol=4 * eps)
        edges = torch.tensor([float("inf"), -float("inf"), 0.0], dtype=dtype).repeat(rows * 8 // 3 + 1)[: rows * 8]
        assert fnn.tanh(edges).abs().max() <= 1 and (fnn.tanh(edges)[2::3] == 0).all()
    recorded = a.clone().requires_grad_(True)
    value = fnn.tanh(recorded)
    torch.testing.assert_close(value, torch.tanh(a), rtol=0, atol=4 * eps)
    (gradient,) = torch.autograd.grad(value.sum(), recorded)
    torch.testing.assert_close(gradient, 1 - torch.tanh(a) ** 2, rtol=0, atol=16 * eps)


@given(s=st.lists(st.floats(-1e30, 1e30, allow_nan=False), min_size=1, max_size=8), bound=st.floats(1e-3, 10))
def test_soft_clamp_bounds_the_scale_in_float32_whatever_the_input(s, bound):
    clamped = fnn.soft_clamp(torch.tensor(s, dtype=torch.float32), bound)
    assert (clamped.abs() <= torch.tensor(bound, dtype=torch.float32)).all()
    assert torch.isfinite(clamped.exp()).all() and (clamped.exp() > 0).all()


@given(s=st.floats(-1, 1), bound=st.floats(1, 10))
def test_soft_clamp_is_the_identity_to_third_order_near_zero(s, bound):
    """``B tanh(s/B) = s − s³/(3B²) + O(s⁵)``: the error is at most ``|s|³/(3B²)`` (alternating series), plus the
    rounding of ``2B·σ(2s/B) − B`` (how it is computed): ``σ ≈ 1/2`` is rounded to half an ulp of 1/2 (``ε/4``), the
    product ``2B·σ`` and the difference add at most half an ulp of ``2B`` each (``εB`` each): ``2.5·εB`` in all."""
    error = abs(float(fnn.soft_clamp(torch.tensor(s, dtype=F64), bound)) - s)
    assert error <= abs(s) ** 3 / (3 * bound**2) + 2.5 * torch.finfo(F64).eps * bound


@given(s=st.lists(st.floats(-1e30, 1e30, allow_nan=False), min_size=1, max_size=8), bound=st.floats(1e-3, 10))
def test_soft_clamp_is_b_tanh_and_its_negation(s, bound):
    """The sigmoid form is ``B·tanh(s/B)`` (and ``negate`` its negation) up to a few ``εB`` of rounding."""
    s = torch.tensor(s, dtype=F64)
    expected = bound * torch.tanh(s / bound)
    tolerance = 4 * torch.finfo(F64).eps * bound
    torch.testing.assert_close(fnn.soft_clamp(s, bound), expected, rtol=0, atol=tolerance)
    torch.testing.assert_close(fnn.soft_clamp(s, bound, negate=True), -expected, rtol=0, atol=tolerance)


def test_mlp_widths_context_and_zero_last_layer():
    torch.manual_seed(0)
    net = fnn.mlp(3, 5, hidden=7, depth=2, activation="tanh", context_dim=2, zero_last=True)
    assert [tuple(p.shape) for p in net.parameters()] == [(7, 5), (7,), (7, 7), (7,), (5, 7), (5,)]
    assert list(net.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert isinstance(net[1], torch.nn.Tanh)
    torch.testing.assert_close(net(torch.randn(4, 5)), torch.zeros(4, 5))  # reads [h, c]: 3 + 2 values
    assert net[0].weight.abs().sum() > 0  # only the last layer is zero: gradients reach the others


def test_zero_init_zeroes_weight_and_bias_and_returns_the_layer():
    layer = torch.nn.Linear(3, 2)
    assert fnn.zero_init(layer) is layer
    assert not layer.weight.any() and not layer.bias.any()
    no_bias = fnn.zero_init(torch.nn.Linear(3, 2, bias=False))
    assert not no_bias.weight.any()


def test_masked_linear_keeps_its_structure_whatever_the_weights():
    mask = torch.tensor([[1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    layer = fnn.MaskedLinear(mask).double()
    with torch.no_grad():
        layer.weight.normal_()
    u = torch.randn(3, dtype=F64)
    jacobian = torch.autograd.functional.jacobian(layer, u)
    assert torch.equal(jacobian != 0, mask)
    torch.testing.assert_close(jacobian, layer.masked_weight())


def test_masked_linear_caches_the_masked_weight_without_autograd_and_follows_every_change():
    torch.manual_seed(0)
    mask = torch.rand(4, 3) > 0.4
    layer, u = fnn.MaskedLinear(mask), torch.randn(5, 3)

    def agrees() -> None:
        """The layer's output is the masked product of its current weight, with and without autograd."""
        x = u.to(layer.weight.dtype)
        expected = x @ (layer.weight.detach() * mask.to(x.dtype)).T + layer.bias.detach()
        with torch.no_grad():
            torch.testing.assert_close(layer(x), expected)
            assert layer.masked_weight() is layer.masked_weight()  # cached while nothing changes
        torch.testing.assert_close(layer(x), expected)

    agrees()
    for optimizer in (torch.optim.SGD(layer.parameters(), lr=0.5), torch.optim.Adam(layer.parameters(), lr=0.5)):
        layer(u).square().sum().backward()
        optimizer.step()  # an in-place update of the weight
        agrees()
    layer.load_state_dict(fnn.MaskedLinear(mask).state_dict())
    agrees()
    layer.double()
    agrees()
    layer.float()
    agrees()
    with torch.inference_mode():  # a product made in inference mode serves later no-grad calls
        layer(u)
    agrees()


def test_masked_linear_gradients_respect_the_mask_and_frozen_weights_get_none():
    mask = torch.tensor([[1, 0], [1, 1]], dtype=torch.bool)
    layer = fnn.MaskedLinear(mask).double()
    u = torch.randn(3, 2, dtype=F64, requires_grad=True)
    with torch.no_grad():
        layer(u)  # a cached product must not stand in for the one autograd needs
    layer(u).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad[0, 1] == 0 and layer.weight.grad[1, 1] != 0
    layer.requires_grad_(False)  # frozen weights, autograd on for the input
    (gradient,) = torch.autograd.grad(layer(u).sum(), u)
    torch.testing.assert_close(gradient, layer.masked_weight().sum(0).expand(3, 2))
