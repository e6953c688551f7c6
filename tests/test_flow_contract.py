"""The flow contract (``FlowSpec.support``, ``allows_dim``, ``dtypes``, ``eval_deterministic``): correct flows that
are unusual pass once they say what they are, and fail without it with a message naming the field to declare.

Each flow below is correct: a map of R^d onto the unit cube, one defined in even dimensions only, one that computes
in float64 only. The kit used to assume every flow is a bijection of R^d in float32 and float64 at every dimension.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import Tensor, nn

import flowlab
from flowlab import Bijector, DomainError, DtypeError, FlowSpec, ShapeError, Support
from flowlab.checks import Case, check_spec, checks
from flowlab.checks.runner import run_property
from flowlab.support import REAL, support_of
from flowlab.testing import check_flow


class UnitCube(Bijector):
    """``x = sigmoid(a ⊙ z + b)``: R^d onto (0, 1)^d; ``log|det ∂x/∂z| = Σ log a + log σ(u) + log σ(−u)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.log_a = nn.Parameter(torch.zeros(dim))
        self.b = nn.Parameter(torch.zeros(dim))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        u = z * self.log_a.exp() + self.b
        ladj = self.log_a + nn.functional.logsigmoid(u) + nn.functional.logsigmoid(-u)
        return torch.sigmoid(u), ladj.sum(-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u = torch.log(x) - torch.log1p(-x)
        return (u - self.b) * (-self.log_a).exp(), (-self.log_a - torch.log(x) - torch.log1p(-x)).sum(-1)


class PairRotation(Bijector):
    """Each pair of coordinates ``(z_2i, z_2i+1)`` rotated by ``θ_i`` and scaled by ``exp(s_i)``: defined in even
    dimensions only; ``log|det ∂x/∂z| = 2 Σ s_i``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ShapeError(f"PairRotation works on pairs of coordinates: expected an even dim, got {dim}")
        self.dim = dim
        self.theta = nn.Parameter(torch.zeros(dim // 2))
        self.log_scale = nn.Parameter(torch.zeros(dim // 2))

    def _turn(self, points: Tensor, sign: float) -> Tensor:
        pairs = points.reshape(points.shape[0], -1, 2)
        cos, sin = torch.cos(self.theta), torch.sin(self.theta) * sign
        scale = (sign * self.log_scale).exp()
        first = (cos * pairs[..., 0] - sin * pairs[..., 1]) * scale
        second = (sin * pairs[..., 0] + cos * pairs[..., 1]) * scale
        return torch.stack([first, second], dim=-1).reshape(points.shape)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._turn(z, 1.0), (2 * self.log_scale.sum()).expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pairs = x.reshape(x.shape[0], -1, 2) * (-self.log_scale).exp()[:, None]
        cos, sin = torch.cos(self.theta), torch.sin(self.theta)
        first = cos * pairs[..., 0] + sin * pairs[..., 1]
        second = -sin * pairs[..., 0] + cos * pairs[..., 1]
        return torch.stack([first, second], dim=-1).reshape(x.shape), (-2 * self.log_scale.sum()).expand(x.shape[0])


class Float64Affine(Bijector):
    """``x = a ⊙ z + b`` computed in float64 only: any other dtype is refused with a ``DtypeError``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.log_a = nn.Parameter(torch.zeros(dim, dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros(dim, dtype=torch.float64))

    def _refuse(self, points: Tensor) -> None:
        if points.dtype != torch.float64 or self.log_a.dtype != torch.float64:
            raise DtypeError(f"Float64Affine computes in float64 only, got {points.dtype} / {self.log_a.dtype}")

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._refuse(z)
        return z * self.log_a.exp() + self.b, self.log_a.sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._refuse(x)
        return (x - self.b) * (-self.log_a).exp(), -self.log_a.sum().expand(x.shape[0])


def spec(name: str, build: type[Bijector], **fields: object) -> FlowSpec:
    return FlowSpec(name=name, summary="a correct, unusual flow", build=build, explanation="see the test", **fields)  # type: ignore[arg-type]


UNIT_CUBE = spec("unit_cube", UnitCube, support=Support(0.0, 1.0), max_dim=2)  # quadrature normalization (d <= 2)
EVEN_ONLY = spec("even_only", PairRotation, allows_dim=lambda dim: dim % 2 == 0)
FLOAT64_ONLY = spec("float64_only", Float64Affine, dtypes=("float64",))


@pytest.mark.parametrize("declared", [UNIT_CUBE, EVEN_ONLY, FLOAT64_ONLY], ids=lambda s: s.name)
def test_a_correct_unusual_flow_that_says_what_it_is_passes_every_property(declared):
    runs = check_flow(declared)
    bad = [(run.check, run.status, run.detail) for run in runs if run.status in ("failed", "uncovered", "inconclusive")]
    assert not bad, bad
    assert {run.check for run in runs if run.status == "passed"} >= {"build", "invertibility", "logdet", "gradients"}


@pytest.mark.parametrize(
    ("declared", "field", "prop"),
    [
        (UNIT_CUBE, "support", "invertibility"),
        (EVEN_ONLY, "allows_dim", "build"),
        (FLOAT64_ONLY, "dtypes", "dtype_device"),
    ],
    ids=["support", "allows_dim", "dtypes"],
)
def test_the_same_flow_without_its_declaration_fails_naming_the_field(declared, field, prop):
    default = FlowSpec.__dataclass_fields__[field].default
    undeclared = dataclasses.replace(declared, **{field: default})
    run = run_property(check_spec(prop), undeclared)
    assert run.status == "failed" and f"FlowSpec.{field}" in run.detail, run.detail


def test_the_support_property_catches_samples_outside_the_declared_support():
    class Overshoot(UnitCube):  # declares (0, 1)^d but reaches 1.1
        def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
            x, ladj = super().forward(z)
            return 1.2 * x - 0.1, ladj + self.dim * math.log(1.2)

    run = run_property(check_spec("support"), dataclasses.replace(UNIT_CUBE, name="overshoot", build=Overshoot))
    assert run.status == "failed" and "forward(z) leaves (0, 1)^d" in run.detail
    assert run_property(check_spec("support"), UNIT_CUBE).status == "passed"
    assert run_property(check_spec("support"), dataclasses.replace(UNIT_CUBE, support=REAL)).status == "not_applicable"


def test_points_outside_the_support_are_refused_by_log_prob():
    flow = flowlab.Flow(UnitCube(2), support=Support(0.0, 1.0))
    assert torch.isfinite(flow.log_prob(torch.tensor([[0.2, 0.9]]))).all()
    with pytest.raises(DomainError, match=r"1 of 2 row\(s\) \(1\) lie outside the flow's support \(0, 1\)\^d"):
        flow.log_prob(torch.tensor([[0.2, 0.9], [0.5, 1.0]]))


def test_a_support_maps_the_real_line_inside_and_near_its_edges_and_is_read_off_a_base():
    box = Support(0.0, 1.0)
    points = box.from_real(torch.tensor([[-40.0, 0.0, 40.0]], dtype=torch.float32))
    assert box.contains(points).all() and points[0, 0] < 1e-6 and points[0, 2] > 1 - 1e-6
    half = Support(low=2.0)
    assert half.contains(half.from_real(torch.tensor([[-50.0, 50.0]]))).all()
    uniform = torch.distributions.Independent(torch.distributions.Uniform(-torch.ones(3), 2 * torch.ones(3)), 1)
    assert support_of(uniform) == Support(-1.0, 2.0) and support_of(torch.distributions.Normal(0, 1)).is_real
    with pytest.raises(flowlab.OptionError, match="low < high"):
        Support(1.0, 0.0)


def test_a_flow_only_in_even_dimensions_is_drawn_in_even_dimensions():
    from flowlab.checks.strategies import allowed_dims

    assert allowed_dims(EVEN_ONLY) == [2, 4, 6, 8, 10]
    with pytest.raises(flowlab.OptionError, match="is not defined in 3 dimensions"):
        flowlab.registry.build_from_spec(EVEN_ONLY, 3)


class NoisyEval(Bijector):
    """An exact affine map whose log-det carries zero-mean noise in eval mode too (as normflows' ``Residual`` does):
    unbiased, but random."""

    def __init__(self, dim: int, bias: float = 0.0) -> None:
        super().__init__()
        self.dim, self.bias = dim, bias
        self.log_a = nn.Parameter(torch.zeros(dim))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        noise = torch.randn(z.shape[0], dtype=z.dtype, device=z.device)
        return z * self.log_a.exp(), self.log_a.sum() + 0.3 * noise + self.bias

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        noise = torch.randn(x.shape[0], dtype=x.dtype, device=x.device)
        return x * (-self.log_a).exp(), -self.log_a.sum() + 0.3 * noise - self.bias


def test_a_random_eval_log_det_must_be_declared_and_is_then_checked_in_expectation():
    undeclared = spec("noisy", NoisyEval, logdet="stochastic")
    run = run_property(check_spec("determinism"), undeclared)
    assert run.status == "failed" and "FlowSpec.eval_deterministic=False" in run.detail
    declared = dataclasses.replace(undeclared, eval_deterministic=False)
    for name in ("determinism", "logdet_estimator", "invertibility", "batch_independence", "dtype_device"):
        assert run_property(check_spec(name), declared).status == "passed", name
    assert run_property(check_spec("logdet"), declared).status == "not_applicable"
    biased = dataclasses.replace(declared, build=lambda dim: NoisyEval(dim, bias=0.2))
    run = run_property(check_spec("logdet_estimator"), biased)
    assert run.status == "failed" and run.max_error > 5


def test_a_flow_that_cannot_be_built_is_one_failure_not_one_per_property():
    def broken(dim: int) -> Bijector:
        raise RuntimeError("a typo in the constructor")

    runs = check_flow(spec("broken", broken))
    failed = [run for run in runs if run.status == "failed"]
    assert [run.check for run in failed] == ["build"] and "a typo in the constructor" in failed[0].detail
    assert all("the flow cannot be built" in run.detail for run in runs if run.status == "skipped")
    assert len(runs) == len(checks())


class OffFromDimTwo(Bijector):
    """``x = z``, log-det 0, reported as 2e-8 (just over the logdet tolerance of 1e-8) in 1 dimension and as 0.5
    from 2 dimensions on: the shrunk case is the small one, the worst the large one (Pyro's Sylvester, planted)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.offset = 2e-8 if dim == 1 else 0.5

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z.clone(), z.new_full((z.shape[0],), self.offset)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.clone(), x.new_zeros(x.shape[0])


def test_a_failure_reports_its_worst_case_beside_the_shrunk_one_with_its_own_reproduce_command():
    run = run_property(check_spec("logdet"), spec("off_from_dim_two", OffFromDimTwo))
    assert run.status == "failed" and run.counterexample is not None and run.counterexample.case.dim == 1
    assert run.counterexample.max_error == pytest.approx(2e-8)
    assert run.worst is not None and run.worst.case.dim >= 2 and run.max_error == pytest.approx(0.5)
    assert f'"dim":{run.worst.case.dim}' in run.worst.reproduce and run.worst.reproduce != run.counterexample.reproduce


def test_a_mixing_claim_as_a_bool_is_about_the_default_sizes():
    """``mixes=True`` claims a dense Jacobian at the flow's default sizes: a case whose size grid drew two coupling
    blocks (which do not mix at d = 4: x_0 never sees z_1) is checked at the default three; a predicate is asked with
    the drawn sizes and is held to its answer."""
    spec = flowlab.flow_spec("stacked")
    three_blocks = flowlab.Option(3, "coupling blocks", low=1, high=256)  # its size grid: 3 (the default) and 2
    stacked = dataclasses.replace(spec, options={**spec.options, "blocks": three_blocks})
    two_blocks = Case(dim=4, batch=3, seed=0, options={"blocks": 2})
    claimed = dataclasses.replace(stacked, name="claims_mixing", mixes=True)
    assert run_property(check_spec("mixing"), claimed, case=two_blocks).status == "passed"
    everywhere = dataclasses.replace(stacked, name="claims_mixing_at_every_size", mixes=lambda options: True)
    run = run_property(check_spec("mixing"), everywhere, case=two_blocks)
    assert run.status == "failed" and "have no dependence" in run.detail
