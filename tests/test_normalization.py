"""The ``normalization`` property: a verdict on every case, with its power stated and sufficient.

A 2 % density error, constant or confined to a region holding 10 % of the mass, fails at d = 3 and 16 in the quick
profile and at d = 3, 16 and 64 in the thorough one; the correct flow passes the same cases; non-finite values at a
few of the flow's samples are reported with their share of the mass instead of failing the check; a stochastic
log-det is replaced by the autograd one. The planted bugs of ``tests/mutants/normalization.py`` run in
``test_mutants.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from flowlab_checks import context_dependence, normalization
from torch import Tensor

import flowlab
from flowlab import CONTEXT_OPTION, Bijector, FlowSpec, Support
from flowlab.checks import Case
from flowlab.checks.runner import run_property

#: ``Φ⁻¹(0.9)``: ``z₀`` above it holds 10 % of the base's mass
TOP_DECILE = 1.2815515655446004


class PlantedError(Bijector):
    """``stacked``'s bijector whose inverse log-det (the ``log_prob`` direction) is off by ``log 1.02`` where the
    base point has ``z₀ > threshold``: a density 2 % too high on a region holding ``1 − Φ(threshold)`` of the mass
    (``−inf``: everywhere). ``nan_beyond`` makes ``log_prob`` NaN where ``z₀`` exceeds it instead."""

    def __init__(self, dim: int, *, threshold: float = -math.inf, error: float = 0.02, nan_beyond: float = math.inf):
        super().__init__()
        self.dim, self.threshold, self.offset, self.nan_beyond = dim, threshold, math.log1p(error), nan_beyond
        self.inner = flowlab.build("stacked", dim)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.inner(z)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, ladj = self.inner.inverse(x)
        ladj = ladj + self.offset * (z[:, 0] > self.threshold)
        return z, torch.where(z[:, 0] > self.nan_beyond, math.nan, ladj)


def planted(name: str, **error: float) -> FlowSpec:
    return FlowSpec(
        name=name, summary="stacked with a planted error", build=lambda dim: PlantedError(dim, **error), min_dim=2
    )


ERRORS = {
    "correct": planted("correct", error=0.0),
    "constant": planted("constant"),
    "region": planted("region", threshold=TOP_DECILE),
}
CASES = [("quick", 3), ("quick", 16), ("thorough", 3), ("thorough", 16), ("thorough", 64)]


@pytest.mark.parametrize(("profile", "dim"), CASES)
@pytest.mark.parametrize("error", sorted(ERRORS))
def test_a_two_percent_error_fails_and_the_correct_flow_passes(error, profile, dim):
    result = normalization.run(ERRORS[error], Case(dim=dim, batch=4, seed=1, profile=profile))
    assert result.status == ("passed" if error == "correct" else "failed"), result.detail
    assert result.detectable is not None and result.detectable < 0.002  # the stated power covers the region error
    if error != "correct":
        assert result.max_error is not None and result.tolerance is not None
        assert result.max_error > result.tolerance


def test_the_power_is_stated_per_profile():
    quick, thorough = (
        normalization.run(ERRORS["correct"], Case(dim=3, batch=4, seed=1, profile=p)) for p in ("quick", "thorough")
    )
    assert quick.detectable is not None and thorough.detectable is not None
    assert thorough.detectable < quick.detectable
    assert quick.data["samples"] == normalization.SAMPLES["quick"] < thorough.data["samples"]


def test_the_power_reaches_the_json_report():
    run = run_property(normalization.CHECK, ERRORS["correct"])
    assert run.status == "passed" and run.detectable is not None and 0.001 < run.detectable < 0.002


def test_non_finite_log_prob_at_a_few_samples_is_reported_with_its_share_not_failed():
    spec = planted("nan_tail", error=0.0, nan_beyond=3.3)  # 1 − Φ(3.3) ≈ 5e-4 of the mass
    result = normalization.run(spec, Case(dim=3, batch=4, seed=1))
    assert result.status == "passed", result.detail
    count = result.data["unresolved_samples"]
    assert 0 < count <= 4 and f"NaN or inf at {count} of the flow's 4096 samples" in result.detail


def test_non_finite_log_prob_on_more_of_the_mass_than_the_tolerance_fails():
    spec = planted("nan_tail", error=0.0, nan_beyond=2.5)  # 1 − Φ(2.5) ≈ 6e-3 of the mass
    result = normalization.run(spec, Case(dim=3, batch=4, seed=1))
    assert result.status == "failed" and result.data["unresolved_samples"] > 4, result.detail


def test_a_stochastic_log_det_is_replaced_by_the_autograd_one():
    stochastic = FlowSpec(
        name="correct", summary="", build=lambda dim: PlantedError(dim, error=0.0), logdet="stochastic"
    )
    result = normalization.run(stochastic, Case(dim=4, batch=4, seed=1))
    assert result.status == "passed" and result.data["logdet"] == "autograd", result.detail
    assert normalization.run(ERRORS["correct"], Case(dim=4, batch=4, seed=1)).data["logdet"] == "flow"


class ContextScale(Bijector):
    """``x = z·exp(c₀·a)``: a conditional flow with a correct, context-dependent log-det."""

    def __init__(self, dim: int, context_dim: int) -> None:
        super().__init__()
        self.dim, self.context_dim = dim, context_dim
        self.log_scale = torch.nn.Parameter(torch.zeros(dim))

    def _a(self, context: Tensor) -> Tensor:
        return context[:, :1] * self.log_scale

    def forward(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        return z * self._a(context).exp(), self._a(context).sum(dim=-1)

    def inverse(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        return x * (-self._a(context)).exp(), -self._a(context).sum(dim=-1)


def test_a_conditional_flow_is_checked_at_a_drawn_context_and_at_a_second_one():
    spec = FlowSpec(
        name="context_scale",
        summary="",
        build=lambda dim, *, context_dim: ContextScale(dim, context_dim),
        options={"context_dim": CONTEXT_OPTION},
    )
    case = Case(dim=3, batch=2, seed=1, options={"context_dim": 2})
    first, second = normalization.run(spec, case), context_dependence.run(spec, case)
    assert first.status == second.status == "passed", (first.detail, second.detail)
    assert first.data["context"] != second.data["context"] and "at context" in second.detail


class OntoUnitCube(PlantedError):
    """``x = sigmoid(y)`` after ``PlantedError``'s map: a flow onto ``(0, 1)^d``, its error (if any) kept."""

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        y, ladj = super().forward(z)
        sigmoid = torch.nn.functional.logsigmoid
        return torch.sigmoid(y), ladj + (sigmoid(y) + sigmoid(-y)).sum(dim=-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, ladj = super().inverse(torch.logit(x))
        return z, ladj - (x.log() + torch.log1p(-x)).sum(dim=-1)


@pytest.mark.parametrize("dim", [3, 16])
@pytest.mark.parametrize(("error", "status"), [(0.0, "passed"), (0.02, "failed")])
def test_a_flow_on_the_unit_cube_is_integrated_over_its_support(dim, error, status):
    spec = FlowSpec(
        name="cube",
        summary="",
        build=lambda dim: OntoUnitCube(dim, error=error, threshold=TOP_DECILE),
        min_dim=2,
        support=Support(0.0, 1.0),
    )
    result = normalization.run(spec, Case(dim=dim, batch=4, seed=1, support=spec.support))
    assert result.status == status, result.detail
    assert result.data["outside_unresolved"] == 0  # every draw off the sampler's image lies inside the cube
