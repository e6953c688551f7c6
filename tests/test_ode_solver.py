"""flowlab's adaptive Runge–Kutta solves (``flowlab.ode.runge_kutta``) against torchdiffeq's: the same steps, the same
numbers to rounding."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from flowlab.errors import SolverError
from flowlab.ode.adjoint import integrate_adjoint
from flowlab.ode.runge_kutta import TABLEAUS, integrate, rms
from flowlab.ode.solver import CountedDynamics, SolverConfig, _mixed_rms, solve


class Counted(nn.Module):
    """A field that counts its evaluations."""

    def __init__(self, field) -> None:
        super().__init__()
        self.field = field
        self.nfe = 0

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        self.nfe += 1
        return self.field(t, y)


def rotation(t: Tensor, y: Tensor) -> Tensor:
    """A time-dependent rotation with decay: smooth, non-autonomous, mixes the coordinates."""
    return torch.stack([-(1 + t) * y[:, 1] - 0.3 * y[:, 0], (1 + t) * y[:, 0] + torch.sin(3 * t) * y[:, 1]], dim=1)


def stiffish(t: Tensor, y: Tensor) -> Tensor:
    """A fast and a slow mode: many steps, rejected ones among them."""
    return torch.stack([-40 * (y[:, 0] - torch.cos(t)), -0.5 * y[:, 1] + y[:, 0] ** 2], dim=1)


def mlp_field() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 3)).double()

    def field(t: Tensor, y: Tensor) -> Tensor:
        return 2 * net(torch.cat([y, t.expand(y.shape[0], 1)], dim=1))

    return field


FIELDS = {"rotation": (rotation, 2), "stiffish": (stiffish, 2), "mlp": (mlp_field(), 3)}


TIMES = [(0.0, 1.0), (1.0, 0.0), (0.0, 0.25, 0.5, 1.0), (2.0, 1.5, 0.0)]
#: stiffish forwards only: backwards its fast mode grows like e^{40 t} and the low-order methods take minutes
SOLVES = [(name, times) for name in sorted(FIELDS) for times in TIMES if name != "stiffish" or times[-1] > times[0]]


@pytest.mark.parametrize("method", sorted(TABLEAUS))
@pytest.mark.parametrize(("name", "times"), SOLVES)
@pytest.mark.parametrize("tight", [False, True])
def test_each_method_takes_torchdiffeqs_steps_and_returns_its_solution(method, name, times, tight):
    # tight: 1e-8, but 1e-6 for the 2nd-order Heun (~(1/tol)^(1/2) steps: seconds per solve at 1e-8)
    tolerance = (1e-6 if method == "adaptive_heun" else 1e-8) if tight else 1e-5
    field, dim = FIELDS[name]
    y0 = torch.randn(5, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours, theirs = Counted(field), Counted(field)
    t = torch.tensor(times, dtype=torch.float64)
    got = integrate(method, ours, y0, list(times), tolerance, tolerance, rms)
    want = odeint(theirs, y0, t, rtol=tolerance, atol=tolerance, method=method)
    assert ours.nfe == theirs.nfe  # the same initial step, the same accepted and rejected steps
    assert got.shape == want.shape
    # the two sum a step's terms in another order: rounding (a wrong weight or step rule is off by 1e-6 and more)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_the_given_norm_controls_the_steps_as_in_torchdiffeq():
    field, dim = FIELDS["mlp"]
    y0 = torch.randn(4, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    norm = _mixed_rms((2, 1))
    ours, theirs = Counted(field), Counted(field)
    got = integrate("dopri5", ours, y0, [0.0, 1.0], 1e-7, 1e-7, norm)
    times = torch.tensor([0.0, 1.0], dtype=torch.float64)
    want = odeint(theirs, y0, times, rtol=1e-7, atol=1e-7, options={"norm": norm})
    assert ours.nfe == theirs.nfe
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_a_float32_solve_is_as_close_to_the_float64_solution_as_torchdiffeqs():
    """In float32 the error estimate is near float32 rounding at rtol = 1e-5, so a ratio near 1 can tip either way
    and the two solvers may take a different number of steps (here 50 and 44 evaluations); both must stay within the
    tolerance of the float64 solution."""
    y0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(3))
    reference = integrate("dopri5", rotation, y0.double(), [0.0, 1.0], 1e-10, 1e-10, rms)
    got = integrate("dopri5", rotation, y0, [0.0, 1.0], 1e-5, 1e-5, rms)
    want = odeint(rotation, y0, torch.tensor([0.0, 1.0]), rtol=1e-5, atol=1e-5, method="dopri5")
    assert got.dtype == torch.float32
    assert float((got.double() - reference).abs().max()) <= float((want.double() - reference).abs().max()) + 1e-6
    assert float((got.double() - reference).abs().max()) < 1e-5


@pytest.mark.parametrize("method", sorted(TABLEAUS))
def test_the_error_falls_with_the_tolerance_on_a_known_solution(method):
    """``dy/dt = -t y`` has ``y(1) = y(0) e^{-1/2}``: an independent answer, not torchdiffeq's."""
    y0 = torch.ones(1, 1, dtype=torch.float64)
    errors = [
        abs(float(integrate(method, lambda t, y: -t * y, y0, [0.0, 1.0], tol, tol, rms)[-1]) - math.exp(-0.5))
        for tol in (1e-4, 1e-6, 1e-8)
    ]
    assert errors[0] < 1e-3 and errors[1] < 1e-5 and errors[2] < 1e-7
    assert errors[2] < errors[1] < errors[0]


def test_gradients_are_those_of_the_solution():
    """``dy/dt = θ y``: ``y(1) = y0 e^θ``, so ``∂y(1)/∂θ = y(1)`` and ``∂y(1)/∂y0 = e^θ``."""
    theta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([[1.5]], dtype=torch.float64, requires_grad=True)
    end = integrate("dopri5", lambda t, y: theta * y, y0, [0.0, 1.0], 1e-10, 1e-10, rms)[-1].sum()
    d_theta, d_y0 = torch.autograd.grad(end, (theta, y0))
    assert float(d_theta) == pytest.approx(1.5 * math.exp(0.7), rel=1e-8)
    assert float(d_y0) == pytest.approx(math.exp(0.7), rel=1e-8)


@pytest.mark.parametrize("method", sorted(TABLEAUS))
def test_the_tableaus_are_consistent(method):
    """Each stage's weights sum to its node, the solution's and the midpoint's to 1 and 1/2, the error's to 0."""
    tableau = TABLEAUS[method]
    for node, row in zip(tableau.nodes, tableau.rows, strict=True):
        assert sum(row) == pytest.approx(node, abs=1e-14)
    assert sum(tableau.solution or tableau.rows[-1]) == pytest.approx(1.0, abs=1e-14)
    assert sum(tableau.midpoint) == pytest.approx(0.5, abs=1e-14)
    assert sum(tableau.error) == pytest.approx(0.0, abs=1e-14)


def test_the_first_output_is_the_start():
    y0 = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert torch.equal(integrate("dopri5", rotation, y0, [0.0, 1.0], 1e-6, 1e-6, rms)[0], y0)


@pytest.mark.parametrize("times", [[0.0, 0.0], [0.0, 1.0, 0.5], [1.0, 0.0, 0.0]])
def test_times_that_are_not_strictly_monotone_are_refused(times):
    with pytest.raises(ValueError, match="strictly increasing or strictly decreasing times"):
        integrate("dopri5", rotation, torch.zeros(1, 2, dtype=torch.float64), times, 1e-5, 1e-5, rms)


class Exploding(CountedDynamics):
    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        self.tick(t)
        return y**3 * 50


@pytest.mark.parametrize("method", sorted(TABLEAUS))
def test_a_solve_that_explodes_raises_a_solver_error_naming_the_solver(method):
    with pytest.raises(SolverError, match=rf"{method} \(rtol=1e-05.*failed at t=.*hint"):
        start = torch.full((2, 1), 3.0, dtype=torch.float64)
        solve(Exploding(), start, torch.tensor([0.0, 1.0]), SolverConfig(method=method))


class Field(nn.Module):
    """A small MLP field with parameters, counting its evaluations; ``autonomous``: it ignores ``t``."""

    def __init__(self, dim: int, *, autonomous: bool = False) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.net = nn.Sequential(nn.Linear(dim + 1, 16), nn.Tanh(), nn.Linear(16, dim)).double()
        self.autonomous = autonomous
        self.nfe = 0

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        self.nfe += 1
        time = torch.full_like(y[:, :1], 0.5) if self.autonomous else t.expand(y.shape[0], 1)
        return 2 * self.net(torch.cat([y, time], dim=1))


#: every method with the default norm, dopri5 (the default method) with a mixed norm too
ADJOINT_SOLVERS = [(method, None) for method in sorted(TABLEAUS)] + [("dopri5", (2, 1))]


@pytest.mark.parametrize(("method", "controlled"), ADJOINT_SOLVERS)
@pytest.mark.parametrize("times", [(0.0, 1.0), (1.0, 0.0), (0.0, 0.3, 1.0)])
def test_the_adjoint_takes_torchdiffeqs_steps_and_gives_its_gradients(method, times, controlled):
    """On an autonomous field (where torchdiffeq's time gradient, which flowlab leaves out, is 0): the same evaluation
    counts as torchdiffeq's ``odeint_adjoint``, forward and backward, and the same gradients of the initial state and
    of the parameters."""
    tolerance = 1e-5 if method == "adaptive_heun" else 1e-8  # Heun's 2nd order: ~(1/tol)^(1/2) steps
    norm = rms if controlled is None else _mixed_rms(controlled)
    grads, counts = {}, {}
    for who in ("ours", "torchdiffeq"):
        field, start = adjoint_case(autonomous=True)
        if who == "ours":
            parameters = tuple(field.parameters())
            solution = integrate_adjoint(method, field, start, list(times), tolerance, tolerance, norm, parameters)
        else:
            options = {} if controlled is None else {"norm": norm}
            t = torch.tensor(times, dtype=torch.float64)
            solution = odeint_adjoint(field, start, t, rtol=tolerance, atol=tolerance, method=method, options=options)
        counts[who], grads[who] = backpropagate(field, start, solution)
    assert counts["ours"] == counts["torchdiffeq"]
    torch.testing.assert_close(grads["ours"], grads["torchdiffeq"], rtol=1e-10, atol=1e-12)


def test_the_adjoint_gradients_are_those_of_backpropagating_through_the_solve():
    """To the solver's tolerance: the adjoint solves another ODE backwards, and both are off by their own error."""
    grads = {}
    for adjoint in (True, False):
        field, start = adjoint_case()
        if adjoint:
            solution = integrate_adjoint("dopri5", field, start, [0.0, 1.0], 1e-9, 1e-9, rms, tuple(field.parameters()))
        else:
            solution = integrate("dopri5", field, start, [0.0, 1.0], 1e-9, 1e-9, rms)
        _, grads[adjoint] = backpropagate(field, start, solution)
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("rows", [4, 256])
def test_without_the_time_gradient_the_adjoint_takes_no_more_steps_than_torchdiffeqs(rows):
    """A time-dependent field: torchdiffeq's backward step control also looks at ``∫ aᵀ ∂f/∂t``, which flowlab does
    not integrate; the gradients agree to the tolerance, and flowlab's backward solve is never longer."""
    grads, counts = {}, {}
    for who in ("ours", "torchdiffeq"):
        field, start = adjoint_case(rows=rows)
        if who == "ours":
            solution = integrate_adjoint("dopri5", field, start, [1.0, 0.0], 1e-8, 1e-8, rms, tuple(field.parameters()))
        else:
            solution = odeint_adjoint(field, start, torch.tensor([1.0, 0.0], dtype=torch.float64), rtol=1e-8, atol=1e-8)
        counts[who], grads[who] = backpropagate(field, start, solution)
    assert counts["ours"][0] == counts["torchdiffeq"][0]
    assert counts["ours"][1] <= counts["torchdiffeq"][1]
    torch.testing.assert_close(grads["ours"], grads["torchdiffeq"], rtol=1e-6, atol=1e-7)


def adjoint_case(*, rows: int = 4, autonomous: bool = False) -> tuple[Field, Tensor]:
    start = torch.randn(rows, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    return Field(3, autonomous=autonomous), start.requires_grad_()


def backpropagate(field: Field, start: Tensor, solution: Tensor) -> tuple[tuple[int, int], Tensor]:
    """Backpropagate a weighted sum of the solution after the start: ``((forward NFE, backward NFE), the gradients
    of the start and of the parameters)``."""
    forward = field.nfe
    weights = torch.linspace(-1, 1, solution[1:].numel(), dtype=torch.float64).view_as(solution[1:])
    (solution[1:] * weights).sum().backward()
    assert start.grad is not None
    return (forward, field.nfe - forward), torch.cat(
        [start.grad.flatten(), *(p.grad.flatten() for p in field.parameters())]
    )


def test_the_adjoint_leaves_parameters_that_do_not_require_grad_alone():
    field = Field(2)
    frozen = field.net[0].weight.requires_grad_(False)
    start = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    solution = integrate_adjoint("dopri5", field, start, [0.0, 1.0], 1e-6, 1e-6, rms, tuple(field.parameters()))
    solution[-1].sum().backward()
    assert frozen.grad is None
    assert start.grad is not None and field.net[2].weight.grad is not None


class PoisonedAfterForward(CountedDynamics):
    """``f = θ y``, NaN once ``poisoned``: a backward solve that cannot go on."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(0.5, dtype=torch.float64))
        self.poisoned = False

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        self.tick(t)
        return self.theta * y * (math.nan if self.poisoned else 1.0)


def test_a_failed_adjoint_backward_solve_raises_a_solver_error_saying_so():
    dynamics = PoisonedAfterForward()
    start = torch.ones(2, 1, dtype=torch.float64, requires_grad=True)
    solution = solve(dynamics, start, torch.tensor([0.0, 1.0]), SolverConfig(adjoint=True))
    dynamics.poisoned = True
    with pytest.raises(SolverError, match=r"dopri5 \(rtol=1e-05, atol=1e-05, adjoint\).*in the adjoint backward solve"):
        solution[-1].sum().backward()
