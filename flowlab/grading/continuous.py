"""Exercises on continuous flows: the exact trace, Hutchinson's estimator, a time-conditioned vector field.

The student's piece goes into flowlab's own ODE flow (:mod:`flowlab.ode`), so what is graded is exactly that
piece: the FlowSpecs are those of the registered ``cnf`` and ``ffjord`` with the student's trace or field in place
of flowlab's (same options, tolerances and capabilities, never registered). The exercise's traces return
``tr ∂f/∂z`` only; the ``‖∂f/∂z‖²_F`` that RNODE's ``jacobian`` weight needs is left at 0 (the weight is 0 unless
asked for).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from torch import Tensor

from flowlab.errors import ShapeError
from flowlab.grading.exercise import Exercise, Variant, a_class, a_function
from flowlab.ode import ExactTrace, Hutchinson, ODEBijector, TraceEstimator, build_ode_bijector
from flowlab.registry import flow_spec
from flowlab.spec import FlowSpec

#: a redrawn probe makes a solve run to max_nfe: the Hutchinson exercise stops it sooner than ffjord's 10 000
#: (a correct estimator needs ~100 evaluations per solve at the kit's tolerances)
HUTCHINSON_MAX_NFE = 2000


def per_row(trace: Tensor, z: Tensor, name: str) -> Tensor:
    """``trace`` if it has one value per row of ``z``; a :class:`~flowlab.ShapeError` in the student's words."""
    if not isinstance(trace, Tensor) or tuple(trace.shape) != (z.shape[0],):
        got = list(trace.shape) if isinstance(trace, Tensor) else type(trace).__name__
        raise ShapeError(f"your {name} returned {got}; expected a tensor of shape [{z.shape[0]}], one value per row")
    return trace


class StudentExactTrace(TraceEstimator):
    """``trace(f, z)`` of the student as the exact estimator of an ODE solve."""

    def __init__(self, trace: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.trace = trace

    def __call__(self, f: Tensor, z: Tensor, probe: Tensor | None, create_graph: bool) -> tuple[Tensor, Tensor]:
        return per_row(self.trace(f, z), z, "exact_trace"), z.new_zeros(z.shape[0])

    def __repr__(self) -> str:
        return "your exact_trace"


class StudentHutchinson(Hutchinson):
    """``trace(f, z, probe)`` of the student with flowlab's probes, drawn once per solve (``Hutchinson.draw``)."""

    def __init__(self, trace: Callable[[Tensor, Tensor, Tensor], Tensor], distribution: str) -> None:
        super().__init__(distribution)
        self.trace = trace

    def __call__(self, f: Tensor, z: Tensor, probe: Tensor | None, create_graph: bool) -> tuple[Tensor, Tensor]:
        if probe is None:
            raise ValueError("hutchinson_trace: expected the probe drawn at the start of the solve, got None")
        return per_row(self.trace(f, z, probe), z, "hutchinson_trace"), z.new_zeros(z.shape[0])

    def __repr__(self) -> str:
        return f"your hutchinson_trace ({self.distribution} probes)"


def exact_trace_cnf(answer: Any) -> FlowSpec:
    trace = a_function(answer, "your function exact_trace(f, z)")

    def build(dim: int, **options: Any) -> ODEBijector:
        return build_ode_bijector(dim, options, trace=StudentExactTrace(trace))

    return replace(flow_spec("cnf"), name="your CNF (exact trace)", build=build)


def hutchinson_cnf(answer: Any) -> FlowSpec:
    trace = a_function(answer, "your function hutchinson_trace(f, z, probe)")
    ffjord = flow_spec("ffjord")

    def build(dim: int, *, probe: str, eval_trace: str, seed: int, **options: Any) -> ODEBijector:
        return build_ode_bijector(
            dim, options, trace=StudentHutchinson(trace, probe), eval_trace=ExactTrace(), seed=seed
        )

    return replace(
        ffjord,
        name="your FFJORD (Hutchinson trace)",
        build=build,
        check_options={**ffjord.check_options, "max_nfe": HUTCHINSON_MAX_NFE},
    )


def field_cnf(answer: Any) -> FlowSpec:
    cls = a_class(answer, "the class of your vector field, built as TimeField(dim)")

    def build(dim: int, **options: Any) -> ODEBijector:
        # the solver of the options (as cnf's); the field is the student's
        return ODEBijector(cls(dim), solver=build_ode_bijector(dim, options).solver)

    return replace(flow_spec("cnf"), name="your CNF (your vector field)", build=build)


NO_TRACE = (
    "log|det ∂x/∂z| = ∫₀¹ tr ∂f/∂z dt: if your log-dets above are 0 (or constant), the trace term is missing, and "
    "log p(x) = log p_z(z) alone is not a density (it does not integrate to 1). tr ∂f/∂z = Σ_i ∂f_i/∂z_i: one "
    "vector-Jacobian product per coordinate, keeping the i-th entry of the i-th."
)

EXACT_TRACE = Exercise(
    name="exact_trace",
    title="the exact trace of ∂f/∂z, the log-det of a CNF",
    answer="the function exact_trace(f, z) -> one trace per row",
    variants=(
        Variant(
            "your CNF (exact trace)",
            exact_trace_cnf,
            ("ode_logdet", "ode_normalization", "ode_invertibility"),
            {"ode_logdet": NO_TRACE, "ode_normalization": NO_TRACE},
        ),
    ),
)

REDRAWN = (
    "Use the probe you are given: it is drawn once per solve and held fixed through it. A probe drawn inside the "
    "estimator (torch.randn_like(z)) is a new one at every function evaluation: the integrand becomes noise, the "
    "adaptive solver reads it as error and shrinks its steps until it gives up, and the average over a probe set "
    "no longer gives the exact trace."
)

HUTCHINSON = Exercise(
    name="hutchinson",
    title="Hutchinson's estimator vᵀ(∂f/∂z)v, with one probe per solve",
    answer="the function hutchinson_trace(f, z, probe) -> one estimate per row",
    variants=(
        Variant(
            "your FFJORD (Hutchinson trace)",
            hutchinson_cnf,
            ("hutchinson_estimator", "hutchinson_fixed_probe", "hutchinson_solve_unbiased"),
            {
                "hutchinson_estimator": "The estimate is vᵀ(∂f/∂z)v for the probe v given: one vector-Jacobian "
                "product vᵀ(∂f/∂z), then its dot product with v, row by row. " + REDRAWN,
                "hutchinson_fixed_probe": REDRAWN,
                "hutchinson_solve_unbiased": REDRAWN,
            },
        ),
    ),
)

SCALAR_TIME = (
    "Your field works for one time for the whole batch (a 0-d t, as the ODE solver calls it) but not for one time "
    "per row (t of shape [batch] or [batch, 1], as a flow-matching loss calls it): t.view(1, 1) and t[0] assume a "
    "single time. Make t a column of one time per row: t.reshape(-1, 1), expanded to [batch, 1] when it has one "
    "element."
)

TIME_EMBEDDING = Exercise(
    name="time_embedding",
    title="a time-conditioned vector field f(t, z) for any shape of t",
    answer="the class TimeField (built as TimeField(dim), called as field(t, z))",
    variants=(
        Variant(
            "your CNF (your vector field)",
            field_cnf,
            ("time_embedding", "ode_invertibility", "ode_logdet"),
            {"time_embedding": SCALAR_TIME},
        ),
    ),
)

EXERCISES = (EXACT_TRACE, HUTCHINSON, TIME_EMBEDDING)
