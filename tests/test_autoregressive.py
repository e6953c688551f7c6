"""maf and iaf: hand-computed layers, the MADE's autoregressive masks, one pass vs d passes, mixing, options."""

from __future__ import annotations

import math

import pytest
import torch
from flowlab_autoregressive.bijector import MADE, AffineAutoregressive, ordering
from torch import nn

import flowlab

B = 3.0  # the default scale_bound


def clamp(s: float) -> float:
    return B * math.tanh(s / B)


def zeroed_layer(dim: int, reads: str) -> AffineAutoregressive:
    """A layer whose MADE outputs only what the test writes into its output bias and skip weights."""
    layer = AffineAutoregressive(dim, reads=reads, hidden=4, depth=1).double()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.zero_()
    return layer


def set_skip(layer: AffineAutoregressive, bias: list[float], skip: dict[tuple[int, int], float]) -> None:
    """Output bias ``[m_1..m_d, ŝ_1..ŝ_d]`` and skip weights ``{(output row, input): w}``."""
    with torch.no_grad():
        layer.made.out.bias.copy_(torch.tensor(bias))
        for (row, column), weight in skip.items():
            layer.made.skip.weight[row, column] = weight


@pytest.mark.parametrize("reads", ["x", "z"])
def test_on_r1_a_layer_is_the_elementwise_affine_map(reads):
    layer = zeroed_layer(1, reads)
    set_skip(layer, [0.5, 4.0], {})  # m = 0.5, ŝ = 4 -> s = 3 tanh(4/3)
    z = torch.tensor([[-2.0], [0.0], [1.5]], dtype=torch.float64)
    x, ladj = layer(z)
    s = clamp(4.0)
    torch.testing.assert_close(x, (z + 0.5) * math.exp(s))
    torch.testing.assert_close(ladj, torch.full((3,), s, dtype=torch.float64))
    z_back, ladj_inverse = layer.inverse(x)
    torch.testing.assert_close(z_back, z)
    torch.testing.assert_close(ladj_inverse, -ladj)


def test_maf_layer_by_hand_conditions_on_x():
    """x_1 = (z_1 + m_1) e^{s_1}, x_2 = (z_2 + a x_1) e^{s_2(x_1)} with s_2 = B tanh(b x_1 / B)."""
    layer = zeroed_layer(2, "x")
    m1, s1_raw, a, b = 0.3, -0.7, 0.8, 0.5
    set_skip(layer, [m1, 0.0, s1_raw, 0.0], {(1, 0): a, (3, 0): b})
    z1, z2 = 1.2, -0.4
    x1 = (z1 + m1) * math.exp(clamp(s1_raw))
    s2 = clamp(b * x1)
    x2 = (z2 + a * x1) * math.exp(s2)
    x, ladj = layer(torch.tensor([[z1, z2]], dtype=torch.float64))
    torch.testing.assert_close(x, torch.tensor([[x1, x2]], dtype=torch.float64))
    torch.testing.assert_close(ladj, torch.tensor([clamp(s1_raw) + s2], dtype=torch.float64))


def test_iaf_layer_by_hand_conditions_on_z():
    """x_1 = (z_1 + m_1) e^{s_1}, x_2 = (z_2 + a z_1) e^{s_2(z_1)}."""
    layer = zeroed_layer(2, "z")
    m1, s1_raw, a, b = 0.3, -0.7, 0.8, 0.5
    set_skip(layer, [m1, 0.0, s1_raw, 0.0], {(1, 0): a, (3, 0): b})
    z1, z2 = 1.2, -0.4
    x1 = (z1 + m1) * math.exp(clamp(s1_raw))
    x2 = (z2 + a * z1) * math.exp(clamp(b * z1))
    x, ladj = layer(torch.tensor([[z1, z2]], dtype=torch.float64))
    torch.testing.assert_close(x, torch.tensor([[x1, x2]], dtype=torch.float64))
    torch.testing.assert_close(ladj, torch.tensor([clamp(s1_raw) + clamp(b * z1)], dtype=torch.float64))


@pytest.mark.parametrize(("dim", "hidden", "depth"), [(1, 4, 2), (2, 1, 1), (5, 8, 2), (6, 3, 3), (7, 16, 1)])
def test_made_output_i_depends_on_inputs_before_i_and_on_each_of_them(dim, hidden, depth, randomize):
    """Strictly lower-triangular dependence for m and ŝ, every allowed entry nonzero (the skip connection keeps
    them when hidden < d − 1 cuts hidden paths)."""
    made = randomize(MADE(dim, hidden=hidden, depth=depth, activation="relu").double(), dim)
    u = torch.randn(dim, dtype=torch.float64)
    for output in range(2):  # m, then ŝ
        jac = torch.autograd.functional.jacobian(lambda v, k=output: made(v[None])[k][0], u)
        allowed = torch.ones(dim, dim, dtype=torch.bool).tril(-1)
        assert (jac[~allowed] == 0).all()
        assert (jac[allowed] != 0).all()


@pytest.mark.parametrize("flow", ["maf", "iaf"])
@pytest.mark.parametrize("dim", [1, 3, 6])
def test_sequential_and_parallel_directions_agree(flow, dim, randomize):
    """The d-pass direction inverts the one-pass direction exactly, log-dets cancelling (hidden < d − 1 too)."""
    bijector = randomize(flowlab.build(flow, dim, layers=3, hidden=3, permutation="random"), 1).double()
    z = 2 * torch.randn(16, dim, dtype=torch.float64)
    x, ladj = bijector(z)
    z_back, ladj_back = bijector.inverse(x)
    torch.testing.assert_close(z_back, z, rtol=0, atol=1e-12)
    torch.testing.assert_close(ladj_back, -ladj, rtol=0, atol=1e-12)
    x_again, _ = bijector(bijector.inverse(x)[0])
    torch.testing.assert_close(x_again, x, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("flow", "one_pass", "dim_passes"), [("maf", "inverse", "forward"), ("iaf", "forward", "inverse")]
)
def test_which_direction_is_one_pass(flow, one_pass, dim_passes):
    dim, layers = 5, 3
    bijector = flowlab.build(flow, dim, layers=layers)
    calls = []  # passes through a MADE's network: its last hidden activation runs once per pass
    for module in bijector.modules():
        if isinstance(module, MADE):
            module.hidden[-1].register_forward_hook(lambda *_: calls.append(1))
    points = torch.randn(4, dim)
    getattr(bijector, one_pass)(points)
    assert len(calls) == layers
    calls.clear()
    getattr(bijector, dim_passes)(points)
    assert len(calls) == layers * dim


@pytest.mark.parametrize("flow", ["maf", "iaf"])
def test_one_layer_has_a_lower_triangular_jacobian_with_diagonal_exp_s(flow, randomize):
    dim = 4
    layer = randomize(flowlab.build(flow, dim, layers=1), 2).double()
    z = torch.randn(dim, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], z)
    strictly_lower = torch.ones(dim, dim, dtype=torch.bool).tril(-1)
    assert (jac.triu(1) == 0).all()
    assert (jac[strictly_lower] != 0).all()
    torch.testing.assert_close(jac.diagonal().log().sum(), layer(z[None])[1][0])


@pytest.mark.parametrize("flow", ["maf", "iaf"])
@pytest.mark.parametrize("permutation", ["reverse", "random"])
@pytest.mark.parametrize("dim", [2, 3, 5, 8])
def test_two_layers_mix_every_coordinate(flow, permutation, dim, randomize):
    stack = randomize(flowlab.build(flow, dim, layers=2, permutation=permutation, seed=dim), 3).double()
    z = torch.randn(dim, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: stack(v[None])[0][0], z)
    assert (jac != 0).all()
    assert flowlab.flow_spec(flow).mixes_with({"layers": 2}) and not flowlab.flow_spec(flow).mixes_with({"layers": 1})


def test_random_ordering_is_seeded_and_puts_the_last_coordinate_first():
    perms = [ordering(6, "random", torch.Generator().manual_seed(s)).perm for s in (0, 0, 1)]
    assert all(int(p[0]) == 5 for p in perms)
    assert torch.equal(perms[0], perms[1]) and not torch.equal(perms[0], perms[2])
    assert ordering(6, "reverse", torch.Generator()).perm.tolist() == [5, 4, 3, 2, 1, 0]


@pytest.mark.parametrize("flow", ["maf", "iaf"])
def test_identity_init_starts_as_the_identity(flow):
    bijector = flowlab.build(flow, 4)
    z = torch.randn(8, 4)
    x, ladj = bijector(z)
    torch.testing.assert_close(x, z.flip(1))  # 4 identity layers with 3 reversals between them
    assert (ladj == 0).all()


@pytest.mark.parametrize("flow", ["maf", "iaf"])
def test_bounded_scale_keeps_float32_finite_at_huge_inputs(flow, randomize):
    bijector = randomize(flowlab.build(flow, 32, layers=4, identity_init=False), 4)
    for direction in ("forward", "inverse"):
        out, ladj = getattr(bijector, direction)(1e3 * torch.randn(8, 32))
        assert torch.isfinite(out).all() and torch.isfinite(ladj).all()
        assert ladj.abs().max() <= 4 * 32 * 3.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hidden": 0}, "option hidden=0 is below its minimum 1"),
        ({"depth": 0}, "option depth=0 is below its minimum 1"),
        ({"layers": 0}, "option layers=0 is below its minimum 1"),
        ({"scale_bound": 0.0}, "option scale_bound=0.0 is below its minimum 0.001"),
        ({"activation": "sigmoid"}, "expected one of 'relu', 'tanh', 'elu', 'silu'"),
        ({"permutation": "none"}, "expected one of 'reverse', 'random'"),
        ({"seed": -1}, "option seed=-1 is below its minimum 0"),
        ({"hidden": 8.5}, "option hidden expects a int, got float 8.5"),
        ({"order": "reverse"}, "unknown option 'order'"),
    ],
)
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(flowlab.OptionError, match=message.replace("(", r"\(")):
        flowlab.build("maf", 3, **options)


def test_bad_direct_construction_and_bad_points_are_clear_errors():
    with pytest.raises(flowlab.OptionError, match="expected reads='x' \\(MAF\\) or 'z' \\(IAF\\), got 'y'"):
        AffineAutoregressive(3, reads="y")  # type: ignore[arg-type]
    with pytest.raises(flowlab.ShapeError, match="expected dim >= 1, got 0"):
        AffineAutoregressive(0, reads="x")
    with pytest.raises(flowlab.OptionError, match="maf: expected an integer dim >= 1, got 0"):
        flowlab.build("maf", 0)
    with pytest.raises(flowlab.OptionError, match="expected permutation 'reverse' or 'random', got 'none'"):
        ordering(3, "none", torch.Generator())
    flow = flowlab.Flow(flowlab.build("iaf", 3))
    with pytest.raises(
        flowlab.ShapeError, match=r"expected last dimension 3 \(shape \[batch, 3\]\), got shape \[4, 2\]"
    ):
        flow.log_prob(torch.zeros(4, 2))
    with pytest.raises(flowlab.NonFiniteError, match="expected finite values"):
        flow.log_prob(torch.full((2, 3), math.nan))


def test_flows_are_registered_with_their_directions_in_the_summary():
    maf, iaf = flowlab.flow_spec("maf"), flowlab.flow_spec("iaf")
    assert "density (inverse) in 1 pass" in maf.summary and "sampling (forward) in d passes" in maf.summary
    assert "sampling (forward) in 1 pass" in iaf.summary and "density (inverse) in d passes" in iaf.summary
    assert "MAF reads the data (`x`) side" in maf.explanation and "IAF reads the noise (`z`) side" in iaf.explanation
    assert maf.min_dim == iaf.min_dim == 1
    assert isinstance(flowlab.build("maf", 1), nn.Module)
