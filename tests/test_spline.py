"""The rational-quadratic spline on its own (a hand-computed case, nflows, monotone, inverse, log-det, tails, knots,
bad parameters) and the ``nsf`` flow (identity at start, options, mixing, the kit's properties in the tails)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from flowlab_spline import SPEC
from flowlab_spline.bijector import SplineCoupling
from flowlab_spline.spline import (
    DERIVATIVE_SHIFT,
    MIN_DERIVATIVE,
    MIN_HEIGHT,
    MIN_WIDTH,
    SplineParameterError,
    constrain,
    rational_quadratic,
)

import flowlab
from flowlab.checks import Case, check_spec
from flowlab.checks.runner import run_property

F64 = torch.float64
Params = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def spline(raw_scale: float = 1.0, bins: int = 8, n: int = 1, seed: int = 0) -> Params:
    """``n`` random splines' widths, heights and derivatives (``[n, K]``, ``[n, K]``, ``[n, K − 1]``)."""
    raw = torch.randn(n, 3 * bins - 1, generator=torch.Generator().manual_seed(seed), dtype=F64) * raw_scale
    return constrain(raw, bins)


def shared(params: Params, points: int) -> Params:
    """One spline's parameters repeated for ``points`` inputs."""
    widths, heights, derivatives = (p.expand(points, -1) for p in params)
    return widths, heights, derivatives


def derivative(x: torch.Tensor, params: Params, inverse: bool = False, bound: float = 5.0) -> torch.Tensor:
    """Elementwise ``dy/dx`` by autograd (the spline acts on each entry alone, so the gradient of the sum is it)."""
    x = x.detach().requires_grad_(True)
    y, _ = rational_quadratic(x, *params, inverse=inverse, bound=bound)
    (grad,) = torch.autograd.grad(y.sum(), x)
    return grad


def test_a_hand_computed_bin():
    """K = 2 on [-1, 1], widths ½ ½, heights ¼ ¾, interior derivative 1. At x = −½ (ξ = ½ in bin 0: x_0 = y_0 = −1,
    w = 1, h = ½, s = ½, δ_0 = δ_1 = 1): y = −1 + h(s/4 + δ_0/4) / (s + (δ_1 + δ_0 − 2s)/4) = −1 + 0.1875/0.75
    = −0.75, and dy/dx = s²(δ_1/4 + 2s/4 + δ_0/4) / 0.75² = 0.25 · 0.75 / 0.5625 = 1/3."""
    params = (
        torch.tensor([[0.5, 0.5]], dtype=F64),
        torch.tensor([[0.25, 0.75]], dtype=F64),
        torch.ones(1, 1, dtype=F64),
    )
    y, log_slope = rational_quadratic(torch.tensor([-0.5], dtype=F64), *params, bound=1.0)
    torch.testing.assert_close(y, torch.tensor([-0.75], dtype=F64), rtol=0, atol=1e-15)
    torch.testing.assert_close(log_slope, torch.tensor([math.log(1 / 3)], dtype=F64), rtol=0, atol=1e-15)
    x, log_inverse = rational_quadratic(y, *params, inverse=True, bound=1.0)
    torch.testing.assert_close(x, torch.tensor([-0.5], dtype=F64), rtol=0, atol=1e-15)
    torch.testing.assert_close(log_inverse, torch.tensor([math.log(3)], dtype=F64), rtol=0, atol=1e-15)


def test_agrees_with_nflows():
    """nflows' spline with linear tails is the same map; its raw derivatives lack our shift (ours: raw 0 -> δ = 1)."""
    nflows_splines = pytest.importorskip("nflows.transforms.splines.rational_quadratic")
    bins, n = 8, 2000
    raw = torch.randn(n, 3 * bins - 1, generator=torch.Generator().manual_seed(1), dtype=F64)
    x = torch.linspace(-7, 7, n, dtype=F64)
    ours = rational_quadratic(x, *constrain(raw, bins), bound=5.0)
    theirs = nflows_splines.unconstrained_rational_quadratic_spline(
        x, raw[:, :bins], raw[:, bins : 2 * bins], raw[:, 2 * bins :] + DERIVATIVE_SHIFT, tail_bound=5.0
    )
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_strictly_increasing_with_the_autograd_derivative_everywhere():
    x = torch.linspace(-7, 7, 4001, dtype=F64)
    params = shared(spline(raw_scale=2.0), x.numel())
    y, log_slope = rational_quadratic(x, *params)
    assert bool((y[1:] > y[:-1]).all())
    torch.testing.assert_close(log_slope, derivative(x, params).log(), rtol=0, atol=1e-12)
    _, log_inverse = rational_quadratic(y, *params, inverse=True)
    torch.testing.assert_close(log_inverse, derivative(y, params, inverse=True).log(), rtol=0, atol=1e-10)


def test_inverse_is_exact_in_float64():
    """Random splines (one per point), inputs across the bins and the tails: S⁻¹(S(x)) = x and S(S⁻¹(y)) = y to 1e-10,
    and the two log-derivatives cancel."""
    n = 5000
    params = spline(n=n, seed=2)
    x = torch.empty(n, dtype=F64).uniform_(-6, 6, generator=torch.Generator().manual_seed(3))
    y, log_slope = rational_quadratic(x, *params)
    back, log_inverse = rational_quadratic(y, *params, inverse=True)
    torch.testing.assert_close(back, x, rtol=0, atol=1e-10)
    torch.testing.assert_close(log_inverse, -log_slope, rtol=0, atol=1e-10)
    again, _ = rational_quadratic(rational_quadratic(x, *params, inverse=True)[0], *params)
    torch.testing.assert_close(again, x, rtol=0, atol=1e-10)


@pytest.mark.parametrize("inverse", [False, True])
def test_identity_outside_the_bound_even_far_out(inverse):
    x = torch.tensor([-1e30, -1e3, -5.0 - 1e-12, 5.0 + 1e-12, 7.5, 1e30], dtype=F64)
    out, log_slope = rational_quadratic(x, *shared(spline(raw_scale=3.0), x.numel()), inverse=inverse, bound=5.0)
    assert torch.equal(out, x)
    assert torch.equal(log_slope, torch.zeros_like(x))


def test_continuous_with_its_derivative_at_every_knot_and_at_the_tails():
    """Just left and right of each knot (the bounds included, where the tails start) the spline takes the knot's
    value and its derivative parameter: y_k and δ_k (1 at ±B, the tails' slope)."""
    bound, eps = 5.0, 1e-12
    widths, heights, derivatives = params = spline(raw_scale=2.0, seed=4)

    def knots(fractions: torch.Tensor) -> torch.Tensor:
        return (
            torch.cat([torch.zeros(1, dtype=F64), fractions[0].cumsum(0)[:-1], torch.ones(1, dtype=F64)]) * 2 * bound
            - bound
        )

    x_knots, y_knots = knots(widths), knots(heights)
    deltas = torch.cat([torch.ones(1, dtype=F64), derivatives[0], torch.ones(1, dtype=F64)])
    both = shared(params, x_knots.numel())
    for side in (x_knots - eps, x_knots + eps):
        torch.testing.assert_close(rational_quadratic(side, *both)[0], y_knots, rtol=0, atol=1e-9)
        torch.testing.assert_close(derivative(side, both), deltas, rtol=1e-6, atol=0)


def test_constrain_gives_the_identity_at_zero_and_keeps_the_minima():
    bins = 8
    widths, heights, derivatives = constrain(torch.zeros(3, 3 * bins - 1, dtype=F64), bins)
    x = torch.tensor([-4.9, 0.3, 4.2], dtype=F64)
    y, log_slope = rational_quadratic(x, widths, heights, derivatives)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-14)
    torch.testing.assert_close(log_slope, torch.zeros_like(x), rtol=0, atol=1e-14)
    extreme = torch.tensor([(-1) ** i * 50.0 for i in range(3 * bins - 1)], dtype=F64)
    widths, heights, derivatives = constrain(extreme, bins)
    assert float(widths.min()) >= MIN_WIDTH and float(heights.min()) >= MIN_HEIGHT
    assert float(derivatives.min()) >= MIN_DERIVATIVE
    torch.testing.assert_close(widths.sum(-1), torch.tensor(1.0, dtype=F64))


def test_bad_parameters_are_clear_errors():
    x = torch.zeros(3, dtype=F64)
    widths, heights, derivatives = shared(spline(), 3)
    with pytest.raises(flowlab.ShapeError, match=r"derivatives of shape \[\*x.shape, K − 1\]"):
        rational_quadratic(x, widths, heights, widths)
    with pytest.raises(flowlab.ShapeError, match="3·bins − 1 = 23"):
        constrain(torch.zeros(3, 24, dtype=F64), 8)
    with pytest.raises(flowlab.DtypeError, match="widths of x's floating dtype"):
        rational_quadratic(x, widths.float(), heights, derivatives)
    negative = widths.clone()
    negative[0, 0] = -negative[0, 0]
    with pytest.raises(SplineParameterError, match="positive, finite widths"):
        rational_quadratic(x, negative, heights, derivatives)
    with pytest.raises(SplineParameterError, match="summing to 1"):
        rational_quadratic(x, widths, heights * 1.1, derivatives)
    with pytest.raises(SplineParameterError, match="positive, finite derivatives"):
        rational_quadratic(x, widths, heights, derivatives * 0)
    with pytest.raises(SplineParameterError, match="positive bound"):
        rational_quadratic(x, widths, heights, derivatives, bound=0.0)
    assert issubclass(SplineParameterError, flowlab.FlowlabError)


def test_nsf_starts_as_the_identity_and_refuses_bad_options():
    flow = flowlab.build("nsf", 3)
    z = torch.randn(16, 3)
    x, log_det = flow(z)
    torch.testing.assert_close(x, z, rtol=0, atol=1e-6)
    torch.testing.assert_close(log_det, torch.zeros(16), rtol=0, atol=1e-6)
    for options, message in (
        ({"bins": 1}, "bins=1 is below its minimum 2"),
        ({"bound": 0.0}, "bound=0.0 is below its minimum"),
        ({"layers": 0}, "layers=0 is below its minimum 1"),
        ({"activation": "gelu"}, "activation='gelu' is not allowed"),
        ({"tails": "linear"}, "unknown option 'tails'"),
    ):
        with pytest.raises(flowlab.OptionError, match=message):
            flowlab.build("nsf", 3, **options)
    with pytest.raises(flowlab.FlowlabError, match="2"):
        flowlab.build("nsf", 1)


def test_far_outside_the_tails_is_fine_in_a_flow(randomize):
    """A point far outside [-B, B] passes every layer unchanged: the density is the base density there."""
    flow = flowlab.Flow(randomize(flowlab.build("nsf", 2, hidden=8), 0).double())
    x = torch.tensor([[1e6, -1e8], [30.0, -20.0]], dtype=F64)
    base = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)
    torch.testing.assert_close(flow.log_prob(x), base, rtol=1e-15, atol=0)


def test_a_parameter_only_the_interior_uses_has_a_zero_gradient_in_the_tails(randomize):
    """Every conditioner parameter keeps a path to log_prob at points in the tails (gradient 0, not None): the kit's
    `gradients` check tells the two apart."""
    flow = flowlab.Flow(randomize(flowlab.build("nsf", 3, hidden=8, identity_init=False), 0).double()).train()
    x = torch.full((4, 3), 40.0, dtype=F64)
    parameters = list(flow.parameters())
    grads = torch.autograd.grad(flow.log_prob(x).sum(), parameters, allow_unused=True)
    assert all(g is not None and bool((g == 0).all()) for g in grads)


def dependence(bijector: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    jac = torch.autograd.functional.jacobian(lambda v: bijector(v[None])[0][0], z)
    return jac != 0


@pytest.mark.parametrize("dim", [2, 3, 4, 5, 6, 7, 16, 33])
def test_four_layers_mix_every_dimension(dim, randomize):
    """Inside the bound every output depends on every input from 4 layers on (3 for even d and d = 3, 2 for d = 2),
    and not with one layer fewer. The initial weights are seeded: with hidden 8, about one global seed in 40 leaves
    an entry at exactly 0 through dead ReLUs at this point (d = 16)."""
    torch.manual_seed(dim)
    z = torch.randn(dim, generator=torch.Generator().manual_seed(dim), dtype=F64)
    fewest = {2: 2, 3: 3}.get(dim, 3 if dim % 2 == 0 else 4)
    assert dependence(randomize(flowlab.build("nsf", dim, layers=fewest, hidden=8), dim).double(), z).all()
    if dim > 2:
        assert not dependence(randomize(flowlab.build("nsf", dim, layers=fewest - 1, hidden=8), dim).double(), z).all()


def test_a_reversal_between_layers_would_not_mix_odd_dimensions(randomize):
    """With the half split, reversing d = 5 keeps coordinate 2 moved by every layer and kept by none."""
    layers: list[torch.nn.Module] = []
    for k in range(6):
        if k:
            layers.append(flowlab.Permutation.reverse(5))
        layers.append(SplineCoupling(5, bins=8, bound=5.0, hidden=8, depth=1, activation="relu", identity_init=False))
    stack = randomize(flowlab.Compose(layers), 0).double()
    depends = dependence(stack, torch.randn(5, dtype=F64))
    assert not depends[[0, 1, 3, 4], 2].any()


def test_the_identity_tails_make_jacobian_entries_zero_at_some_points(randomize):
    """Why nsf does not declare `mixes` to the kit: at z_0 = 6.16 > B, z_0 stays in the tails in every layer that
    moves it, so ∂x_1/∂z_1 = 0 there, though x_1 depends on z_1 elsewhere (the kit's mixing check looks at the
    case's points only)."""
    nsf = randomize(flowlab.build("nsf", 2, hidden=8, identity_init=False), 0).double()
    outside = dependence(nsf, torch.tensor([6.16, -1.17], dtype=F64))
    assert not outside[1, 1] and dependence(nsf, torch.tensor([0.5, -1.17], dtype=F64)).all()


@pytest.mark.parametrize("prop", ["invertibility", "logdet", "gradients", "batch_independence", "dtype_device"])
def test_the_kits_properties_hold_where_most_inputs_are_in_the_tails(prop):
    """`flowlab check nsf` draws inputs of scale ≤ 4 against B = 5; here B = 1 and scale 3 put most of them (and
    the knots' neighbourhoods) in the tails and at the junction."""
    spec = replace(SPEC, check_options={"hidden": 8, "depth": 1, "bound": 1.0})
    for seed, identity_init in ((0, True), (1, False)):
        options = {**spec.check_options, "activation": "tanh", "identity_init": identity_init}
        case = Case(dim=3, batch=8, seed=seed, options=options, scale=3.0)
        run = run_property(check_spec(prop), spec, case=case)
        assert run.status == "passed", run.detail
