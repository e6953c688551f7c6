"""Bad input raises a FlowlabError subclass whose message says what was expected and what was given."""

from __future__ import annotations

import math

import pytest
import torch

import flowlab
from flowlab import errors
from flowlab.errors import NonFiniteError


@pytest.fixture
def flow() -> flowlab.Flow:
    return flowlab.Flow(flowlab.build("coupling", 2))


def test_wrong_last_dimension(flow):
    with pytest.raises(errors.ShapeError, match=r"expected last dimension 2.*got shape \[4, 3\]"):
        flow.log_prob(torch.zeros(4, 3))


def test_wrong_number_of_dimensions(flow):
    with pytest.raises(errors.ShapeError, match=r"expected a 2-d tensor.*got 1-d"):
        flow.log_prob(torch.zeros(2))


def test_integer_dtype(flow):
    with pytest.raises(errors.DtypeError, match=r"expected a floating dtype.*got torch.int64"):
        flow.log_prob(torch.zeros(4, 2, dtype=torch.long))


def test_dtype_other_than_parameters(flow):
    with pytest.raises(errors.DtypeError, match=r"parameters are torch.float32 but x is torch.float64"):
        flow.log_prob(torch.zeros(4, 2, dtype=torch.float64))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input(flow, bad):
    x = torch.zeros(4, 2)
    x[2, 1] = bad
    with pytest.raises(errors.NonFiniteError, match=r"expected finite values.*1 row\(s\): 2"):
        flow.log_prob(x)


def test_not_a_tensor(flow):
    with pytest.raises(errors.DtypeError, match=r"expected a torch\.Tensor"):
        flow.log_prob([[0.0, 0.0]])


def test_unknown_flow_lists_known_ones():
    with pytest.raises(
        errors.UnknownFlowError, match=r"unknown flow 'coupl'.*known flows: affine, .*coupling.*Did you mean 'coupling'"
    ):
        flowlab.build("coupl", 2)


def test_unknown_option_names_it_and_the_known_ones():
    with pytest.raises(errors.OptionError, match=r"unknown option 'hiden' \(did you mean 'hidden'\?\).*hidden=64"):
        flowlab.build("coupling", 2, hiden=3)


def test_invalid_option_value_lists_allowed_values():
    with pytest.raises(errors.OptionError, match=r"activation='swish' is not allowed.*'relu', 'tanh'"):
        flowlab.build("coupling", 2, activation="swish")


def test_option_of_wrong_type_and_range():
    with pytest.raises(errors.OptionError, match="hidden expects a int, got str"):
        flowlab.build("coupling", 2, hidden="64")
    with pytest.raises(errors.OptionError, match="hidden=0 is below its minimum 1"):
        flowlab.build("coupling", 2, hidden=0)


def test_dimension_below_the_flows_minimum():
    with pytest.raises(errors.OptionError, match=r"coupling: expected an integer dim >= 2, got 1"):
        flowlab.build("coupling", 1)


def test_singular_matrix_is_refused():
    with pytest.raises(errors.SingularMatrixError, match="expected an invertible matrix, got a singular one"):
        flowlab.build("affine", 2, matrix=[[1.0, 2.0], [2.0, 4.0]])


def test_matrix_of_wrong_shape():
    with pytest.raises(errors.ShapeError, match=r"expected matrix of shape \(3, 3\), got \(2, 2\)"):
        flowlab.build("affine", 3, matrix=[[1.0, 0.0], [0.0, 1.0]])


def test_stack_of_a_block_that_is_not_a_discrete_flow():
    with pytest.raises(errors.OptionError, match=r"block='nope' is not allowed; expected a registered discrete flow"):
        flowlab.build("stacked", 2, block="nope")


def test_bad_sample_count(flow):
    with pytest.raises(errors.OptionError, match="expected a positive integer number of samples, got 0"):
        flow.sample(0)


def test_base_with_wrong_event_shape():
    base = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    with pytest.raises(errors.ShapeError, match=r"event_shape \(2,\).*got event_shape \(\)"):
        flowlab.Flow(flowlab.build("coupling", 2), base)


def test_every_error_is_a_flowlab_error():
    for cls in (
        errors.ShapeError,
        errors.DtypeError,
        errors.NonFiniteError,
        errors.UnknownFlowError,
        errors.OptionError,
        errors.SingularMatrixError,
        errors.PluginError,
        errors.DuplicateNameError,
    ):
        assert issubclass(cls, errors.FlowlabError)


def test_log_prob_of_an_empty_batch_is_empty():
    flow = flowlab.Flow(flowlab.build("stacked", 2))
    log_p = flow.log_prob(torch.randn(0, 2))
    assert log_p.shape == (0,) and log_p.dtype == torch.float32


class Scale(flowlab.Bijector):
    """``x = z · exp(s)``: with a very negative ``s`` the inverse overflows float32 on large inputs."""

    def __init__(self, dim: int, s: float) -> None:
        super().__init__()
        self.dim = dim
        self.s = torch.nn.Parameter(torch.tensor(s))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z * self.s.exp(), (self.dim * self.s).expand(z.shape[0])

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * (-self.s).exp(), (-self.dim * self.s).expand(x.shape[0])


def test_a_non_finite_inverse_is_a_non_finite_error_naming_rows_and_magnitudes():
    flow = flowlab.Flow(Scale(2, -80.0))  # exp(80) = 5.5e34: rows with |x| > 6e3 overflow
    x = torch.tensor([[1.0, 1.0], [1e5, 0.0], [0.0, 0.0], [-1e6, 1.0]])
    with pytest.raises(NonFiniteError, match=r"NaN or inf in z in 2 of 4 row\(s\) \(1, 3; largest finite \|z\|: 5.5"):
        flow.log_prob(x)


def test_the_non_finite_hint_blames_the_inputs_range_when_the_parameters_are_finite():
    """Finite parameters: not a diverged run, so the message names the inputs' range instead."""
    flow = flowlab.Flow(Scale(2, -80.0))
    with pytest.raises(NonFiniteError, match=r"parameters are all finite, so the inputs are the cause.*\|x\| = 1e\+06"):
        flow.log_prob(torch.tensor([[1.0, 1.0], [-1e6, 1.0]]))
    with torch.no_grad():
        flow.bijector.s.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"parameters are not all finite \(a diverged training run\?"):
        flow.log_prob(torch.tensor([[1.0, 1.0]]))


def test_a_module_that_is_no_bijector_is_refused_by_flow_with_what_is_expected():
    with pytest.raises(
        errors.NotABijectorError, match=r"expected a flowlab Bijector .*got torch.nn.modules.linear.Linear"
    ):
        flowlab.Flow(torch.nn.Linear(2, 2))
    assert issubclass(errors.NotABijectorError, (errors.FlowlabError, TypeError))


class LogdetOnly(flowlab.Bijector):
    """The identity with a given log-det: a non-finite log-det with a finite ``z``."""

    def __init__(self, logdet: float) -> None:
        super().__init__()
        self.dim, self.logdet = 2, logdet

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z, z.new_full((z.shape[0],), -self.logdet)

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x.new_full((x.shape[0],), self.logdet)


def test_a_non_finite_log_det_alone_is_caught_and_an_overflowing_density_is_not_an_error():
    """``log_prob`` checks one sum of the result: NaN/inf in the log-det (with ``z`` finite) makes it non-finite;
    a finite ``z`` so large that ``|z|²`` overflows gives ``−inf``, a density, not an error."""
    with pytest.raises(NonFiniteError, match=r"NaN or inf in log\|det ∂z/∂x\| in 3 of 3 row"):
        flowlab.Flow(LogdetOnly(math.nan)).log_prob(torch.zeros(3, 2))
    log_prob = flowlab.Flow(LogdetOnly(0.0)).log_prob(torch.tensor([[0.0, 0.0], [3e19, 0.0]]))
    assert torch.isfinite(log_prob[0]) and log_prob[1] == -math.inf
