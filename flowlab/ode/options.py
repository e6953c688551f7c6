"""What every ODE flow's ``FlowSpec`` shares: its options, its check tolerances, and one builder.

The ``cnf``, ``ffjord`` and ``augmented`` plugins (and third-party ODE flows) declare ``options=ode_options()``
(plus their own) and build with :func:`build_ode_bijector`, so the three differ only in what is really different.
"""

from __future__ import annotations

from typing import Any

from flowlab.nn import SMOOTH_CHOICES
from flowlab.ode.bijector import ODEBijector
from flowlab.ode.field import TimeMLP
from flowlab.ode.solver import METHODS, SolverConfig
from flowlab.ode.trace import TraceEstimator
from flowlab.options import Option, Tolerance

#: the explanation paragraphs every ODE flow shares (direction and sign; solver, field, RNODE)
ODE_CONVENTION = r"""
**Direction and sign convention.** `forward(z)` integrates `dz/dt = f(t, z)` from t = 0 (base) to t = 1 (data)
together with an accumulator `da/dt = +tr ∂f/∂z`, `a(0) = 0`, and returns `(x, a(1))` with
`a(1) = ∫₀¹ tr ∂f/∂z dt = log|det ∂x/∂z|`. `inverse(x)` integrates the same system from t = 1 to t = 0 and
returns `(z, a(0))` with `a(0) = ∫₁⁰ tr ∂f/∂z dt = −∫₀¹ tr ∂f/∂z dt = log|det ∂z/∂x|`. Hence
`log p(x) = log p_z(z) + a(0)` = `log p_z(z) − ∫₀¹ tr ∂f/∂z dt` (FFJORD's `log p(x) = log p(z) − Δ`, with `Δ`
the integral along the forward time direction). The `ode_logdet` check compares both directions with the
autograd Jacobian of the solution, so a flipped sign cannot pass.
"""

ODE_NOTES = r"""
**Solver.** torchdiffeq's methods: `method` (dopri5, bosh3, adaptive_heun with `rtol`/`atol`, run by flowlab's
lean copy of torchdiffeq's algorithm, the same steps; rk4, midpoint, euler with `step_size`), `adjoint=True`
backpropagates by solving the adjoint ODE (memory independent of the number of steps; torchdiffeq's method, for
the adaptive methods on flowlab's copy, without the unused time gradient),
`max_nfe` and `max_seconds` (wall-clock time per solve, default 60 s) stop a runaway solve with a `SolverError`
(so do step-size underflow and a non-finite state; the message names the solver, the time reached and what to
try). After each call the bijector's `nfe` holds the function evaluations of that solve and `nfe_backward` those
of the last adjoint backward solve. Invertibility holds only to the solver's tolerance, which is why the generic
checks use tolerances tied to it.

**Vector field.** An MLP on `[z, t, sin 2πkt, cos 2πkt]` (`hidden`, `depth`, smooth `activation`,
`frequencies`), valid for a 0-d `t` and any batch. `compile=True` compiles it (`torch.compile`) together with
its Jacobian for the exact trace. **RNODE** (`kinetic`, `jacobian` > 0, training mode): the
solve also integrates `∫‖f‖² dt` and `∫‖∂f/∂z‖²_F dt`; add `bijector.regularization()` to the loss to get straighter
paths that need fewer function evaluations.
"""

ODE_REFERENCES = (
    "Chen, Rubanova, Bettencourt & Duvenaud (2018). Neural Ordinary Differential Equations. "
    "https://arxiv.org/abs/1806.07366",
    "Finlay, Jacobsen, Nurbekyan & Oberman (2020). How to train your neural ODE: the world of Jacobian and kinetic "
    "regularization. https://arxiv.org/abs/2002.02798",
)


def ode_options() -> dict[str, Option]:
    """The options of the field, the solver and the RNODE weights (defaults are cheap: a quick check is fast)."""
    return {
        "hidden": Option(32, "vector field MLP width", low=1),
        "depth": Option(2, "vector field MLP hidden layers", low=1),
        "activation": Option(
            "tanh", "vector field activation (smooth: the trace is differentiated)", choices=SMOOTH_CHOICES
        ),
        "frequencies": Option(1, "Fourier time features sin/cos(2πkt), k = 1..K", low=0, high=16),
        "method": Option("dopri5", "torchdiffeq solver", choices=METHODS),
        "rtol": Option(1e-5, "relative tolerance (adaptive methods)", low=1e-13, high=1.0),
        "atol": Option(1e-5, "absolute tolerance (adaptive methods)", low=1e-13, high=1.0),
        "step_size": Option(0.05, "step size (fixed-step methods: rk4, midpoint, euler)", low=1e-4, high=1.0),
        "adjoint": Option(False, "backpropagate with the adjoint ODE (odeint_adjoint)", choices=(False, True)),
        "max_nfe": Option(10_000, "stop a solve after this many function evaluations", low=1),
        "max_seconds": Option(60.0, "stop a solve after this many seconds of wall-clock time", low=1e-3),
        "kinetic": Option(0.0, "RNODE weight of the kinetic energy ∫‖f‖² dt (training mode)", low=0.0),
        "jacobian": Option(0.0, "RNODE weight of the Jacobian Frobenius norm ∫‖∂f/∂z‖²_F dt (training mode)", low=0.0),
        # no choices: the kit draws options with choices, and a compilation per case would cost minutes
        "compile": Option(False, "torch.compile the field and its Jacobian (exact trace; the first solve compiles)"),
    }


#: what the conformance kit builds ODE flows with instead of drawing it (``FlowSpec.check_options``): fixed-step
#: methods invert only to O(step^order), not to the rtol/atol the tolerances below are tied to (and adaptive_heun is
#: slow); the flows' own tests cover the other methods
ODE_CHECK_OPTIONS = {"method": "dopri5"}


def ode_tolerances() -> dict[str, Tolerance]:
    """Generic-kit tolerances an ODE flow needs at its default rtol = atol = 1e-5.

    Measured (``benchmarks/continuous.py solver-error``): one dopri5 solve at the default tolerance is within
    9e-4 of a 1e-11 solve on 600 cases drawn like the kit's (median 2.3e-4), and these properties compare two
    solves; 1e-2 leaves a 5x margin over twice the worst. The exact ``ode_*`` checks hold the log-det and the
    round trip to the solver's tolerance.
    """
    solver = (
        "an ODE flow is exact only up to its solver: one dopri5 solve at rtol=atol=1e-5 is off by up to 9e-4 "
        "(benchmarks/continuous.py solver-error), and this property compares two solves"
    )
    return {
        "invertibility": Tolerance(1e-2, f"the round trip solves twice; {solver}"),
        "logdet": Tolerance(1e-2, f"the log-det integral and the Jacobian of the solution differ by the {solver}"),
        "sample_consistency": Tolerance(1e-2, f"log_prob re-solves the sample backwards; {solver}"),
        "batch_independence": Tolerance(
            1e-2,
            "adaptive solvers pick one step size for the whole batch, so a row's result moves with the others "
            f"by the solve's global error; {solver}",
        ),
    }


#: the :func:`ode_options` that configure the solver alone (not the field): what a flow with a given field offers
SOLVER_OPTIONS = ("method", "rtol", "atol", "step_size", "adjoint", "max_nfe", "max_seconds")


def solver_config(options: dict[str, Any]) -> SolverConfig:
    """The :class:`SolverConfig` of the :data:`SOLVER_OPTIONS` values in ``options`` (other keys are ignored)."""
    return SolverConfig(
        method=options["method"],
        rtol=float(options["rtol"]),
        atol=float(options["atol"]),
        step_size=float(options["step_size"]),
        adjoint=options["adjoint"],
        max_nfe=options["max_nfe"],
        max_seconds=float(options["max_seconds"]),
    )


def field_from_options(dim: int, options: dict[str, Any], *, cls: type[TimeMLP] = TimeMLP, **extra: Any) -> TimeMLP:
    """A ``cls`` (a :class:`TimeMLP`) on ``R^dim`` from the field's :func:`ode_options` values in ``options`` (other
    keys are ignored; ``extra`` goes to ``cls``, e.g. ``init_scale``)."""
    return cls(
        dim,
        hidden=options["hidden"],
        depth=options["depth"],
        activation=options["activation"],
        frequencies=options["frequencies"],
        **extra,
    )


def build_ode_bijector(
    dim: int,
    options: dict[str, Any],
    *,
    trace: TraceEstimator | None = None,
    eval_trace: TraceEstimator | None = None,
    seed: int = 0,
    cls: type[ODEBijector] = ODEBijector,
    **extra: Any,
) -> ODEBijector:
    """A ``cls`` (an :class:`ODEBijector`) on ``R^dim`` with a :class:`TimeMLP` field, from the :func:`ode_options`
    values in ``options`` (other keys are ignored; ``extra`` goes to ``cls``)."""
    return cls(
        field_from_options(dim, options),
        trace=trace,
        eval_trace=eval_trace,
        solver=solver_config(options),
        kinetic=float(options["kinetic"]),
        jacobian=float(options["jacobian"]),
        seed=seed,
        compile=bool(options["compile"]),
        **extra,
    )
