"""Continuous flows (cnf, ffjord, augmented) and the ODE machinery in ``flowlab.ode``: float64 against analytic
solutions and autograd, the registered ODE checks on the real flows and on the continuous mutants."""

from __future__ import annotations

import pathlib
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import flowlab
from flowlab import SolverError
from flowlab.checks import Case
from flowlab.checks.runner import run_case
from flowlab.nn import SMOOTH_CHOICES
from flowlab.ode import ExactTrace, Hutchinson, ODEBijector, SolverConfig, TimeMLP
from flowlab.ode.solver import CountedDynamics, solve
from flowlab.plugins import get_registry, import_file

CONTINUOUS = ("cnf", "ffjord", "augmented")


def check(name: str):
    return get_registry().records("checks")[name]


class Linear(nn.Module):
    """``f(t, z) = A z``: the flow map is ``expm(A)``, so ``log|det| = tr A`` exactly."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.dim = matrix.shape[0]
        self.matrix = nn.Parameter(matrix.clone())

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z @ self.matrix.T


class Blowup(nn.Module):
    """``dz/dt = z²``: from ``z(0) = 2`` the solution ``2 / (1 − 2t)`` blows up at t = 0.5."""

    dim = 1

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.scale * z**2


def linear_bijector(seed: int, dim: int = 3, **kwargs) -> tuple[ODEBijector, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.randn(dim, dim, generator=generator, dtype=torch.float64) * 0.7
    solver = kwargs.pop("solver", SolverConfig(rtol=1e-10, atol=1e-10))
    return ODEBijector(Linear(matrix), solver=solver, **kwargs).double(), matrix


# -- the ODE machinery against the analytic linear flow ------------------------------------------------------------
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 6))
def test_linear_field_matches_matrix_exponential_both_directions(seed, batch):
    bijector, matrix = linear_bijector(seed)
    z = torch.randn(batch, 3, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    x, forward_ladj = bijector(z)
    torch.testing.assert_close(x, z @ torch.linalg.matrix_exp(matrix).T, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(forward_ladj, torch.trace(matrix).expand(batch), rtol=1e-8, atol=1e-8)
    back, inverse_ladj = bijector.inverse(x)
    torch.testing.assert_close(back, z, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(inverse_ladj, -torch.trace(matrix).expand(batch), rtol=1e-8, atol=1e-8)


def test_rnode_terms_of_a_linear_field():
    # ∫‖Az(t)‖² dt by quadrature over the trajectory; ∫‖A‖²_F dt = ‖A‖²_F exactly
    bijector, matrix = linear_bijector(3, kinetic=0.5, jacobian=2.0)
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bijector.train()
    bijector(z)
    times = torch.linspace(0, 1, 2001, dtype=torch.float64)
    path = bijector.trajectory(z, times)
    speed = (path @ matrix.T).pow(2).sum(-1)  # [time, batch]
    kinetic = torch.trapezoid(speed, times, dim=0).mean()
    expected = 0.5 * kinetic + 2.0 * matrix.pow(2).sum()
    torch.testing.assert_close(bijector.regularization(), expected, rtol=1e-6, atol=1e-8)
    bijector.inverse(path[-1])  # backwards the accumulators are negated back to positive integrals
    torch.testing.assert_close(bijector.regularization(), expected, rtol=1e-5, atol=1e-8)
    bijector.eval()
    bijector(z)
    assert float(bijector.regularization()) == 0.0


def test_trajectory_ends_at_forward_and_accepts_times_not_starting_at_zero():
    bijector, _ = linear_bijector(1)
    z = torch.randn(5, 3, dtype=torch.float64)
    path = bijector.trajectory(z, [0.25, 0.5, 1.0])
    assert path.shape == (3, 5, 3)
    torch.testing.assert_close(path[-1], bijector(z)[0], rtol=1e-8, atol=1e-8)
    with pytest.raises(flowlab.OptionError, match="increasing times"):
        bijector.trajectory(z, [0.5, 0.2])


def test_exact_trace_and_hutchinson_probe_set_on_a_known_matrix():
    matrix = torch.randn(4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    z = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    f = z @ matrix.T
    trace, frobenius = ExactTrace()(f, z, None, False)
    torch.testing.assert_close(trace, torch.trace(matrix).expand(4))
    torch.testing.assert_close(frobenius, matrix.pow(2).sum().expand(4))
    probes = torch.eye(4, dtype=torch.float64) * 2.0  # √d e_i: mean v vᵀ = I
    estimate, frobenius_estimate = Hutchinson("gaussian")(z @ matrix.T, z, probes, False)
    torch.testing.assert_close(estimate.mean(), torch.trace(matrix))
    torch.testing.assert_close(frobenius_estimate.mean(), matrix.pow(2).sum())


@given(
    activation=st.sampled_from(SMOOTH_CHOICES),
    depth=st.integers(1, 3),
    dim=st.integers(1, 5),
    batch=st.integers(1, 6),
    per_row=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_time_mlp_jacobian_and_jvp_are_autograds(activation, depth, dim, batch, per_row, seed):
    """``TimeMLP.jacobian`` (forward mode, the exact trace's road) against ``torch.func.jacrev`` row by row, and
    ``TimeMLP.jvp`` (the Hutchinson trace's road) against ``torch.func.jvp``, float64, with a field far from the
    identity (``init_scale=1``, inputs of scale 3)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    field = TimeMLP(dim, hidden=7, depth=depth, activation=activation, frequencies=2, init_scale=1.0).double()
    z = 3 * torch.randn(batch, dim, generator=generator, dtype=torch.float64)
    t = torch.rand(batch if per_row else (), generator=generator, dtype=torch.float64)
    v = torch.randn(batch, dim, generator=generator, dtype=torch.float64)
    value, jacobian = field.jacobian(t, z)

    def row(t_row: torch.Tensor, z_row: torch.Tensor) -> torch.Tensor:
        return field(t_row.reshape(1), z_row.unsqueeze(0)).squeeze(0)

    expected = torch.func.vmap(torch.func.jacrev(row, argnums=1), in_dims=(0 if per_row else None, 0))(t, z)
    torch.testing.assert_close(value, field(t, z), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(jacobian, expected, rtol=1e-10, atol=1e-12)
    jvp_value, product = field.jvp(t, z, v)
    expected_value, expected_product = torch.func.jvp(lambda z_: field(t, z_), (z,), (v,))
    torch.testing.assert_close(jvp_value, expected_value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(product, expected_product, rtol=1e-10, atol=1e-12)


class Opaque(nn.Module):
    """A field without ``jacobian``: the exact trace takes the autograd road on it."""

    def __init__(self, field: TimeMLP) -> None:
        super().__init__()
        self.inner, self.dim = field, field.dim

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.inner(t, z)


@pytest.mark.parametrize("regularize", [False, True])
def test_exact_trace_through_the_fields_jacobian_equals_the_autograd_road(regularize):
    """The two roads of the exact trace (``JacobianField.jacobian`` and ``d`` vector-Jacobian products) give the same
    log-det, regularisers and parameter gradients (training differentiates the trace), float64."""
    torch.manual_seed(0)
    field = TimeMLP(3, hidden=16, depth=2, activation="silu", init_scale=1.0).double()
    kwargs = {"kinetic": 0.1, "jacobian": 0.1} if regularize else {}
    fast, slow = ODEBijector(field, **kwargs), ODEBijector(Opaque(field), **kwargs)
    assert fast.dynamics.field_has_jacobian and not slow.dynamics.field_has_jacobian
    z = torch.randn(6, 3, dtype=torch.float64)
    results = []
    for bijector in (fast, slow):
        bijector.train()
        x, logdet = bijector(z)
        loss = logdet.sum() + x.pow(2).sum() + bijector.regularization()
        grads = torch.autograd.grad(loss, list(field.parameters()))
        results.append((x, logdet, bijector.regularization().detach(), grads))
    for a, b in zip(results[0][:3], results[1][:3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    for a, b in zip(results[0][3], results[1][3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("regularize", [False, True])
def test_hutchinson_trace_through_the_fields_jvp_equals_the_autograd_road(regularize):
    """With the same probe, the Hutchinson log-det through ``JVPField.jvp`` (``v · J v``) and through autograd's
    ``vᵀ J`` (``vᵀ J · v``) are one number up to rounding, and so are the parameter gradients of a loss on it; RNODE's
    Frobenius term differs by design (``‖J v‖²`` against ``‖vᵀ J‖²``, both unbiased), so it is left out of the loss."""
    torch.manual_seed(0)
    field = TimeMLP(3, hidden=16, depth=2, activation="silu", init_scale=1.0).double()
    kwargs = {"kinetic": 0.1, "jacobian": 0.1} if regularize else {}
    fast = ODEBijector(field, trace=Hutchinson("gaussian"), **kwargs)
    slow = ODEBijector(Opaque(field), trace=Hutchinson("gaussian"), **kwargs)
    assert fast.dynamics.field_has_jvp and not slow.dynamics.field_has_jvp
    z = torch.randn(6, 3, dtype=torch.float64)
    probe = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    results = []
    for bijector in (fast, slow):
        bijector.train()
        x, logdet = bijector.integrate(z, reverse=False, probe=probe)
        grads = torch.autograd.grad(logdet.sum() + x.pow(2).sum(), list(field.parameters()))
        results.append((x, logdet, grads))
    for a, b in zip(results[0][:2], results[1][:2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    for a, b in zip(results[0][2], results[1][2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_hutchinson_probes_are_reproducible_from_the_seed():
    def logdet(seed: int) -> torch.Tensor:
        torch.manual_seed(0)
        bijector = flowlab.build("ffjord", 3, seed=seed).double().train()
        return bijector(torch.ones(4, 3, dtype=torch.float64))[1]

    torch.testing.assert_close(logdet(1), logdet(1), rtol=0, atol=0)
    assert not torch.allclose(logdet(1), logdet(2))


# -- the vector field ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 2, 7])
def test_time_mlp_works_for_a_0d_time_and_any_batch(batch):
    field = TimeMLP(3, frequencies=2).double()
    z = torch.randn(batch, 3, dtype=torch.float64)
    out = field(torch.tensor(0.3, dtype=torch.float64), z)
    assert out.shape == (batch, 3)
    torch.testing.assert_close(field(torch.tensor([0.3], dtype=torch.float64), z), out)
    per_row = field(torch.full((batch,), 0.3, dtype=torch.float64), z)
    torch.testing.assert_close(per_row, out)
    # rows are independent of each other
    torch.testing.assert_close(field(torch.tensor(0.3, dtype=torch.float64), z[:1]), out[:1])
    with pytest.raises(flowlab.ShapeError, match="one per row"):
        field(torch.zeros(batch + 1, dtype=torch.float64), z)


# -- flows through the registry ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CONTINUOUS)
def test_registered_with_explanations_and_references(name):
    spec = flowlab.flow_spec(name)
    assert spec.kind == "continuous"
    assert "Direction and sign convention" in spec.explanation
    assert "Log-determinant" in spec.explanation or "Marginal" in spec.explanation
    assert spec.references and "invertibility" in spec.tolerances


@pytest.mark.parametrize("name", CONTINUOUS)
def test_log_prob_works_under_no_grad_and_inference_mode_and_matches_with_grad(name):
    # the trace differentiates the field: under no_grad autograd is enabled locally; torch.inference_mode forbids
    # that, so the flow solves as under no_grad
    torch.manual_seed(0)
    flow = flowlab.Flow(flowlab.build(name, 2)).double().eval()
    x = torch.randn(6, 2, dtype=torch.float64)
    with torch.no_grad():
        quiet = flow.log_prob(x)
    assert not quiet.requires_grad and quiet.shape == (6,)
    loud = flow.log_prob(x)
    assert loud.requires_grad
    torch.testing.assert_close(quiet, loud.detach(), rtol=1e-10, atol=1e-10)
    assert flow.bijector.nfe > 0 and flow.bijector.nfe_backward == 0
    with torch.inference_mode():
        torch.testing.assert_close(flow.log_prob(x), quiet, rtol=0, atol=0)
        samples, sample_log_prob = flow.sample_and_log_prob(4)
    assert samples.shape == (4, 2) and torch.isfinite(sample_log_prob).all()


@pytest.mark.parametrize("name", CONTINUOUS)
def test_float32_keeps_dtype(name):
    torch.manual_seed(0)
    flow = flowlab.Flow(flowlab.build(name, 2)).eval()
    samples, log_prob = flow.sample_and_log_prob(5)
    assert samples.dtype == log_prob.dtype == torch.float32
    torch.testing.assert_close(flow.log_prob(samples), log_prob, rtol=1e-3, atol=1e-3)


def test_adjoint_gradients_match_direct_backpropagation_and_count_backward_nfe(randomize):
    grads = {}
    for adjoint in (False, True):
        torch.manual_seed(0)
        bijector = randomize(flowlab.build("cnf", 2, adjoint=adjoint, rtol=1e-9, atol=1e-9).double(), 0)
        x = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        loss = -flowlab.Flow(bijector).log_prob(x).mean()
        loss.backward()
        grads[adjoint] = torch.cat([p.grad.flatten() for p in bijector.parameters()])
        assert bijector.nfe > 0
        assert (bijector.nfe_backward > 0) == adjoint
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-5, atol=1e-6)


def test_adjoint_solves_points_that_require_grad():
    # odeint_adjoint's forward runs under no_grad with views of a state that requires grad: the dynamics must
    # differentiate a fresh leaf, not those views
    torch.manual_seed(0)
    bijector = flowlab.build("cnf", 2, adjoint=True, rtol=1e-8, atol=1e-8).double().eval()
    z = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    x, _ = bijector(z)
    back, _ = bijector.inverse(x)
    (grad,) = torch.autograd.grad(back.sum(), z)
    torch.testing.assert_close(grad, torch.ones_like(z), rtol=1e-5, atol=1e-5)
    assert bijector.nfe_backward > 0


def test_ffjord_training_step_with_rnode_has_finite_gradients():
    torch.manual_seed(0)
    bijector = flowlab.build("ffjord", 2, kinetic=0.1, jacobian=0.1).train()
    loss = -flowlab.Flow(bijector).log_prob(torch.randn(8, 2)).mean() + bijector.regularization()
    loss.backward()
    assert float(bijector.regularization().detach()) > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in bijector.parameters())


@pytest.mark.parametrize(("method", "nfe"), [("euler", 10), ("midpoint", 20), ("rk4", 40)])
def test_fixed_step_methods_take_the_step_size(method, nfe):
    bijector, matrix = linear_bijector(2, solver=SolverConfig(method=method, step_size=0.1))
    z = torch.randn(3, 3, dtype=torch.float64)
    x, _ = bijector(z)
    assert bijector.nfe == nfe
    error = (x - z @ torch.linalg.matrix_exp(matrix).T).abs().max()
    assert error < {"euler": 1.0, "midpoint": 0.1, "rk4": 1e-3}[method]


# -- solver failures -----------------------------------------------------------------------------------------------
def test_max_nfe_guard_names_the_solver_time_and_a_hint():
    bijector = flowlab.build("cnf", 2, max_nfe=5)
    with pytest.raises(SolverError, match=r"dopri5: stopped at t=.* max_nfe=5.*hint"):
        bijector(torch.randn(3, 2))


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_a_blowing_up_field_raises_solver_error(method):
    bijector = ODEBijector(Blowup(), solver=SolverConfig(method=method, rtol=1e-6, atol=1e-6, step_size=0.01))
    with pytest.raises(SolverError, match=rf"{method}.*failed at t=.*hint: loosen rtol/atol") as info:
        bijector(torch.full((2, 1), 2.0, dtype=torch.float64))
    assert info.value.solver == method and info.value.time is not None


def test_bad_solver_and_augmentation_options_are_refused():
    with pytest.raises(flowlab.OptionError, match="method"):
        SolverConfig(method="leapfrog")
    with pytest.raises(flowlab.OptionError, match="augment"):
        flowlab.build("augmented", 2, augment=2)


# -- augmented -----------------------------------------------------------------------------------------------------
def test_augmented_marginal_estimate_and_learned_proposal_starts_at_the_base():
    estimates = {}
    for proposal in ("base", "learned"):
        torch.manual_seed(0)
        bijector = flowlab.build("augmented", 3, augment=1, proposal=proposal).double().eval()
        x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        estimates[proposal] = bijector.marginal_log_prob(x, samples=8)
        assert estimates[proposal].shape == (4,)
    torch.testing.assert_close(estimates["base"], estimates["learned"])
    with pytest.raises(flowlab.ShapeError, match=r"\[batch, 2\]"):
        bijector.marginal_log_prob(torch.zeros(4, 3, dtype=torch.float64))


# -- the registered checks on the real flows and on the mutants ----------------------------------------------------
@pytest.mark.parametrize("name", CONTINUOUS)
@settings(max_examples=5)
@given(dim=st.integers(1, 4), batch=st.integers(1, 6), seed=st.integers(0, 2**16), scale=st.floats(0.1, 3.0))
def test_ode_invertibility_check_passes(name, dim, batch, seed, scale):
    dim = max(dim, flowlab.flow_spec(name).min_dim)
    result = check("ode_invertibility").run(flowlab.flow_spec(name), Case(dim, batch, seed, scale=scale))
    assert result.status == "passed", result.detail


@pytest.mark.parametrize("name", CONTINUOUS)
@settings(max_examples=2)
@given(dim=st.integers(2, 3), seed=st.integers(0, 2**16))
def test_ode_logdet_check_passes(name, dim, seed):
    result = check("ode_logdet").run(flowlab.flow_spec(name), Case(dim, 2, seed))
    assert result.status == "passed", result.detail


@pytest.mark.parametrize(
    ("name", "check_name"),
    [
        ("cnf", "ode_normalization"),
        ("ffjord", "ode_normalization"),
        ("augmented", "ode_normalization"),
        ("ffjord", "hutchinson_estimator"),
        ("ffjord", "hutchinson_fixed_probe"),
        ("augmented", "augmented_marginal_bound"),
    ],
)
def test_statistical_and_2d_checks_pass(name, check_name):
    spec = flowlab.flow_spec(name)
    assert check(check_name).applies(spec) is True
    result = check(check_name).run(spec, Case(3, 3, seed=0))
    assert result.status == "passed", result.detail


def test_hutchinson_estimator_check_with_gaussian_probes():
    result = check("hutchinson_estimator").run(
        flowlab.flow_spec("ffjord"), Case(4, 1, 7, options={"probe": "gaussian"})
    )
    assert result.status == "passed", result.detail


def test_checks_apply_only_to_their_flows():
    assert check("ode_logdet").applies(flowlab.flow_spec("coupling")) is not True
    assert check("hutchinson_estimator").applies(flowlab.flow_spec("cnf")) is not True
    assert check("augmented_marginal_bound").applies(flowlab.flow_spec("ffjord")) is not True


MUTANTS = import_file(pathlib.Path(__file__).parent / "mutants" / "continuous.py")


@pytest.mark.parametrize(("mutant", "check_name"), sorted(MUTANTS.EXPECTED.items()))
def test_continuous_mutants_fail_their_check(mutant, check_name):
    spec = next(s for s in MUTANTS.MUTANTS if s.name == mutant)
    assert check(check_name).applies(spec) is True
    result = run_case(check(check_name), spec, Case(3, 3, seed=0))
    expected = "uncovered" if mutant in MUTANTS.UNCOVERED else "failed"  # it hides what the property needs
    assert result.status == expected, result.detail


def test_mutant_plugin_registers_every_expected_mutant():
    registered = []
    MUTANTS.flowlab_register_flows(registered.append)
    assert {spec.name for spec in registered} == set(MUTANTS.EXPECTED)
    assert all(spec.kind == "continuous" for spec in registered)


class SlowDynamics(CountedDynamics):
    """``dz/dt = -z``, each evaluation taking 20 ms (a stand-in for a stiff, expensive field)."""

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        self.tick(t)
        time.sleep(0.02)
        return -state


def test_max_seconds_stops_a_slow_solve():
    config = SolverConfig(max_seconds=0.1)
    started = time.monotonic()
    with pytest.raises(SolverError, match=r"max_seconds=0.1.*hint: raise max_seconds"):
        solve(SlowDynamics(), torch.ones(1, 2), torch.tensor([0.0, 1.0]), config)
    assert time.monotonic() - started < 1.0
    assert flowlab.flow_spec("cnf").options["max_seconds"].default == SolverConfig().max_seconds == 60.0
