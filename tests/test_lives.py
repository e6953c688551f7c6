"""Flows that have lived (``flowlab.checks.lives``): the drawn life of a case, fresh tensors for every call, training
mode's exactness, and the ``state`` property; each shown failing a planted bug only with the mechanism, and
correct-but-unusual flows (dropout in a conditioner, batch statistics in training mode, a learned non-Gaussian
base) passing every property.
"""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from flowlab_checks import logdet
from torch import Tensor, distributions, nn

from flowlab import Bijector, Compose, FlowSpec
from flowlab.checks import Case, build_case_bijector, check_spec, checks, lives, measure, strategies
from flowlab.checks.runner import run_property
from flowlab.plugins import import_file

MUTANTS = import_file(Path(__file__).resolve().parent / "mutants" / "lives.py")
DISCRETE = import_file(Path(__file__).resolve().parent / "mutants" / "discrete.py")


def only_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Draw fresh flows only, as the kit did before lives."""
    monkeypatch.setattr(strategies, "LIVES", ("fresh",))


@pytest.mark.parametrize(
    ("name", "prop"), [("mutant_stale_inverse_cache", "invertibility"), ("mutant_running_stats_logdet", "logdet")]
)
def test_a_bug_that_needs_a_history_fails_only_on_lived_flows(name, prop, monkeypatch):
    spec = MUTANTS.SPECS[name]
    run = run_property(check_spec(prop), spec)
    assert run.status == "failed" and run.counterexample is not None, run.detail
    assert run.counterexample.case.life != "fresh"
    assert "life" in run.counterexample.reproduce
    only_fresh(monkeypatch)
    assert run_property(check_spec(prop), spec).status == "passed"


def test_a_transform_cache_cannot_answer_for_the_inverse(monkeypatch):
    """Pyro's Householder with a wrong-order inverse passed invertibility through its (x, y) cache."""
    spec = MUTANTS.SPECS["mutant_transform_cache"]
    run = run_property(check_spec("invertibility"), spec)
    assert run.status == "failed" and run.max_error is not None and run.max_error > 0.01, run.detail
    monkeypatch.setattr(measure, "fresh", lambda tensor: tensor)  # the object the last call returned, as before
    assert run_property(check_spec("invertibility"), spec).status == "passed"


def test_apply_passes_a_new_tensor_in_the_same_layout():
    seen = []

    class Spy(Bijector):
        dim = 3

        def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
            seen.append(z)
            return z, z.new_zeros(z.shape[0])

        inverse = forward

    points = torch.randn(3, 4)
    for given in (points[:, :3], points[:, :3].t().contiguous().t(), points[:1, :3].expand(3, 3)):
        out, _ = measure.apply(Spy(), given, "forward")
        assert seen[-1] is not given and seen[-1].stride() == given.stride() and torch.equal(out, given)


def test_a_logdet_wrong_only_in_training_mode_fails(monkeypatch):
    spec = MUTANTS.SPECS["mutant_train_only_logdet"]
    run = run_property(logdet.CHECK, spec)
    assert run.status == "failed" and "training mode" in run.detail, run.detail
    monkeypatch.setattr(logdet, "modes", lambda spec: (False,))  # eval mode only, as before
    assert run_property(logdet.CHECK, spec).status == "passed"


def test_training_mode_is_checked_only_where_it_is_exact_per_row():
    spec = MUTANTS.SPECS["mutant_train_only_logdet"]
    assert logdet.modes(spec) == (False, True)
    assert logdet.modes(replace(spec, min_train_batch=2)) == (False,)  # batch statistics: not per row
    assert logdet.modes(replace(spec, logdet="stochastic")) == (False,)  # logdet_estimator's


def test_statistics_missing_from_the_state_dict_fail_state_and_nothing_else():
    spec = MUTANTS.SPECS["mutant_unsaved_statistics"]
    run = run_property(check_spec("state"), spec)
    assert run.status == "failed" and "fresh instance holding its saved state" in run.detail, run.detail
    for name in ("invertibility", "logdet", "batch_independence", "sample_consistency"):
        assert run_property(check_spec(name), spec).status == "passed", name


def test_a_state_dict_that_weights_only_loading_refuses_fails_state():
    class ExtraState(Bijector):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.dim, self.shift = dim, nn.Parameter(torch.zeros(dim))

        def get_extra_state(self) -> object:
            return Fraction(1, 3)  # not a tensor nor a plain container: torch.load(weights_only=True) refuses it

        def set_extra_state(self, state: object) -> None:
            pass

        def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
            return z + self.shift, z.new_zeros(z.shape[0])

        def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
            return x - self.shift, x.new_zeros(x.shape[0])

    spec = FlowSpec(name="extra_state", summary="test", build=ExtraState, explanation="test")
    run = run_property(check_spec("state"), spec)
    assert run.status == "failed" and "raised" in run.detail and "weights_only" in run.detail, run.detail


def spec_of(name: str, build: object, **fields: object) -> FlowSpec:
    return FlowSpec(name=name, summary="test", build=build, explanation="test", **fields)  # type: ignore[arg-type]


def test_a_life_is_the_same_every_time_and_moves_parameters_and_buffers():
    spec = spec_of("batch_norm", batch_norm_flow, min_train_batch=2)
    case = Case(dim=3, batch=2, seed=5, life="trained")
    first, again = build_case_bijector(spec, case), build_case_bijector(spec, case)
    fresh = build_case_bijector(spec, replace(case, life="fresh"))
    for (name, value), other, initial in zip(
        first.state_dict().items(), again.state_dict().values(), fresh.state_dict().values(), strict=True
    ):
        assert torch.equal(value, other), name  # a copy of the one life, whatever the dtype asked for later
        assert not torch.equal(value, initial), name  # every parameter and running statistic has moved
    float32 = build_case_bijector(spec, replace(case, dtype="float32"))
    assert torch.equal(float32.bijectors[1].running_log_std, first.bijectors[1].running_log_std.float())


def test_a_fixed_flow_lives_without_its_parameters_changing():
    spec = spec_of("fixed_batch_norm", batch_norm_flow, min_train_batch=2, fixed_parameters=True)
    case = Case(dim=3, batch=2, seed=5, life="trained")
    lived, fresh = build_case_bijector(spec, case), build_case_bijector(spec, replace(case, life="fresh"))
    for (name, value), initial in zip(lived.named_parameters(), fresh.parameters(), strict=True):
        assert torch.equal(value, initial), name
    statistics = [flow.bijectors[1].running_log_std for flow in (lived, fresh)]
    assert not torch.equal(*statistics)  # it was used in training mode


def test_a_reloaded_life_holds_another_instances_state():
    spec = spec_of("batch_norm", batch_norm_flow, min_train_batch=2)
    case = Case(dim=3, batch=2, seed=5, life="reloaded")
    donor = build_case_bijector(spec, replace(case, seed=lives.other_seed(case.seed), life="fresh"))
    reloaded, own = build_case_bijector(spec, case), build_case_bijector(spec, replace(case, life="fresh"))
    for (name, value), other, initial in zip(
        reloaded.state_dict().items(), donor.state_dict().values(), own.state_dict().values(), strict=True
    ):
        assert torch.equal(value, other), name
        assert name.endswith(("running_mean", "running_log_std")) or not torch.equal(value, initial), name


# correct flows, unusual ones: they must pass every property


def dropout_coupling(dim: int) -> Bijector:
    """An affine coupling whose conditioner has dropout: training mode draws a mask per call (a different map each
    time, each a bijection with its log-det), eval mode is deterministic."""
    coupling = DISCRETE.Coupling(dim)
    coupling.net.insert(2, nn.Dropout(0.2))
    return coupling


def batch_norm_flow(dim: int) -> Bijector:
    """An affine coupling (in 2 dimensions and up), then batch normalisation (batch statistics in training mode,
    running ones in eval mode; Dinh et al. 2017), its log-det right."""
    layer = MUTANTS.RunningBatchNorm(dim, forget=False)
    return Compose([DISCRETE.Coupling(dim), layer]) if dim > 1 else layer


def learned_base(dim: int, *, dtype: torch.dtype, device: torch.device) -> distributions.Distribution:
    """A Laplace base whose location and scale were fitted earlier (fixed here): heavier tails than the normal."""
    loc = torch.linspace(-0.5, 0.5, dim, dtype=dtype, device=device)
    scale = torch.full((dim,), math.exp(0.3), dtype=dtype, device=device)
    return distributions.Independent(distributions.Laplace(loc, scale), 1)


UNUSUAL = {
    "dropout_conditioner": spec_of("dropout_conditioner", dropout_coupling, min_dim=2),
    "batch_statistics": spec_of("batch_statistics", batch_norm_flow, min_train_batch=2),
    "learned_laplace_base": spec_of("learned_laplace_base", dropout_coupling, min_dim=2, base=learned_base),
}


@pytest.mark.parametrize("name", sorted(UNUSUAL))
def test_a_correct_unusual_flow_passes_every_property(name):
    spec = UNUSUAL[name]
    for check in checks().values():
        run = run_property(check, spec)
        assert run.status in {"passed", "not_applicable", "inconclusive"}, (check.name, run.status, run.detail)
