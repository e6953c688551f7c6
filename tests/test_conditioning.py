"""Conditioning (docs/conditioning.md): the context through Bijector, Compose and Flow, the errors for a missing,
extra or mis-shaped context, a context-less third-party bijector, and the conditional built-in flows."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from rich.console import Console
from torch import Tensor, nn

import flowlab
from flowlab import (
    Bijector,
    Compose,
    ContextError,
    DeviceError,
    DtypeError,
    Flow,
    NonFiniteError,
    OptionError,
    Permutation,
    ShapeError,
)
from flowlab.checks import Case, checks
from flowlab.checks.cases import case_context, perturb_
from flowlab.checks.measure import InputModifiedError, apply
from flowlab.checks.profiles import PROFILES
from flowlab.checks.runner import Counterexample, PropertyRun, run_property
from flowlab.checks.strategies import CONTEXT_DIMS, cases
from flowlab.cli import main
from flowlab.jacobian import jacobian_view
from flowlab.reports.checks import failure_panel

CONDITIONAL = ("coupling", "stacked", "maf", "iaf", "nsf", "glow")
#: the kit's general properties (plugins/flowlab_checks)
GENERAL = (
    "invertibility",
    "logdet",
    "normalization",
    "sample_consistency",
    "batch_independence",
    "gradients",
    "dtype_device",
    "mixing",
    "stress",
    "context_dependence",
)
#: small networks keep these tests cheap; the options each flow has
SMALL = {
    "coupling": {"hidden": 8},
    "stacked": {"blocks": 2, "block_options": {"hidden": 8}},
    "maf": {"layers": 2, "hidden": 8},
    "iaf": {"layers": 2, "hidden": 8},
    "nsf": {"layers": 2, "hidden": 8},
    "glow": {"steps": 2, "hidden": 8},
}


def conditional(name: str, dim: int = 3, context_dim: int = 2, seed: int = 0) -> Bijector:
    """The flow built with a context, perturbed away from its identity initialisation, float64, eval mode."""
    torch.manual_seed(seed)
    bijector = flowlab.build(name, dim, context_dim=context_dim, **SMALL[name])
    return perturb_(bijector.double(), seed).eval()  # type: ignore[return-value]


def points(rows: int, dim: int, seed: int = 1) -> Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class ContextFree(Bijector):
    """A bijector written before conditioning existed: ``forward(self, z)``, no ``context`` anywhere."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.log_scale = nn.Parameter(torch.full((dim,), 0.5, dtype=torch.float64))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z * self.log_scale.exp(), self.log_scale.sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * (-self.log_scale).exp(), -self.log_scale.sum().expand(x.shape[0])


# --- the conditional built-ins -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONDITIONAL)
def test_a_conditional_flow_is_a_bijection_at_each_context_and_depends_on_it(name):
    bijector = conditional(name)
    assert bijector.context_dim == 2
    z, context = points(6, 3), points(6, 2, seed=2)
    x, ladj = bijector(z, context=context)
    back, ladj_back = bijector.inverse(x, context=context)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(ladj_back, -ladj)
    other, _ = bijector(z, context=context + 1)
    assert float((other - x).detach().abs().max()) > 1e-3  # the networks read the context


@pytest.mark.parametrize("name", CONDITIONAL)
def test_the_log_det_is_that_of_the_map_in_z_at_a_fixed_context(name):
    bijector = conditional(name)
    z, context = points(1, 3), points(1, 2, seed=2)
    jacobian = torch.autograd.functional.jacobian(lambda v: bijector(v[None], context=context)[0][0], z[0])
    torch.testing.assert_close(bijector(z, context=context)[1][0], torch.linalg.slogdet(jacobian).logabsdet)


@pytest.mark.parametrize("name", ["maf", "iaf"])
def test_made_keeps_the_triangle_in_z_with_a_context(name):
    """One layer: ``x_i`` depends on ``z_{≤i}`` only at a fixed context; the context reaches every coordinate, the
    first included (which reads no coordinate)."""
    torch.manual_seed(0)
    layer = perturb_(flowlab.build(name, 4, layers=1, hidden=8, context_dim=2).double(), 0).eval()
    z, context = points(1, 4), points(1, 2, seed=2)
    jacobian = torch.autograd.functional.jacobian(lambda v: layer(v[None], context=context)[0][0], z[0])
    assert bool((jacobian.triu(1) == 0).all())
    by_context = torch.autograd.functional.jacobian(lambda c: layer(z, context=c[None])[0][0], context[0])
    assert bool((by_context.abs().amax(dim=1) > 0).all())


def test_the_unconditional_default_is_unchanged():
    torch.manual_seed(0)
    plain = flowlab.build("nsf", 3, layers=2, hidden=8)
    torch.manual_seed(0)
    zero = flowlab.build("nsf", 3, layers=2, hidden=8, context_dim=0)
    assert plain.context_dim == zero.context_dim == 0
    x = points(5, 3).float()
    torch.testing.assert_close(plain.inverse(x), zero.inverse(x))


def test_stacked_needs_a_block_that_can_be_conditioned():
    with pytest.raises(OptionError, match="block='affine'"):
        flowlab.build("stacked", 3, block="affine", context_dim=2)
    with pytest.raises(OptionError, match="disagree"):
        flowlab.build("stacked", 3, context_dim=2, block_options={"context_dim": 3})


def test_context_dim_is_a_non_negative_integer():
    with pytest.raises(OptionError, match="context_dim"):
        flowlab.build("nsf", 3, context_dim=-1)
    with pytest.raises(OptionError, match="context_dim"):
        flowlab.build("nsf", 3, context_dim=2.0)


# --- Flow: the context convention ----------------------------------------------------------------------------------


def test_flow_takes_one_context_per_row_or_one_for_every_row():
    flow = Flow(conditional("nsf"))
    x, c = points(5, 3), points(1, 2, seed=2)[0]
    shared = flow.log_prob(x, context=c)
    torch.testing.assert_close(shared, flow.log_prob(x, context=c.expand(5, 2)))
    assert flow.sample(4, context=c).shape == (4, 3)
    assert flow.sample(5, context=points(5, 2)).shape == (5, 3)
    torch.manual_seed(3)
    samples, log_prob = flow.sample_and_log_prob(5, context=points(5, 2))
    torch.testing.assert_close(log_prob, flow.log_prob(samples, context=points(5, 2)))
    assert flow.log_prob(x[:0], context=c).shape == (0,)


def test_as_distribution_at_one_context():
    flow = Flow(conditional("coupling"))
    c = points(1, 2, seed=2)[0]
    distribution = flow.as_distribution(context=c)
    value = points(6, 3).reshape(2, 3, 3)
    torch.testing.assert_close(distribution.log_prob(value), flow.log_prob(value.reshape(6, 3), c).reshape(2, 3))
    assert distribution.sample((2, 4)).shape == (2, 4, 3)
    with pytest.raises(ShapeError, match=r"one context of shape \[2\]"):
        flow.as_distribution(context=points(4, 2))
    with pytest.raises(ContextError, match="got none"):
        flow.as_distribution()


# --- bad input: each a FlowlabError saying what was expected -------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "error", "message"),
    [
        (None, ContextError, r"conditional \(context_dim 2\): expected a context of shape \[5, 2\]"),
        (torch.zeros(5, 3, dtype=torch.float64), ShapeError, r"got \[5, 3\]"),
        (torch.zeros(4, 2, dtype=torch.float64), ShapeError, r"one row per point \(5\), got 4 rows"),
        (torch.zeros(3, dtype=torch.float64), ShapeError, r"\[5, 2\] \(one per row\) or \[2\]"),
        (torch.zeros(5, 2, 1, dtype=torch.float64), ShapeError, r"got \[5, 2, 1\]"),
        ([[0.0, 0.0]] * 5, DtypeError, "got list"),
        (torch.zeros(5, 2, dtype=torch.float32), DtypeError, "float64 but context is torch.float32"),
        (torch.zeros(5, 2, dtype=torch.long), DtypeError, "floating dtype"),
        (torch.tensor([[0.0, float("nan")]] * 5, dtype=torch.float64), NonFiniteError, "context: expected finite"),
    ],
)
def test_a_bad_context_is_a_clear_error(context, error, message):
    flow = Flow(conditional("nsf"))
    with pytest.raises(error, match=message):
        flow.log_prob(points(5, 3), context=context)


def test_a_context_on_another_device_is_a_device_error(monkeypatch):
    flow = Flow(conditional("coupling"))
    context = torch.zeros(5, 2, dtype=torch.float64, device="meta")
    with pytest.raises(DeviceError, match="context"):
        flow.log_prob(points(5, 3), context=context)


def test_sample_checks_the_context_against_n():
    flow = Flow(conditional("maf"))
    with pytest.raises(ShapeError, match=r"one row per point \(4\), got 3 rows"):
        flow.sample(4, context=points(3, 2))
    with pytest.raises(ContextError, match="got none"):
        flow.sample(4)


def test_without_validation_presence_and_shape_are_still_checked():
    flow = Flow(conditional("nsf"), validate=False)
    with pytest.raises(ContextError):
        flow.log_prob(points(5, 3))
    with pytest.raises(ShapeError):
        flow.log_prob(points(5, 3), context=points(4, 2))
    with pytest.raises(ContextError, match="unconditional"):
        Flow(flowlab.build("nsf", 3), validate=False).log_prob(points(5, 3).float(), context=torch.zeros(5, 2))


@pytest.mark.parametrize("name", ["affine", "nsf", "cnf", "residual"])
def test_an_unconditional_flow_refuses_a_context(name):
    flow = Flow(flowlab.build(name, 2))
    x = torch.zeros(3, 2)
    for call in (lambda: flow.log_prob(x, context=torch.zeros(3, 1)), lambda: flow.sample(3, context=torch.zeros(1))):
        with pytest.raises(ContextError, match=r"unconditional \(context_dim 0\) and takes no context"):
            call()
    with pytest.raises(ContextError, match="takes no context"):  # the bijector itself, called directly
        flow.bijector.inverse(x, context=torch.zeros(3, 1))


def test_a_conditional_layer_called_directly_checks_its_context():
    layer = flowlab.build("coupling", 3, context_dim=2)
    z = torch.zeros(4, 3)
    with pytest.raises(ContextError, match=r"AffineCoupling: this flow is conditional \(context_dim 2\)"):
        layer(z)
    with pytest.raises(ShapeError, match=r"AffineCoupling: expected a context of shape \[4, 2\]"):
        layer(z, context=torch.zeros(4, 5))


# --- backward compatibility and composition ------------------------------------------------------------------------


def test_a_context_free_third_party_bijector_keeps_working_and_refuses_a_context():
    layer = ContextFree(3)
    z = points(4, 3)
    x, _ = layer(z)
    torch.testing.assert_close(layer.inverse(x)[0], z)
    with pytest.raises(ContextError, match=r"ContextFree\.forward: this flow is unconditional"):
        layer(z, context=points(4, 2))
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    expected = normal.log_prob(z).sum(dim=1) - 1.5
    torch.testing.assert_close(Flow(layer).log_prob(x), expected)


def test_compose_passes_the_context_to_the_conditional_layers_only():
    coupling = conditional("coupling")
    stack = Compose([ContextFree(3), coupling, Permutation.reverse(3), ContextFree(3)])
    assert stack.context_dim == 2
    z, context = points(4, 3), points(4, 2, seed=2)
    x, ladj = stack(z, context=context)
    by_hand, total = z, torch.zeros(4, dtype=torch.float64)
    for layer in stack.layers:
        by_hand, part = layer(by_hand, context=context) if layer.context_dim else layer(by_hand)
        total = total + part
    torch.testing.assert_close((x, ladj), (by_hand, total))
    back, ladj_back = stack.inverse(x, context=context)
    torch.testing.assert_close((back, ladj_back), (z, -ladj))


def test_compose_refuses_layers_of_different_context_dims():
    with pytest.raises(ContextError, match=r"context_dims \[2, 3\]"):
        Compose([conditional("coupling", context_dim=2), conditional("coupling", context_dim=3)])


def test_a_conditional_flow_still_has_every_gradient():
    flow = Flow(conditional("iaf"))
    x, context = points(4, 3).requires_grad_(), points(4, 2, seed=2).requires_grad_()
    grads = torch.autograd.grad(flow.log_prob(x, context=context).sum(), [x, context, *flow.parameters()])
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert float(grads[1].abs().max()) > 0  # the density depends on the context, so does its gradient


# --- the conformance kit at drawn contexts -------------------------------------------------------------------------


def quick_cases(spec: flowlab.FlowSpec) -> list[Case]:
    """The cases the ``quick`` profile draws for ``spec`` (derandomized: the same on every run)."""
    drawn: list[Case] = []

    @settings(PROFILES["quick"])
    @given(cases(spec))
    def collect(case: Case) -> None:
        drawn.append(case)

    collect()
    return drawn


def test_the_kit_draws_the_context_dim_as_an_option_with_choices():
    """Both values of ``CONTEXT_DIMS`` among the ``quick`` profile's 10 cases of a conditional flow (so every
    property runs at a context, in the same number of cases); never for a flow without the option; never when the
    flow pins it in ``check_options``."""
    spec = flowlab.flow_spec("nsf")
    assert {case.options["context_dim"] for case in quick_cases(spec)} == set(CONTEXT_DIMS)
    assert all("context_dim" not in case.options for case in quick_cases(flowlab.flow_spec("affine")))
    pinned = replace(spec, check_options={**spec.check_options, "context_dim": 3})
    assert {case.options["context_dim"] for case in quick_cases(pinned)} == {3}


def test_case_contexts_are_drawn_from_the_seed_one_per_point():
    case = Case(dim=3, batch=4, seed=7, options={"context_dim": 2}, dtype="float32")
    context = case_context(case)
    assert context is not None and context.shape == (4, 2) and context.dtype == torch.float32
    torch.testing.assert_close(context, case_context(case))
    assert not torch.equal(context, case_context(case, salt=1))
    assert case_context(case, batch=9).shape == (9, 2)
    assert case_context(replace(case, options={})) is None


def test_done_when_nsf_with_a_context_passes_the_kit():
    """``flowlab.build("nsf", 3, context_dim=2)`` (the kit's small conditioner) passes every general property at a
    drawn context, and ``flowlab check nsf --property context_dependence`` exits 0."""
    spec = flowlab.flow_spec("nsf")
    case = Case(dim=3, batch=4, seed=3, options={**spec.check_options, "context_dim": 2}, scale=1.5)
    for name in GENERAL:
        run = run_property(checks()[name], spec, case=case)
        assert run.status == "passed", (name, run.detail)
    assert main(["check", "nsf", "--property", "context_dependence"]) == 0


def test_apply_checks_that_the_context_is_left_unchanged():
    class WritesContext(ContextFree):
        context_dim = 2

        def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
            assert context is not None
            context.mul_(2)
            return super().forward(z)

    with pytest.raises(InputModifiedError, match="forward modified its context in place"):
        apply(WritesContext(3), points(2, 3), "forward", points(2, 2))
    apply(ContextFree(3), points(2, 3), "forward")  # no context: called without the keyword


def test_the_failure_panel_names_the_context_dim():
    case = Case(dim=3, batch=1, seed=0, options={"context_dim": 2})
    run = PropertyRun("f", "logdet", "cpu", "failed", counterexample=Counterexample(case=case, detail="wrong"))
    console = Console(width=200, record=True)
    console.print(failure_panel(run))
    assert "dim=3 context_dim=2 (contexts drawn from the seed)" in console.export_text()


def test_the_jacobian_view_at_a_context():
    bijector = conditional("glow")
    z, c = points(1, 3)[0], points(1, 2, seed=2)[0]
    view = jacobian_view(bijector, z, c)
    assert abs(view.logdet_flow - view.logdet_autograd) < 1e-10
    assert abs(view.logdet_flow - jacobian_view(bijector, z, c + 1).logdet_flow) > 1e-6


# --- the documentation's code --------------------------------------------------------------------------------------


def doc_block(page: str, marker: str) -> dict:
    """Execute the Python block of ``docs/<page>`` that contains ``marker``; its namespace."""
    text = (Path(__file__).resolve().parents[1] / "docs" / page).read_text()
    [code] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if marker in b]
    namespace: dict = {}
    exec(compile(code, f"{page}:{marker}", "exec"), namespace)
    return namespace


def test_the_conditioning_page_runs():
    namespace = doc_block("conditioning.md", "context_dim=2")
    assert namespace["log_p"].shape == (5,) and namespace["samples"].shape == (100, 3)
    assert namespace["paired"].shape == (5, 3) and namespace["log_q"].shape == (5,)


def test_the_conditional_plugin_example_is_a_conditional_bijector():
    namespace = doc_block("writing-plugins.md", "class ConditionalScaleShift")
    layer = perturb_(namespace["ConditionalScaleShift"](3, context_dim=2).double(), 0)
    z, c = points(4, 3), points(4, 2, seed=2)
    x, ladj = layer(z, context=c)
    torch.testing.assert_close(layer.inverse(x, context=c), (z, -ladj))
    jacobian = torch.autograd.functional.jacobian(lambda v: layer(v[None], context=c[:1])[0][0], z[0])
    torch.testing.assert_close(ladj[0], torch.linalg.slogdet(jacobian).logabsdet)
    assert float((layer(z, context=c + 1)[0] - x).detach().abs().max()) > 1e-3
    with pytest.raises(ContextError):
        layer(z)
    assert namespace["OPTIONS"]["context_dim"].default == 0
