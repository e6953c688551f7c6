"""Residual flows: the math on cases small enough to check by hand, the estimator, the inverse, options, errors."""

from __future__ import annotations

import math

import pytest
import torch
from flowlab_residual.bijector import ResidualBlock, roulette_weights
from flowlab_residual.lipschitz import LipschitzError, SpectralLinear

import flowlab


def set_weights(block: ResidualBlock, *layers: tuple[list[list[float]], list[float]]) -> ResidualBlock:
    with torch.no_grad():
        for linear, (weight, bias) in zip(block.g.linears, layers, strict=True):
            assert isinstance(linear, SpectralLinear)
            linear.weight.copy_(torch.tensor(weight))
            linear.bias.copy_(torch.tensor(bias))
    return block.double().eval()


def hand_block(**options) -> ResidualBlock:
    """d = 1, one hidden unit, ELU: ``g(z) = 0.6 · elu(0.5 z + 0.1) − 0.2``."""
    block = ResidualBlock(1, hidden=1, depth=1, activation="elu", **options)
    return set_weights(block, ([[0.5]], [0.1]), ([[0.6]], [-0.2]))


def test_a_one_dimensional_block_by_hand():
    block = hand_block()
    z = torch.tensor([[1.0], [-2.0]], dtype=torch.float64)
    x, ladj = block(z)
    # a = 0.5 z + 0.1: 0.6 (elu' = 1) and -0.9 (elu' = exp(-0.9)); log det = log(1 + 0.6 · 0.5 · elu'(a))
    expected_x = [1 + 0.6 * 0.6 - 0.2, -2 + 0.6 * (math.exp(-0.9) - 1) - 0.2]
    torch.testing.assert_close(x[:, 0], torch.tensor(expected_x, dtype=torch.float64))
    expected = [math.log(1.3), math.log(1 + 0.3 * math.exp(-0.9))]
    torch.testing.assert_close(ladj, torch.tensor(expected, dtype=torch.float64))
    back, inverse_ladj = block.inverse(x)
    torch.testing.assert_close(back, z, rtol=0, atol=1e-10 * (1 + float(x.detach().abs().max())))  # the stated bound
    torch.testing.assert_close(inverse_ladj, -ladj)


def test_spectral_normalisation_rescales_only_weights_above_coeff():
    block = ResidualBlock(1, hidden=1, depth=1, activation="elu", coeff=0.9)
    set_weights(block, ([[2.0]], [0.0]), ([[0.6]], [0.0]))
    (first, _), (second, _) = block.g.weights().layers
    torch.testing.assert_close(first, torch.tensor([[0.9]], dtype=torch.float64))  # 2 · 0.9 / 2
    torch.testing.assert_close(second, torch.tensor([[0.6]], dtype=torch.float64))  # already below coeff


@pytest.mark.parametrize("activation", ["lipswish", "elu"])
def test_every_normalised_weight_and_the_jacobian_of_g_respect_the_bound(activation, randomize):
    block = randomize(ResidualBlock(3, hidden=8, depth=2, activation=activation, coeff=0.8), 1).double()
    weights = block.g.weights()
    for weight, _ in weights.layers:
        assert float(torch.linalg.matrix_norm(weight.detach(), 2)) <= 0.8 * (1 + 1e-12)
    assert weights.lipschitz <= 0.8**3 * (1 + 1e-12)
    z = torch.randn(4, 3, dtype=torch.float64) * 3
    _, derivatives = block.g.evaluate(z, weights)
    closed_form = block.jacobian_g(z, weights, derivatives)
    for row in range(4):
        autograd = torch.autograd.functional.jacobian(lambda v: block.g.evaluate(v[None], weights)[0][0], z[row])
        torch.testing.assert_close(closed_form[row], autograd)
        assert float(torch.linalg.matrix_norm(autograd, 2)) <= 0.8**3


def test_roulette_weights_undo_the_probability_of_each_term():
    # two exact terms, then M = 0 (row 0) and M = 3 (row 1) extra ones, each divided by P(M ≥ k − 2) = 0.5^(k − 2)
    weights = roulette_weights(torch.tensor([0.0, 3.0]), 2, 0.5, 5)
    torch.testing.assert_close(weights, torch.tensor([[1, 1, 0, 0, 0], [1, 1, 2, 4, 8]], dtype=torch.float64))
    # E[weight] = 1 for every term: over the exact distribution of M (truncated where its mass is below 1e-12)
    m = torch.arange(0, 60, dtype=torch.float64)
    mass = 0.4 * 0.6**m
    expected = (roulette_weights(m, 2, 0.4, 8) * mass[:, None]).sum(dim=0)
    torch.testing.assert_close(expected, torch.ones(8, dtype=torch.float64))


def test_the_roulette_estimate_is_unbiased_and_drawn_from_the_seeded_generator(randomize):
    def flow(seed: int) -> torch.nn.Module:
        torch.manual_seed(0)
        bijector = flowlab.build("residual", 2, blocks=2, hidden=8, seed=seed)
        return randomize(bijector, 3).double().train()

    z = torch.tensor([[0.7, -1.3]], dtype=torch.float64)
    with torch.no_grad():
        estimates = flow(5)(z.expand(8192, 2).clone())[1]
        exact = flow(5).eval()(z)[1]
        again = flow(5)(z.expand(8192, 2).clone())[1]
        other = flow(6)(z.expand(8192, 2).clone())[1]
    standard_error = float(estimates.std()) / math.sqrt(8192)
    assert abs(float(estimates.mean()) - float(exact[0])) <= 5 * standard_error
    torch.testing.assert_close(estimates, again, rtol=0, atol=0)  # same seed, same draws
    assert not torch.equal(estimates, other)


def test_eval_mode_exact_is_deterministic_and_eval_roulette_is_an_estimate(randomize):
    bijector = randomize(flowlab.build("residual", 2, blocks=1, hidden=8, eval_logdet="roulette"), 1).double().eval()
    z = torch.randn(3, 2, dtype=torch.float64)
    with torch.no_grad():
        first, second = bijector(z)[1], bijector(z)[1]
    assert not torch.equal(first, second)  # a fresh draw per call
    exact = randomize(flowlab.build("residual", 2, blocks=1, hidden=8), 1).double().eval()
    with torch.no_grad():
        torch.testing.assert_close(exact(z)[1], exact(z)[1], rtol=0, atol=0)


def slow_block(**options) -> ResidualBlock:
    """d = 1, ``g(z) = 0.81 · elu(z / 0.9)``: a contraction of rate 0.81 = coeff² for z > 0, at the bound."""
    block = ResidualBlock(1, hidden=1, depth=1, activation="elu", coeff=0.9, **options)
    return set_weights(block, ([[0.9]], [0.0]), ([[0.9]], [0.0]))


def test_the_fixed_point_inverse_meets_its_tolerance_row_by_row():
    block = slow_block()
    z = torch.tensor([[3.0], [-0.5]], dtype=torch.float64)
    with torch.no_grad():
        x, _ = block(z)
        back, _ = block.inverse(x)
        alone, _ = block.inverse(x[1:])
    assert float((back - z).abs().max()) <= 1e-10 * (1 + float(x.abs().max()))
    torch.testing.assert_close(alone, back[1:], rtol=0, atol=0)  # a converged row stops: others do not move it


def test_an_inverse_that_does_not_converge_names_its_rows():
    block = slow_block(inverse_max_iter=5)
    x = torch.tensor([[3.0], [0.0], [float("nan")]], dtype=torch.float64)
    with pytest.raises(flowlab.ConvergenceError, match=r"block 0.*inverse_max_iter=5.*row\(s\) \(0, 2;") as error:
        block.inverse(x)
    assert error.value.rows == [0, 2]


def test_gradients_through_the_inverse_are_the_implicit_ones(randomize):
    bijector = randomize(flowlab.build("residual_exact", 2, blocks=2, hidden=8, affine=False), 2).double().eval()
    x = torch.tensor([1.5, -0.4], dtype=torch.float64)
    inverse_jacobian = torch.autograd.functional.jacobian(lambda v: bijector.inverse(v[None])[0][0], x)
    z = bijector.inverse(x[None])[0][0].detach()
    forward_jacobian = torch.autograd.functional.jacobian(lambda v: bijector(v[None])[0][0], z)
    torch.testing.assert_close(inverse_jacobian, torch.linalg.inv(forward_jacobian), rtol=0, atol=1e-9)
    # a parameter's gradient of log p(x) against central differences
    flow = flowlab.Flow(bijector)
    parameter = bijector.bijectors[0].g.linears[0].weight
    (gradient,) = torch.autograd.grad(flow.log_prob(x[None]).sum(), parameter)
    h = 1e-6
    with torch.no_grad():
        parameter[0, 0] += h
        up = float(flow.log_prob(x[None]))
        parameter[0, 0] -= 2 * h
        down = float(flow.log_prob(x[None]))
        parameter[0, 0] += h
    assert abs(float(gradient[0, 0]) - (up - down) / (2 * h)) <= 1e-6


def test_float32_inverse_stops_at_its_precision():
    block = slow_block().float()
    x = torch.tensor([[3.0], [-0.5]])
    back, _ = block.inverse(x)
    torch.testing.assert_close(block(back)[0], x)


def test_options_are_validated():
    with pytest.raises(flowlab.OptionError, match="coeff"):
        flowlab.build("residual", 2, coeff=1.0)
    with pytest.raises(flowlab.OptionError, match=r"Lip\(g\)² ≤ 1 − roulette_p.*at most 0.4686"):
        flowlab.build("residual", 2, roulette_p=0.5)  # 0.9^6 = 0.531 > 0.5
    flowlab.build("residual", 2, roulette_p=0.5, coeff=0.8)  # 0.8^6 = 0.262
    with pytest.raises(flowlab.OptionError, match="unknown option 'roulette_p'"):
        flowlab.build("residual_exact", 2, roulette_p=0.5)
    with pytest.raises(flowlab.OptionError, match="eval_logdet"):
        flowlab.build("residual", 2, eval_logdet="hutchinson")


def test_a_user_weight_above_the_bound_is_refused_without_spectral_norm():
    bijector = flowlab.build("residual", 2, blocks=2, hidden=4, spectral_norm=False)
    state = bijector.state_dict()
    state["bijectors.1.g.linears.2.weight"] = state["bijectors.1.g.linears.2.weight"] * 10
    with pytest.raises(LipschitzError, match=r"block 1, linear layer 3 of 3 has spectral norm .* expected ≤ coeff"):
        bijector.load_state_dict(state)
    with pytest.raises(flowlab.FlowlabError, match="block 1, linear layer 3"):
        bijector(torch.randn(3, 2))
    normalised = flowlab.build("residual", 2, blocks=2, hidden=4)
    normalised.load_state_dict(state)  # rescaled on every call
    assert isinstance(normalised, flowlab.Compose)
    block = normalised.layers[1]
    assert isinstance(block, ResidualBlock)
    assert float(torch.linalg.matrix_norm(block.g.weights().layers[2][0].detach(), 2)) <= 0.9 * (1 + 1e-6)


def test_the_unbiasedness_check_catches_a_roulette_without_its_weights(monkeypatch):
    from flowlab_residual import bijector, checks

    from flowlab.checks import Case

    spec = flowlab.flow_spec("residual")
    case = Case(dim=2, batch=1, seed=0, options=dict(spec.check_options))
    assert checks.run_unbiased(spec, case).status == "passed"
    weighted = bijector.roulette_weights

    def unweighted(extra: torch.Tensor, n_exact: int, p: float, n_terms: int) -> torch.Tensor:
        return (weighted(extra, n_exact, p, n_terms) > 0).double()  # a truncation by chance: biased

    monkeypatch.setattr(bijector, "roulette_weights", unweighted)
    result = checks.run_unbiased(spec, case)
    assert result.status == "failed", result.detail
