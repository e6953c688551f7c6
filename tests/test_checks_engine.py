"""The kit's general mechanisms against false alarms and blind spots, each shown with a flow that is correct but
unusual (it must pass) and, where a mechanism guards against a bug, with that bug failing it.

Planted bugs of each kind live in ``tests/mutants/`` (``test_mutants.py`` runs them): a first-batch initialisation,
a log-det that overflows at large d, an in-place write into the input, a detached parameter, a biased probe inside
the solve, a capability declared but not provided, a marginal-likelihood estimate off by a constant.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from flowlab_checks import gradients
from hypothesis import strategies as st
from torch import Tensor, nn

from flowlab import Bijector, FlowSpec, flow_spec
from flowlab.checks import Case, CheckResult, CheckSpec, check_spec, strategies
from flowlab.checks.measure import InputModifiedError, Measurement, apply, judge
from flowlab.checks.runner import run_property
from flowlab.cli import main
from flowlab.plugins import Registry, import_file, reset_registry
from flowlab.reports.checks import document


class TrainOnlyPath(Bijector):
    """``x = z·exp(a)`` whose ``a`` reaches the output only in training mode (eval mode uses ``a.detach()``), as a
    CNF that hands its parameters to the solver only when training. Correct, and trainable."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def _a(self) -> Tensor:
        return self.log_scale if self.training else self.log_scale.detach()

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z * self._a().exp(), self._a().sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * (-self._a()).exp(), -self._a().sum().expand(x.shape[0])


class BumpInside(Bijector):
    """Identity outside ``[-1, 1]``; inside, ``z = x + a·sin(πx)/π`` (``|a| ≤ ½``, so monotone), its parameter used
    only when some coordinate falls inside (a branch on the data, as a spline with identity tails may take).
    ``inverse`` is explicit; ``forward`` solves it by bisection."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.raw = nn.Parameter(torch.zeros(()))

    def _a(self) -> Tensor:
        return 0.5 * torch.tanh(self.raw)

    def _map(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``z`` and ``∂z/∂x`` elementwise."""
        inside = x.abs() < 1
        if not bool(inside.any()):
            return x.clone(), torch.ones_like(x)
        a = self._a()
        bump = torch.where(inside, a * torch.sin(math.pi * x) / math.pi, torch.zeros_like(x))
        return x + bump, torch.where(inside, 1 + a * torch.cos(math.pi * x), torch.ones_like(x))

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, slope = self._map(x)
        return z, slope.log().sum(dim=1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        low, high = torch.minimum(z, -z.abs().clamp(min=1)), torch.maximum(z, z.abs().clamp(min=1))
        with torch.no_grad():
            for _ in range(80):
                middle = (low + high) / 2
                below = self._map(middle)[0] < z
                low, high = torch.where(below, middle, low), torch.where(below, high, middle)
        root = (low + high) / 2
        value, slope = self._map(root)
        x = root - (value - z) / slope  # one Newton step: the value stays, autograd sees ∂x/∂z = 1 / (∂z/∂x)
        return x, -self._map(x)[1].log().sum(dim=1)


def spec_of(name: str, cls: type[Bijector], **fields: object) -> FlowSpec:
    return FlowSpec(name=name, summary="test flow", build=cls, explanation="test", **fields)  # type: ignore[arg-type]


def test_a_parameter_used_only_in_training_mode_passes_gradients():
    run = run_property(gradients.CHECK, spec_of("train_only_path", TrainOnlyPath))
    assert run.status == "passed", run.detail
    # the old check differentiated in eval mode only, where this flow has no path to its parameter
    x = torch.randn(3, 2)
    assert TrainOnlyPath(2).eval().inverse(x)[1].grad_fn is None
    assert TrainOnlyPath(2).train().inverse(x)[1].grad_fn is not None


def test_a_path_that_depends_on_the_data_is_looked_for_on_more_points(monkeypatch):
    spec = spec_of("bump_inside", BumpInside)
    for name in ("invertibility", "logdet", "gradients"):
        run = run_property(check_spec(name), spec)
        assert run.status == "passed", f"{name}: {run.detail}"
    # without the extra points, a case whose inputs all lie in the identity tails reports the parameter as cut off
    monkeypatch.setattr(gradients, "SPREADS", ())
    result = gradients.run(spec, Case(dim=1, batch=1, seed=0, scale=100.0))
    assert result.status == "failed" and "no path" in result.detail


class ZeroWeighted(TrainOnlyPath):
    """``x = z·exp(0·a)``: ``a`` has a path to the output and a gradient that is exactly zero everywhere."""

    def _a(self) -> Tensor:
        return 0 * self.log_scale


def test_a_zero_gradient_with_a_path_is_not_a_detached_parameter():
    run = run_property(gradients.CHECK, spec_of("zero_weighted", ZeroWeighted))
    assert run.status == "passed", run.detail


def test_apply_refuses_a_flow_that_writes_into_its_input():
    class InPlace(Bijector):
        dim = 2

        def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
            return z.mul_(2), z.new_full((z.shape[0],), 2 * math.log(2))

        def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
            return x / 2, x.new_full((x.shape[0],), -2 * math.log(2))

    points = torch.ones(3, 2)
    with pytest.raises(InputModifiedError, match="forward modified its input in place"):
        apply(InPlace(), points, "forward")
    assert points.tolist() == [[1.0, 1.0]] * 3  # the flow wrote into the copy apply gave it, not the caller's
    assert apply(InPlace(), torch.ones(3, 2), "inverse")[0].tolist() == [[0.5, 0.5]] * 3


def test_a_non_finite_value_is_reported_with_the_magnitudes_reached():
    got = torch.tensor([[1.0, math.inf]])
    measurement = Measurement(
        "x vs y", torch.tensor([math.inf]), {"out": got, "reference": torch.tensor([[1e30, 2.0]])}
    )
    result = judge([measurement], 1e-3)
    assert result.status == "failed" and result.max_error == math.inf
    assert "out: 1 non-finite, max |·| 1" in result.detail and "reference: max |·| 1e+30" in result.detail


def _scripted_check(results: list[CheckResult | Exception]) -> CheckSpec:
    remaining = list(results)

    def run(spec: FlowSpec, case: Case) -> CheckResult:
        outcome = remaining.pop(0) if remaining else CheckResult("passed", 0.0, 1.0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return CheckSpec(name="scripted", summary="test", run=run, tolerance=1.0)


def test_a_failure_raised_as_an_exception_reports_its_own_error_not_a_passing_cases():
    check = _scripted_check([CheckResult("passed", 0.9, 1.0), RuntimeError("boom")])
    run = run_property(check, spec_of("train_only_path", TrainOnlyPath))
    assert run.status == "failed" and "boom" in run.detail
    assert run.max_error is None  # not the 0.9 of the passing case


def test_infinite_errors_are_written_to_json_as_inf():
    check = _scripted_check([CheckResult("failed", math.inf, 1.0, "overflow")])
    run = run_property(check, spec_of("train_only_path", TrainOnlyPath))
    text = json.dumps(document([run], profile="quick", devices=["cpu"], version="0"))
    record = json.loads(text)["flows"]["train_only_path"]["properties"]["scripted"]["cpu"]
    assert record["max_error"] == "inf" and "1.79" not in text


class BareODE(Bijector):
    """A continuous flow that is none of the things the ODE properties need: no rtol/atol options, not a
    flowlab.ode.ContinuousFlow (a flow hand-wrapped from another library might look like this)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z, z.new_zeros(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x, x.new_zeros(x.shape[0])


def test_a_property_a_flow_lacks_the_means_for_is_uncovered_and_fails_the_run_unless_allowed():
    """Coverage by what the flow is: an ODE property applies to every continuous flow; one that cannot run on it is
    uncovered (saying what is missing), which fails the report, never a quiet skip."""
    bare = spec_of("bare_ode", BareODE, kind="continuous", logdet="stochastic")
    run = run_property(check_spec("ode_invertibility"), bare)
    assert run.status == "uncovered" and "no rtol/atol build options" in run.detail
    hutchinson = run_property(check_spec("hutchinson_solve_unbiased"), bare)
    assert hutchinson.status == "uncovered" and "not a flowlab.ode.ContinuousFlow" in hutchinson.detail
    assert document([run], profile="quick", devices=["cpu"], version="0")["status"] == "failed"
    allowed = document([run], profile="quick", devices=["cpu"], version="0", allow_uncovered=True)
    assert allowed["status"] == "passed" and allowed["uncovered"][0]["property"] == "ode_invertibility"
    opted = replace(bare, opt_out={"ode_invertibility": "a stand-in with no solver"})
    run = run_property(check_spec("ode_invertibility"), opted)
    assert run.status == "skipped" and "opted out by the flow (FlowSpec.opt_out): a stand-in" in run.detail


def test_a_spec_less_ode_flow_gets_the_ode_and_hutchinson_properties():
    """An ODEBijector with Hutchinson's estimator, registered with nothing but kind and log-det kind: every ODE and
    Hutchinson property runs on it (through flowlab.ode.ContinuousFlow), none is uncovered or skipped."""
    from flowlab.ode import ExactTrace, Hutchinson, ODEBijector, TimeMLP

    def build(dim: int) -> ODEBijector:
        return ODEBijector(TimeMLP(dim, hidden=8, depth=1), trace=Hutchinson("rademacher"), eval_trace=ExactTrace())

    plain = FlowSpec(name="plain_ffjord", summary="spec-less", build=build, kind="continuous", logdet="stochastic")
    for name in ("ode_invertibility", "hutchinson_fixed_probe", "hutchinson_solve_unbiased"):
        run = run_property(check_spec(name), plain)
        assert run.status == "passed", (name, run.status, run.detail)


def test_a_property_another_check_verifies_more_strictly_is_not_paid_for_twice():
    run = run_property(check_spec("logdet"), flow_spec("cnf"))
    assert run.status == "not_applicable" and run.detail.startswith("covered by ode_logdet")
    assert run_property(check_spec("logdet"), flow_spec("coupling")).status == "passed"


UNDECIDED_PLUGIN = """
from flowlab import hookimpl
from flowlab.checks import CheckResult, CheckSpec


def undecided(spec, case):
    return CheckResult("inconclusive", detail="the estimator's effective sample size collapsed")


class Plugin:
    @hookimpl
    def flowlab_register_checks(self, register):
        register(CheckSpec(name="undecided", summary="a statistical check that cannot decide", run=undecided))


PLUGIN = Plugin()
"""


def test_an_inconclusive_verdict_fails_the_run_unless_allowed(tmp_path):
    """A verdict that could not be reached is never a pass: the document's status and ``flowlab check``'s exit
    status fail on ``inconclusive`` (as ``assert_conforms`` and ``conformance_tests`` do: ``flowlab.spec.NOT_PASSING``);
    ``--allow-inconclusive`` lists it without failing."""
    from flowlab.cli import main

    check = CheckSpec("undecided", "cannot decide", run=lambda spec, case: CheckResult("inconclusive"), max_examples=2)
    run = run_property(check, flow_spec("affine"))
    assert run.status == "inconclusive"
    assert document([run], profile="quick", devices=["cpu"], version="0")["status"] == "failed"
    assert document([run], profile="quick", devices=["cpu"], version="0", allow_inconclusive=True)["status"] == "passed"
    plugin = tmp_path / "undecided.py"
    plugin.write_text(UNDECIDED_PLUGIN)
    argv = ["check", "affine", "--property", "undecided", "--plugin", str(plugin)]
    assert main(argv) == 1
    assert main([*argv, "--allow-inconclusive"]) == 0


GRAD_MODE = import_file(Path(__file__).resolve().parent / "mutants" / "grad_mode.py")


@pytest.mark.parametrize("name", sorted(GRAD_MODE.EXPECTED))
def test_a_path_wrong_only_without_autograd_fails_only_where_cases_turn_it_off(name, monkeypatch, capsys):
    spec, prop = GRAD_MODE.SPECS[name], GRAD_MODE.EXPECTED[name]
    run = run_property(check_spec(prop), spec)
    assert run.status == "failed" and run.counterexample is not None, run.detail
    assert run.counterexample.case.autograd is False
    reproduce = run.counterexample.reproduce
    assert '"autograd":false' in reproduce
    registry = Registry()
    registry.load_entry_points()
    registry.add_plugin(GRAD_MODE, "mutants-grad-mode")
    reset_registry(registry)
    try:  # the reproduce command reruns the failing case, grad mode included
        assert main(shlex.split(reproduce)[1:]) == 1
        args = shlex.split(reproduce.replace('"autograd":false', '"autograd":"no"'))[1:]
        assert main(args) == 2 and "autograd must be true or false" in capsys.readouterr().err
    finally:
        reset_registry()
    monkeypatch.setattr(strategies, "autograd_modes", lambda: st.just(True))  # every call records, as before
    assert run_property(check_spec(prop), spec).status == "passed"
