"""The planar plugin's own tests: flowlab's whole conformance kit in one line, plus properties of its own."""

from __future__ import annotations

import torch
from flowlab_planar.bijector import PlanarLayer
from hypothesis import given, settings
from hypothesis import strategies as st

import flowlab
from flowlab.testing import conformance_tests, inputs

test_conformance = conformance_tests("planar")


@settings(deadline=None)  # the first call imports and builds; Hypothesis's default deadline is 200 ms
@given(x=inputs(st.integers(1, 5), batch=4), seed=st.integers(0, 2**16), pull=st.floats(-20.0, 20.0))
def test_the_constraint_keeps_every_layer_invertible(x, seed, pull):
    """Even with ``wᵀu`` driven far below −1, ``wᵀû > −1`` and the inverse recovers the input."""
    torch.manual_seed(seed)
    layer = PlanarLayer(x.shape[1]).double()
    with torch.no_grad():
        layer.u.copy_(layer.w * pull)
    assert float((layer.w @ layer.u_hat()).detach()) > -1
    z, _ = layer.inverse(x)
    torch.testing.assert_close(layer(z)[0], x, rtol=1e-9, atol=1e-9)


def test_it_is_registered_by_its_entry_point():
    assert flowlab.flows()["planar"].references
