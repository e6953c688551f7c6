"""Sweeps instead of single points: ``stress`` over dimensions × input scales with float32 points judged, option
sizes drawn from a grid, contexts at the points' scales and in both call forms, memory layouts (``call_forms``);
each shown failing a planted bug (``tests/mutants/sweeps.py``) only with the sweep.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from flowlab_checks import invertibility, stress
from hypothesis import given, settings
from torch import Tensor, nn

from flowlab import Bijector, FlowSpec, Option
from flowlab.checks import SkipCase, build_case_bijector, case_context, check_spec, strategies
from flowlab.checks.runner import run_property
from flowlab.plugins import import_file
from flowlab.spec import Case

MUTANTS = import_file(Path(__file__).resolve().parent / "mutants" / "sweeps.py")


def test_a_logdet_that_overflows_at_d64_and_small_inputs_fails_only_the_sweep(monkeypatch):
    spec = MUTANTS.SPECS["mutant_small_input_overflow"]
    run = run_property(stress.CHECK, spec)
    assert run.status == "failed" and "d=64, input scale 0.1" in run.detail, run.detail
    monkeypatch.setattr(stress, "STRESS_DIMS", (32,))  # one dimension, as before
    assert run_property(stress.CHECK, spec).status == "passed"


def test_float32_points_are_judged_beyond_their_conditioning():
    spec = MUTANTS.SPECS["mutant_float32_cancellation"]
    case = Case(dim=32, batch=8, seed=0)
    run = run_property(stress.CHECK, spec, case=case)
    assert run.status == "failed" and "points" in run.detail, run.detail
    measurements = stress.sweep(spec, case)
    tolerance = stress.CHECK.tolerance
    logdets = [m for m in measurements if m.label.startswith("float32 vs float64 log-det")]
    points = [m for m in measurements if m.label.startswith("float32 vs float64 points")]
    assert max(float(m.errors.max()) for m in logdets) <= tolerance  # the log-dets alone: what was judged before
    assert max(float(m.errors.max()) for m in points) > tolerance


def test_the_sweep_covers_the_floor_then_is_cost_capped_and_says_which_dimensions_it_reached(monkeypatch):
    spec = MUTANTS.SPECS["mutant_small_input_overflow"]  # overflows at d = 64 only: the floor must reach it
    monkeypatch.setattr(stress, "STRESS_SECONDS", {"quick": 0.0, "thorough": 600.0})
    result = stress.run(spec, Case(dim=1, batch=2, seed=0))
    assert result.status == "failed" and "dims 32, 64 ×" in result.detail, result.detail
    assert "128, 256, 512 left out: over the 0 s budget of the quick profile" in result.detail
    thorough = stress.run(spec, Case(dim=1, batch=2, seed=0, profile="thorough"))  # the budget is the profile's
    assert "dims 32, 64, 128, 256, 512 ×" in thorough.detail and "left out" not in thorough.detail, thorough.detail
    monkeypatch.setattr(stress, "STRESS_FLOOR", 32)
    result = stress.run(spec, Case(dim=1, batch=2, seed=0))
    assert result.status == "passed" and "dims 32 ×" in result.detail and "64, 128, 256, 512 left out" in result.detail


def test_stress_dims_stay_within_what_the_flow_declares():
    def spec(**fields: object) -> FlowSpec:
        return FlowSpec(name="s", summary="s", build=lambda dim: None, **fields)  # type: ignore[arg-type]

    assert stress.stress_dims(spec()) == [32, 64, 128, 256, 512]
    assert stress.stress_dims(spec(max_dim=100)) == [32, 64, 100]
    assert stress.stress_dims(spec(min_dim=33, allows_dim=lambda d: d % 2 == 0)) == [34, 64, 128, 256, 512]
    assert stress.stress_dims(spec(max_dim=3)) == [3]


def test_a_bug_at_a_non_default_width_fails_only_with_drawn_sizes(monkeypatch):
    spec = MUTANTS.SPECS["mutant_default_width"]
    run = run_property(check_spec("logdet"), spec)
    assert run.status == "failed" and run.counterexample is not None, run.detail
    assert run.counterexample.case.options["hidden"] != 64
    monkeypatch.setattr(strategies, "size_grid", lambda spec, name, option: [])  # default sizes only, as before
    assert run_property(check_spec("logdet"), spec).status == "passed"


def test_size_grids_stay_at_or_below_the_default_within_the_declared_range():
    spec = FlowSpec(name="s", summary="s", build=lambda dim: None)  # type: ignore[arg-type]
    grid = strategies.size_grid
    assert grid(spec, "hidden", Option(64, low=1)) == [64, 63, 32]
    assert grid(spec, "layers", Option(4, low=1, high=256)) == [4, 3, 2]
    assert grid(spec, "bins", Option(8, low=2, high=256)) == [8, 7, 5]
    assert grid(spec, "depth", Option(2, low=1)) == [2, 1]
    assert grid(spec, "even", Option(8, low=1, check=lambda n: n % 2 == 0)) == [8, 4]
    others = (
        Option(0, low=0),
        Option(1, low=1),
        Option(3.0, low=1e-3),
        Option(True),
        Option(64),
        Option(2, choices=(1, 2)),
    )
    for option in others:  # no room below the default, not an integer, no declared range, choices
        assert grid(spec, "other", option) == []


PINNED = FlowSpec(
    name="pinned",
    summary="s",
    build=lambda dim, hidden, layers: None,  # type: ignore[arg-type]
    options={"hidden": Option(64, low=1), "layers": Option(4, low=1)},
    check_options={"layers": 2},
)


@settings(max_examples=30, database=None)
@given(drawn=strategies.option_values(PINNED))
def test_drawn_sizes_leave_pinned_options_alone(drawn):
    assert drawn["layers"] == 2 and drawn["hidden"] in {64, 63, 32}


class WidthAtLeastDim(Bijector):
    """``x = z + b``; refuses a ``hidden`` width below its dimension, as a MADE that needs every degree may."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        if hidden < 4 * dim:
            from flowlab.errors import OptionError

            raise OptionError(f"hidden={hidden} is below 4·dim = {4 * dim}")
        self.dim, self.shift = dim, nn.Parameter(torch.zeros(dim))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z + self.shift, z.new_zeros(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x - self.shift, x.new_zeros(x.shape[0])


def test_a_drawn_size_the_flow_refuses_is_a_skipped_case_with_the_reason():
    spec = FlowSpec(
        name="width_at_least_dim",
        summary="s",
        build=WidthAtLeastDim,
        options={"hidden": Option(64, low=1)},
        explanation="test",
    )
    with pytest.raises(SkipCase, match=r"refuses the drawn size \{'hidden': 32\}.*below 4·dim"):
        build_case_bijector(spec, Case(dim=10, batch=1, seed=0, options={"hidden": 32}))
    with pytest.raises(Exception, match="below 4·dim"):  # at the default: the flow's own failure
        build_case_bijector(spec, Case(dim=20, batch=1, seed=0, options={"hidden": 64}))


def test_contexts_are_drawn_at_the_points_scale():
    case = Case(dim=2, batch=4, seed=3, options={"context_dim": 2}, scale=1.0)
    unit = case_context(case)
    assert unit is not None
    torch.testing.assert_close(case_context(replace(case, scale=4.0)), 4 * unit)
    torch.testing.assert_close(case_context(case, scale=25.0), 25 * unit)


def test_a_context_used_wrongly_only_at_large_values_fails_with_scaled_contexts(monkeypatch):
    spec = MUTANTS.SPECS["mutant_context_clamped"]
    assert run_property(invertibility.CHECK, spec).status == "failed"
    unit = case_context
    # contexts of a fixed small scale, as before the sweep (0.5: the clamp at 3 is 6 standard deviations away, so no
    # drawn case reaches it; at N(0, 1) one of the ~100 drawn context values passes 3 in some sets of drawn cases)
    monkeypatch.setattr(invertibility, "case_context", lambda case, *a, **k: unit(case, *a, **{**k, "scale": 0.5}))
    run = run_property(invertibility.CHECK, spec)
    assert run.status == "passed", run.detail


@pytest.mark.parametrize("name", ["mutant_shared_context", "mutant_strided_input"])
def test_a_flow_wrong_in_one_call_form_fails_call_forms_only(name):
    spec = MUTANTS.SPECS[name]
    run = run_property(check_spec("call_forms"), spec)
    assert run.status == "failed", run.detail
    for other in ("invertibility", "logdet", "batch_independence", "sample_consistency", "state"):
        assert run_property(check_spec(other), spec).status == "passed", other


def test_the_next_dimension_is_expected_to_grow_as_the_last_two_did_at_least_quadratically():
    assert stress.next_cost([0.1]) == pytest.approx(0.4)
    assert stress.next_cost([0.1, 0.2]) == pytest.approx(0.8)  # slower than quadratic: still 4x
    assert stress.next_cost([0.01, 0.08]) == pytest.approx(0.64)  # cubic (a d×d matrix formed per call): 8x
