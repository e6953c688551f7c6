"""maf and iaf: hand-computed layers, the MADE's autoregressive masks (with and without its skip connection), one
pass vs d passes, log-dets against autograd, mixing, options, checkpoints from when the skip was the default."""

from __future__ import annotations

import math

import pytest
import torch
from flowlab_autoregressive.bijector import MADE, AffineAutoregressive, ordering
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import flowlab
from flowlab.checkpoint import load_flow
from flowlab.checks.cases import perturb_
from flowlab.training import TrainConfig, Trainer

B = 3.0  # the default scale_bound


def clamp(s: float) -> float:
    return B * math.tanh(s / B)


def zeroed_layer(dim: int, reads: str) -> AffineAutoregressive:
    """A layer whose MADE outputs only what the test writes into its output bias and skip weights."""
    layer = AffineAutoregressive(dim, reads=reads, hidden=4, depth=1, skip="always").double()
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


@pytest.mark.parametrize(("skip", "activation"), [("always", "relu"), ("auto", "tanh")])
@pytest.mark.parametrize(("dim", "hidden", "depth"), [(1, 4, 2), (2, 1, 1), (5, 8, 2), (6, 3, 3), (7, 16, 1)])
def test_made_output_i_depends_on_inputs_before_i_and_on_each_of_them(dim, hidden, depth, skip, activation, randomize):
    """Strictly lower-triangular dependence for m and ŝ, every allowed entry nonzero: with ``skip="always"`` the skip
    connection keeps them when ReLUs are dead or hidden < d − 1 cuts hidden paths; with ``"auto"`` the MADE has the
    skip exactly where hidden < d − 1 (tanh, which no point kills, for the paths through hidden units alone)."""
    made = randomize(MADE(dim, hidden=hidden, depth=depth, activation=activation, skip=skip).double(), dim)
    assert (made.skip is not None) == (skip == "always" or hidden < dim - 1)
    u = torch.randn(dim, dtype=torch.float64)
    for output in range(2):  # m, then ŝ
        jac = torch.autograd.functional.jacobian(lambda v, k=output: made(v[None])[k][0], u)
        allowed = torch.ones(dim, dim, dtype=torch.bool).tril(-1)
        assert (jac[~allowed] == 0).all()
        assert (jac[allowed] != 0).all()


@pytest.mark.parametrize(("dim", "hidden", "context_dim", "skip"), [(5, 4, 0, False), (5, 3, 0, True),
                                                                    (5, 5, 2, False), (5, 4, 2, True)])  # fmt: skip
def test_auto_gives_the_skip_to_a_made_whose_hidden_layers_miss_a_degree(dim, hidden, context_dim, skip):
    """Degrees ``1..d−1`` are all present from ``hidden = d − 1``, and from ``hidden = d`` when conditional (the
    context's units take degree 0)."""
    assert (MADE(dim, hidden=hidden, depth=2, activation="relu", context_dim=context_dim).skip is not None) == skip


@pytest.mark.parametrize("skip", ["auto", "always"])
@pytest.mark.parametrize("flow", ["maf", "iaf"])
@pytest.mark.parametrize("dim", [1, 3, 6])
def test_sequential_and_parallel_directions_agree(flow, dim, skip, randomize):
    """The d-pass direction inverts the one-pass direction exactly, log-dets cancelling (hidden < d − 1 too)."""
    bijector = randomize(flowlab.build(flow, dim, layers=3, hidden=3, permutation="random", skip=skip), 1).double()
    z = 2 * torch.randn(16, dim, dtype=torch.float64)
    x, ladj = bijector(z)
    z_back, ladj_back = bijector.inverse(x)
    torch.testing.assert_close(z_back, z, rtol=0, atol=1e-12)
    torch.testing.assert_close(ladj_back, -ladj, rtol=0, atol=1e-12)
    x_again, _ = bijector(bijector.inverse(x)[0])
    torch.testing.assert_close(x_again, x, rtol=1e-14, atol=1e-12)  # |x| up to e^9 · |z|: relative rounding


@settings(deadline=None, max_examples=30)
@given(
    flow=st.sampled_from(["maf", "iaf"]),
    skip=st.sampled_from(["auto", "always"]),
    dim=st.integers(1, 7),
    hidden=st.integers(1, 10),
    depth=st.integers(1, 3),
    context_dim=st.sampled_from([0, 2]),
    seed=st.integers(0, 2**16),
)
def test_both_directions_invert_each_other_with_the_log_det_of_autograd(
    flow, skip, dim, hidden, depth, context_dim, seed
):
    """With and without the skip connection (float64, two perturbed layers; ``"auto"`` has it where hidden < d − 1,
    so both kinds of MADE are drawn): ``inverse(forward(z)) = z``, and
    ``forward``'s log-det is ``log|det ∂x/∂z|`` of autograd's Jacobian, ``inverse``'s its negative."""
    options = {"layers": 2, "hidden": hidden, "depth": depth, "skip": skip, "context_dim": context_dim}
    bijector = perturb_(flowlab.build(flow, dim, **options), seed).double()
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(3, dim, generator=generator, dtype=torch.float64)
    context = torch.randn(3, context_dim, generator=generator, dtype=torch.float64) if context_dim else None
    x, ladj = bijector(z, context)
    z_back, ladj_back = bijector.inverse(x, context)
    torch.testing.assert_close(z_back, z, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ladj_back, -ladj, rtol=1e-10, atol=1e-10)
    for row in range(3):
        given_context = None if context is None else context[row : row + 1]
        jac = torch.autograd.functional.jacobian(lambda v, c=given_context: bijector(v[None], c)[0][0], z[row])
        torch.testing.assert_close(ladj[row], torch.linalg.slogdet(jac).logabsdet, rtol=1e-10, atol=1e-10)


def test_a_checkpoint_from_when_the_skip_was_the_default_loads_with_its_skip(tmp_path):
    """A maf run saved before the ``skip`` option existed has skip weights and options that do not name it (its
    default, ``"auto"``, gives no skip at d = 2): it loads into a flow with the skip (the MADE takes the skip its
    state has), the same map as the trained one."""
    config = TrainConfig(flow="maf", data="moons", options={"layers": 2, "hidden": 8, "skip": "always"}, steps=3,
                         batch_size=32, eval_every=3, eval_size=64)  # fmt: skip
    trainer = Trainer(config)
    trainer.fit()
    path = tmp_path / "old.pt"
    trainer.save(str(path))
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["config"]["options"] = {"layers": 2, "hidden": 8}  # as the run recorded it: no skip option
    torch.save(checkpoint, path)
    flow, config, _ = load_flow(path)
    assert "skip" not in config.options
    assert all(
        module.skip is None
        for module in flowlab.build("maf", 2, **config.options).modules()
        if isinstance(module, MADE)
    )
    assert all(module.skip is not None for module in flow.modules() if isinstance(module, MADE))
    assert flow.state_dict().keys() == trainer.flow.state_dict().keys()
    x = torch.randn(16, 2)
    with torch.no_grad():
        torch.testing.assert_close(flow.log_prob(x), trainer.flow.eval().log_prob(x), rtol=0, atol=0)
        torch.testing.assert_close(flow.bijector(x), trainer.flow.bijector(x), rtol=0, atol=0)  # sampling's direction
    resumed = Trainer.resume(str(path), changes={"steps": 5})  # its training goes on, skip weights and Adam's state
    assert resumed.step == 3 and len(resumed.optimizer.state_dict()["state"]) == len(list(resumed.flow.parameters()))
    resumed.fit()
    assert resumed.step == 5


def test_without_the_skip_maf_has_the_parameters_of_zukos_maf():
    """At hidden 64 the default MADE has no skip up to d = 65: at d = 2 (the quality benchmark) and d = 64, maf's
    parameter count is that of zuko's ``MAF(d, transforms=4, hidden_features=(64, 64))``; ``skip="always"`` adds its
    ``2d × d`` weights per layer."""
    for dim, count in ((2, 18448), (64, 66560)):
        assert sum(p.numel() for p in flowlab.build("maf", dim).parameters()) == count
        always = flowlab.build("maf", dim, skip="always")
        assert sum(p.numel() for p in always.parameters()) == count + 4 * 2 * dim * dim


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
    """Every output depends on every input at some of 8 points, as the kit's ``mixing`` asks: without the skip
    connection a dependence goes through hidden units alone, all of whose ReLUs can be dead at a point (at d = 8 one
    random point missed some pair in 3 % of draws)."""
    stack = randomize(flowlab.build(flow, dim, layers=2, permutation=permutation, seed=dim), 3).double()
    seen = torch.zeros(dim, dim, dtype=torch.bool)
    for z in torch.randn(8, dim, generator=torch.Generator().manual_seed(dim), dtype=torch.float64):
        seen |= torch.autograd.functional.jacobian(lambda v: stack(v[None])[0][0], z) != 0
    assert seen.all()
    spec = flowlab.flow_spec(flow)
    claims = {
        (layers, activation, skip): spec.mixes_with(
            spec.resolve_options(dict(layers=layers, activation=activation, skip=skip))
        )
        for layers in (1, 2)
        for activation in ("relu", "tanh")
        for skip in ("auto", "always")
    }
    # from two layers on, where no ReLU unit dead for every input can cut a path (a smooth activation, or the skip)
    assert {key for key, mixes in claims.items() if mixes} == {
        (2, "tanh", "auto"),
        (2, "tanh", "always"),
        (2, "relu", "always"),
    }


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
        ({"skip": True}, "expected one of 'auto', 'always'"),
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
