"""glow: the LU-parametrised W against a hand-computed matrix, the plain W's slogdet and singular errors, ActNorm's
data-dependent initialisation (first training batch, a batch of one, the buffer in checkpoints, train then eval),
options validated."""

from __future__ import annotations

import math

import pytest
import torch
from flowlab_glow.bijector import DenseLinear, LULinear

import flowlab
from flowlab.layers import ActNorm


def hand_lu() -> LULinear:
    """``P`` swaps the two rows, ``L = [[1, 0], [0.5, 1]]``, ``U = [[-2, 1], [0, 3]]`` (sign ``(-1, +1)``, ``|s| =
    (2, 3)``): ``W = P L U = [[-1, 3.5], [-2, 1]]``, ``det W = -1·1 − 3.5·(−2) = 6``. Entries outside the
    triangles (here 99) must be ignored."""
    layer = LULinear(2).double()
    with torch.no_grad():
        layer.perm.copy_(torch.tensor([1, 0]))
        layer.lower.copy_(torch.tensor([[99.0, 99.0], [0.5, 99.0]]))
        layer.upper.copy_(torch.tensor([[99.0, 1.0], [99.0, 99.0]]))
        layer.log_abs_s.copy_(torch.tensor([2.0, 3.0]).log())
        layer.sign.copy_(torch.tensor([-1.0, 1.0]))
    return layer


def test_lu_linear_matches_the_hand_computed_matrix_and_determinant():
    layer = hand_lu()
    w = torch.tensor([[-1.0, 3.5], [-2.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(layer.matrix(), w)
    torch.testing.assert_close(layer.inverse_matrix(), torch.linalg.inv(w))
    z = torch.tensor([[1.0, 2.0], [-0.5, 0.25]], dtype=torch.float64)
    x, ladj = layer(z)
    torch.testing.assert_close(x, z @ w.T)
    torch.testing.assert_close(ladj, torch.full((2,), math.log(6.0), dtype=torch.float64))
    back, ladj_back = layer.inverse(x)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(ladj_back, -ladj)


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_lu_linear_starts_as_a_rotation_and_its_logdet_is_the_sum_of_log_s(dim, randomize):
    layer = LULinear(dim).double()
    w = layer.matrix()
    torch.testing.assert_close(w @ w.T, torch.eye(dim, dtype=torch.float64), atol=1e-6, rtol=0)  # Glow's initialisation
    randomize(layer, 1)
    z = torch.randn(4, dim, dtype=torch.float64)
    x, ladj = layer(z)
    torch.testing.assert_close(x, z @ layer.matrix().T)
    torch.testing.assert_close(ladj[0], torch.linalg.slogdet(layer.matrix()).logabsdet)
    torch.testing.assert_close(ladj[0], layer.log_abs_s.sum())


def test_dense_linear_logdet_is_slogdet_and_a_singular_w_is_refused(randomize):
    layer = randomize(DenseLinear(3).double(), 2)
    z = torch.randn(4, 3, dtype=torch.float64)
    x, ladj = layer(z)
    torch.testing.assert_close(x, z @ layer.weight.T)
    torch.testing.assert_close(ladj[0], torch.linalg.slogdet(layer.weight).logabsdet)
    torch.testing.assert_close(layer.inverse(x)[0], z)
    with torch.no_grad():
        layer.weight[:, 2] = 0.0  # a zero column: LU's last pivot is exactly 0, slogdet's sign 0
    with pytest.raises(flowlab.SingularMatrixError, match="expected an invertible W"):
        layer(z)
    with pytest.raises(flowlab.SingularMatrixError, match="lu=True"):
        layer.inverse(x)


def test_loading_weights_that_violate_the_constraints_is_a_clear_error():
    dense = DenseLinear(2)
    with pytest.raises(flowlab.SingularMatrixError, match="expected an invertible weight"):
        dense.load_state_dict({"weight": torch.tensor([[1.0, 2.0], [2.0, 4.0]])})
    lu = LULinear(2)
    state = lu.state_dict()
    state["sign"] = torch.tensor([1.0, 0.0])
    with pytest.raises(flowlab.SingularMatrixError, match=r"sign to hold only \+1 and -1"):
        lu.load_state_dict(state)
    flow = flowlab.build("glow", 2, steps=1)
    state = flow.state_dict()
    state["bijectors.0.bijectors.1.sign"] = torch.tensor([-1.0, 0.5])
    with pytest.raises(flowlab.SingularMatrixError, match=r"bijectors\.0\.bijectors\.1\.sign"):
        flow.load_state_dict(state)


def test_actnorm_initialises_from_the_first_training_batch_only():
    data = torch.randn(256, 3, dtype=torch.float64) * torch.tensor([3.0, 0.5, 1.0]) + torch.tensor([1.0, -2.0, 0.0])
    layer = ActNorm(3).double().train()
    z, ladj = layer.inverse(data)
    torch.testing.assert_close(layer.bias, data.mean(0))
    torch.testing.assert_close(layer.log_scale, data.std(0, correction=0).log())
    torch.testing.assert_close(z.mean(0), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(z.std(0, correction=0), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(ladj, (-layer.log_scale.sum()).expand(256))
    fixed = (layer.bias.clone(), layer.log_scale.clone())
    layer.inverse(data[:10] * 7)  # a second batch changes nothing
    torch.testing.assert_close((layer.bias, layer.log_scale), fixed)
    evaluated = ActNorm(3).double().eval()
    evaluated.inverse(data)  # eval mode never initialises
    assert not bool(evaluated.initialized)
    torch.testing.assert_close(evaluated.bias, torch.zeros(3, dtype=torch.float64))


def test_actnorm_on_a_batch_of_one_or_a_constant_coordinate_only_centres():
    row = torch.tensor([[2.0, -1.0]])
    layer = ActNorm(2).train()
    z, ladj = layer.inverse(row)
    torch.testing.assert_close(z, torch.zeros(1, 2))
    torch.testing.assert_close(layer.log_scale, torch.zeros(2))  # not log(0) = -inf, not log(1e-6)
    torch.testing.assert_close(ladj, torch.zeros(1))
    data = torch.stack([torch.randn(8), torch.full((8,), 5.0)], dim=1)
    layer = ActNorm(2).train()
    layer.inverse(data)
    assert layer.log_scale.detach()[1] == 0.0 and layer.bias.detach()[1] == 5.0
    assert torch.isfinite(layer.log_scale).all()


def test_actnorm_first_training_forward_fixes_the_map():
    layer = ActNorm(2).train()
    z = torch.randn(16, 2)
    x, _ = layer(z)
    assert bool(layer.initialized)
    torch.testing.assert_close(layer.inverse(x * 10)[0], x * 10)  # still the identity: no initialisation from x


def test_glow_train_then_eval_is_one_consistent_invertible_map(randomize):
    torch.manual_seed(0)
    flow = flowlab.Flow(randomize(flowlab.build("glow", 3, steps=3, hidden=16), 3).double())
    data = torch.randn(64, 3, dtype=torch.float64) * 4 + 10
    flow.train()
    first = flow.log_prob(data)  # every ActNorm initialises, in order, from what reaches it
    actnorms = [m for m in flow.modules() if isinstance(m, ActNorm)]
    assert len(actnorms) == 3 and all(bool(a.initialized) for a in actnorms)
    z, _ = flow.bijector.inverse(data)  # the outermost ActNorm standardised the data
    standardised, _ = actnorms[-1].inverse(data)
    torch.testing.assert_close(standardised.mean(0), torch.zeros(3, dtype=torch.float64))
    flow.eval()
    torch.testing.assert_close(flow.log_prob(data), first)
    torch.testing.assert_close(flow.log_prob(data[:1]), first[:1])  # batch-independent
    x, ladj = flow.bijector(z)
    torch.testing.assert_close(x, data)
    torch.testing.assert_close(ladj, -flow.bijector.inverse(data)[1])


def test_the_initialisation_is_saved_in_checkpoints():
    trained = flowlab.build("glow", 2, steps=2).train()
    data = torch.randn(32, 2) * 3 + 1
    trained.inverse(data)
    state = trained.state_dict()
    assert state["bijectors.1.bijectors.2.initialized"].item() is True
    restored = flowlab.build("glow", 2, steps=2)
    restored.load_state_dict(state)
    restored.train()
    other = torch.randn(8, 2)
    torch.testing.assert_close(restored.inverse(other), trained.inverse(other))  # no second initialisation


@pytest.mark.parametrize("lu", [True, False])
def test_every_output_depends_on_every_input_after_one_step(lu, randomize):
    step = randomize(flowlab.build("glow", 5, steps=1, lu=lu), 3).double()
    z = torch.randn(5, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: step(v[None])[0][0], z)
    assert (jac.abs() > 1e-12).all()
    torch.testing.assert_close(step(z[None])[1][0], torch.linalg.slogdet(jac).logabsdet)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"steps": 0}, "steps=0 is below its minimum"),
        ({"lu": "yes"}, "lu='yes' is not allowed"),
        ({"activation": "gelu"}, "activation='gelu' is not allowed"),
        ({"scale_bound": 0.0}, "scale_bound=0.0 is below its minimum"),
        ({"hiden": 8}, "did you mean 'hidden'"),
    ],
)
def test_options_are_validated(options, message):
    with pytest.raises(flowlab.OptionError, match=message):
        flowlab.build("glow", 2, **options)


def test_one_dimension_is_refused():
    with pytest.raises(flowlab.FlowlabError, match="2"):
        flowlab.build("glow", 1)


@pytest.mark.parametrize("dim", [4, 8, 33])
def test_lu_linear_takes_a_few_rows_through_its_factors_and_a_batch_through_its_matrix_the_same_map(dim, randomize):
    layer = randomize(LULinear(dim).double(), 3)
    few = torch.randn(dim // 4, dim, dtype=torch.float64)  # at most d/4 rows: the factors, row by row
    many = torch.cat([few, torch.randn(dim, dim, dtype=torch.float64)])  # the matrix
    for direction in (layer.forward, layer.inverse):
        out_few, ladj_few = direction(few)
        out_many, ladj_many = direction(many)
        torch.testing.assert_close(out_few, out_many[: len(few)], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(ladj_few, ladj_many[: len(few)])
    torch.testing.assert_close(layer.inverse(layer(few)[0])[0], few, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer(few)[0], few @ layer.matrix().T, rtol=1e-12, atol=1e-12)
