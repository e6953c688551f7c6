"""flowlab.adapters.from_velocity_field: a velocity field trained elsewhere as a CNF with an exact likelihood.

The field is called in its library's convention (t first, t last, [x, t] concatenated); the flow's direction, sign
and log-det are flowlab's ODE machinery's. A field trained by flow matching (torchcfm's loss, by torchcfm itself
where it is installed) gets a held-out NLL from flowlab equal, within 0.01 nats, to the NLL computed by an
independent solve (torchdiffeq on the augmented ODE with the divergence summed by autograd, written out below) and
by Meta's ``flow_matching`` ``ODESolver.compute_likelihood`` where that is installed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import flowlab
from flowlab.adapters import VelocityField, from_velocity_field, velocity_spec
from flowlab.checks import checks, run_property
from flowlab.cli import main
from flowlab.ode import SolverConfig
from flowlab.seeding import generator

TIGHT = SolverConfig(rtol=1e-8, atol=1e-8)
#: the NLL comparisons' solves: torchcfm's SELU field has a Jacobian that jumps where a unit crosses 0 (SELU's
#: derivative is 1.05 above, 1.76 below), so an adaptive solve of its divergence takes ~1400 evaluations at 1e-6 and
#: exceeds 10 000 at 1e-8; at 1e-5 the three solves below agree to ~1e-4 nats, 100x inside the 0.01 asked for
NLL_TOLERANCE = 1e-5


class Linear(nn.Module):
    """``v(t, x) = (1 + t)·A x``: the flow map is ``expm(1.5 A)``, its log-det ``1.5 tr A``."""

    def __init__(self, matrix: Tensor) -> None:
        super().__init__()
        self.matrix = nn.Parameter(matrix)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return (1 + t) * x @ self.matrix.T


class TimeLast(nn.Module):
    """The same field called ``model(x, t)`` with one time per row (Meta's ``flow_matching`` ``ModelWrapper``)."""

    def __init__(self, inner: Linear) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        assert t.shape == (x.shape[0],)
        return self.inner(t[:, None], x)


class Concatenated(nn.Module):
    """The same field reading ``[x, t]`` as one input (torchcfm's ``MLP(dim, time_varying=True)``)."""

    def __init__(self, inner: Linear) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, xt: Tensor) -> Tensor:
        return self.inner(xt[:, -1:], xt[:, :-1])


@pytest.mark.parametrize("time", ["t_first", "t_last", "concat"])
def test_direction_sign_and_logdet_of_a_linear_field(time: str) -> None:
    matrix = torch.tensor([[0.3, -0.5], [0.4, -0.2]], dtype=torch.float64)
    inner = Linear(matrix)
    model = {"t_first": inner, "t_last": TimeLast(inner), "concat": Concatenated(inner)}[time]
    bijector = from_velocity_field(model, 2, time=time, solver=TIGHT).double()
    z = torch.randn(5, 2, dtype=torch.float64)
    x, forward_ladj = bijector(z)
    torch.testing.assert_close(x, z @ torch.linalg.matrix_exp(1.5 * matrix).T, rtol=1e-7, atol=1e-7)
    expected = torch.full((5,), 1.5 * float(matrix.trace()), dtype=torch.float64)
    torch.testing.assert_close(forward_ladj, expected, rtol=1e-7, atol=1e-7)
    back, inverse_ladj = bijector.inverse(x)
    torch.testing.assert_close(back, z, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(inverse_ladj, -expected, rtol=1e-7, atol=1e-7)


def test_a_field_of_another_shape_or_convention_is_refused() -> None:
    with pytest.raises(flowlab.OptionError, match="expected time in"):
        VelocityField(nn.Identity(), 2, time="x_first")
    with pytest.raises(flowlab.OptionError, match=r"time_shape in \('column',\)"):
        VelocityField(nn.Identity(), 2, time="concat", time_shape="scalar")
    field = VelocityField(nn.Linear(3, 3), 2, time="concat")  # returns [batch, 3]: not a velocity on R^2
    with pytest.raises(flowlab.ShapeError, match=r"expected the model to return a velocity of shape \[4, 2\]"):
        field(torch.tensor(0.5), torch.zeros(4, 2))


# -- a field trained by flow matching: flowlab's NLL against independent ones ---------------------------------------
def cfm_mlp(width: int = 32, activation: type[nn.Module] = nn.SELU) -> nn.Module:
    """torchcfm's ``MLP(2, w, time_varying=True)`` layout: ``[x, t]`` -> three ``activation`` layers -> velocity."""
    return nn.Sequential(
        nn.Linear(3, width), activation(), nn.Linear(width, width), activation(), nn.Linear(width, width), activation(),
        nn.Linear(width, 2),
    )  # fmt: skip


def train_written_out(steps: int, seed: int, activation: type[nn.Module] = nn.SELU) -> nn.Module:
    """torchcfm's ``ConditionalFlowMatcher(sigma=0.1)`` loss written out: ``x_t = t·x₁ + (1 − t)·x₀ + σ·ε``,
    target ``u_t = x₁ − x₀``, ``‖v([x_t, t]) − u_t‖²``."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    data = flowlab.dataset_spec("8gaussians")
    model = cfm_mlp(activation=activation)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        x1 = data.sample(256, generator)
        x0 = torch.randn(256, 2, generator=generator)
        t = torch.rand(256, 1, generator=generator)
        xt = t * x1 + (1 - t) * x0 + 0.1 * torch.randn(256, 2, generator=generator)
        loss = (model(torch.cat([xt, t], dim=-1)) - (x1 - x0)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def train_torchcfm(steps: int, seed: int) -> nn.Module:
    """torchcfm's own ``MLP`` trained by its ``ExactOptimalTransportConditionalFlowMatcher``, as the peers plugin
    trains ``torchcfm.otcfm_8gaussians`` (``flowlab_peers.torchcfm_flows.train``)."""
    for module in ("torchcfm", "ot"):
        pytest.importorskip(
            module,
            reason=f"{module} is not installed (torchcfm is not in the peers extra: its requirements pull another "
            "torch; pip install --no-deps torchcfm==1.0.7 POT==0.9.7.post1, see docs/adapters.md)",
        )
    from flowlab_peers.torchcfm_flows import train

    return train(steps, lr=3e-3, seed=seed)


def reference_nll(model: nn.Module, x: Tensor) -> float:
    """The held-out NLL by a solve written out here: torchdiffeq's dopri5 on ``[x, a]`` from t = 1 to 0 with
    ``da/dt = Σ_i ∂v_i/∂x_i`` (autograd, one coordinate at a time), ``log p(x) = log N(x(0)) − a(0)``... with ``a``
    integrated backwards, ``a(0) = −∫₀¹ div v dt``, so ``log p = log N(x(0)) + a(0)``."""
    from torchdiffeq import odeint

    def dynamics(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            y = state[0].detach().requires_grad_(True)
            v = model(torch.cat([y, t.expand(y.shape[0], 1)], dim=-1))
            divergence = sum(torch.autograd.grad(v[:, i].sum(), y, retain_graph=True)[0][:, i] for i in range(2))
        return v.detach(), divergence.detach()

    times = torch.tensor([1.0, 0.0], dtype=x.dtype)
    ends, accumulated = odeint(dynamics, (x, x.new_zeros(x.shape[0])), times, rtol=NLL_TOLERANCE, atol=NLL_TOLERANCE)
    z, a = ends[-1], accumulated[-1]
    log_p = -0.5 * (z.square().sum(-1) + 2 * math.log(2 * math.pi)) + a
    return float(-log_p.mean())


def flow_matching_nll(model: nn.Module, x: Tensor) -> float:
    """The held-out NLL by Meta's ``flow_matching`` (exact divergence, dopri5), the field wrapped in its
    ``ModelWrapper``."""
    pytest.importorskip("flow_matching", reason="flow_matching is not installed (pip install -e '.[peers]')")
    from flow_matching.solver import ODESolver
    from flow_matching.utils import ModelWrapper

    class Wrapped(ModelWrapper):
        def forward(self, x: Tensor, t: Tensor, **extras: object) -> Tensor:
            return self.model(torch.cat([x, t.reshape(-1, 1).expand(x.shape[0], 1).to(x.dtype)], dim=-1))

    def log_p0(z: Tensor) -> Tensor:
        return -0.5 * (z.square().sum(-1) + 2 * math.log(2 * math.pi))

    solver = ODESolver(velocity_model=Wrapped(model))
    times = torch.tensor([1.0, 0.0], dtype=x.dtype)
    _, log_p = solver.compute_likelihood(
        x,
        log_p0,
        step_size=None,
        method="dopri5",
        rtol=NLL_TOLERANCE,
        atol=NLL_TOLERANCE,
        time_grid=times,
        exact_divergence=True,
    )
    return float(-log_p.mean())


@pytest.mark.parametrize("trainer", [train_written_out, train_torchcfm], ids=["cfm-written-out", "torchcfm"])
def test_a_flow_matching_field_gets_an_exact_held_out_nll(trainer: Callable[[int, int], nn.Module]) -> None:
    """300 training steps on 8gaussians; NLL of 256 held-out points: flowlab's machinery (``ODEBijector``,
    ``AugmentedDynamics``, ``ExactTrace``) within 0.01 nats of the written-out solve and of flow_matching's (all
    at rtol = atol = ``NLL_TOLERANCE``)."""
    model = trainer(300, 0).double().eval()
    held_out = flowlab.dataset_spec("8gaussians").sample(256, torch.Generator().manual_seed(1)).double()
    solver = SolverConfig(rtol=NLL_TOLERANCE, atol=NLL_TOLERANCE)
    bijector = from_velocity_field(model, 2, time="concat", solver=solver).double().eval()
    with torch.no_grad():
        ours = float(-flowlab.Flow(bijector).log_prob(held_out).mean())
    assert math.isfinite(ours) and 2.0 < ours < 5.0  # 8gaussians' entropy is 2.83 nats: a trained, finite model
    assert abs(ours - reference_nll(model, held_out)) < 0.01
    if trainer is train_written_out:  # one comparison with flow_matching is enough
        assert abs(ours - flow_matching_nll(model, held_out)) < 0.01


def test_the_kit_runs_the_ode_properties_on_a_trained_field() -> None:
    """``velocity_spec`` makes a trained field a continuous flow the kit checks at its own parameters. A tanh field:
    the ODE checks solve at rtol = atol = 1e-9, where a SELU field's kinks cost minutes (see ``NLL_TOLERANCE``)."""
    model = train_written_out(100, 0, nn.Tanh)
    state = model.state_dict()

    def load() -> nn.Module:
        fresh = cfm_mlp(activation=nn.Tanh)
        fresh.load_state_dict(state)
        return fresh

    spec = velocity_spec(
        "cfm_field", "a CFM field", load, 2, library="torchcfm", time="concat", explanation="**Field.** a test field."
    )
    assert spec.kind == "continuous" and spec.fixed_parameters and {"rtol", "atol", "method"} <= set(spec.options)
    for name in ("ode_logdet", "ode_invertibility"):
        run = run_property(checks()[name], spec, "cpu", profile="quick")
        assert run.status == "passed", run.detail


# -- flowlab eval --model: a field defined in Python, evaluated on a dataset -------------------------------------------
FIELD_MODULE = """
import torch
from torch import nn

def field():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))
"""


def test_eval_cli_gives_a_velocity_field_its_held_out_nll(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "my_fields.py"
    source.write_text(FIELD_MODULE)
    argv = ["eval", "--model", f"{source}:field", "--data", "8gaussians", "-n", "64", "--time", "concat", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    namespace: dict[str, Any] = {}
    exec(FIELD_MODULE, namespace)
    flow = flowlab.Flow(from_velocity_field(namespace["field"](), 2, time="concat"))
    points = flowlab.dataset_spec("8gaussians").sample(64, generator(1, "eval"))
    with torch.no_grad():
        expected = float(-flow.eval().log_prob(points).mean())
    assert result["n"] == 64 and result["nfe"] > 0
    assert result["nll_nats"] == pytest.approx(expected, abs=1e-4)  # same field, points and solver settings


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--data", "8gaussians"], "expected RUN (a run folder or a checkpoint file) or --model"),
        (["eval", "--model", "no_such_module_here:field", "--data", "8gaussians"], "cannot import module"),
        (["eval", "--model", "torch:nn", "--data", "8gaussians"], "expected torch:nn to be a flowlab Flow"),
        (["eval", "--model", "torch.nn:Identity"], "--model needs --data"),
    ],
)
def test_eval_cli_refuses_what_it_cannot_evaluate(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
