"""``stress``: at a large dimension and large input magnitudes, float32 log-dets agree with float64 and nothing
overflows.

The drawn cases stay near ``min_dim`` and a few standard deviations, where a log-det computed as ``log(∏ exp(s_i))``
or ``log|det J|`` from a float32 determinant is still finite. Here the flow is built at ``dim = STRESS_DIM``
(``FlowSpec.max_dim`` if that is smaller) with the case's parameters rounded to float32, and ``forward`` (at base
points) and ``inverse`` (at data points) run in float32 and, on the same rounded parameters and inputs, in
float64, at the case's input scale and at ``STRESS_SCALE``. The log-dets must agree (mixed relative error) and
every output must be finite on both sides; a non-finite value fails, with the magnitudes reached (to tell overflow
from a wrong formula). The outputs' own float32 precision is not judged: an ill-conditioned map (an inverse
autoregressive pass at inputs of ~100 reaches |z| ~ 1e8) loses digits in any implementation, and ``dtype_device``
compares float32 with float64 ``log_prob`` at the drawn cases.

Ill-conditioning reaches the log-det too: a sequential (autoregressive) pass feeds each rounded coordinate into the
scales of the next, so even exact arithmetic on inputs and parameters moved by one float32 rounding changes the
log-det (iaf's inverse at scale 25: ±0.5 on a log-det of 25.7, measured with ``PERTURBATIONS`` float64 passes on
inputs and parameters multiplied by ``1 + 2^-23·N(0, 1)``). What is judged is therefore the float32 error *beyond*
that sensitivity: ``max(0, err(float32) − CONDITIONING_FACTOR · max_k err(perturbed_k))`` per row (``err``: the
mixed relative error against float64 on the unperturbed values). A well-conditioned map has a sensitivity of
~1e-7, so nothing is excused; overflow, a float32 determinant or a cancellation stay inf or O(1) in float32 while
their float64 passes, perturbed or not, agree. A conditional flow gets the case's contexts (scale 1:
the magnitudes stressed are the inputs'), rounded to float32 as the inputs are.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import torch
from torch import Tensor

from flowlab import FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    Direction,
    Measurement,
    Side,
    apply,
    build_case_bijector,
    case_context,
    case_points,
    judge,
    row_errors,
)

STRESS_DIM = 32
STRESS_SCALE = 25.0
#: float64 passes at inputs and parameters moved by one float32 rounding, to measure the log-det's conditioning
PERTURBATIONS = 4
#: how many times the largest perturbed deviation the float32 error may reach before it counts
CONDITIONING_FACTOR = 4.0
#: float32's machine epsilon, the relative size of one rounding
FLOAT32_EPS = 2.0**-23


def stress_dim(spec: FlowSpec) -> int:
    """The dimension of the stress case: ``STRESS_DIM`` within the flow's declared ``[min_dim, max_dim]``."""
    dim = max(STRESS_DIM, spec.min_dim)
    return dim if spec.max_dim is None else min(dim, spec.max_dim)


def run(spec: FlowSpec, case: Case) -> CheckResult:
    case = replace(case, dim=stress_dim(spec))
    single = build_case_bijector(spec, replace(case, dtype="float32"))
    # the reference computes in float64 on exactly the float32 flow's (rounded) parameters and inputs: what is
    # compared is the arithmetic, not how sensitive an ill-conditioned map is to a rounding of its parameters
    double = copy.deepcopy(single).double()
    measurements = []
    directions: tuple[tuple[Direction, str, int], ...] = (("forward", "z", 0), ("inverse", "x", 1))
    context = case_context(replace(case, dtype="float32"))
    context64 = None if context is None else context.double()
    for scale in (case.scale, STRESS_SCALE):
        for direction, name, salt in directions:
            side: Side = "base" if direction == "forward" else "data"
            # drawn in float32 (inside a bounded support after rounding too), compared at those very values
            points = case_points(replace(case, dtype="float32"), salt=salt, scale=scale, side=side).double()
            out64, ladj64 = apply(double, points, direction, context64)
            out32, ladj32 = apply(single, points.float(), direction, context)
            sensitivity = conditioning(double, points, direction, context64, ladj64, case.seed + salt)
            finite = torch.isfinite(out32).all(dim=1) & torch.isfinite(out64).all(dim=1)
            excess = (row_errors(ladj32.double(), ladj64) - CONDITIONING_FACTOR * sensitivity).clamp(min=0)
            errors = torch.where(finite, excess, torch.full_like(ladj64, math.inf))
            measurements.append(
                Measurement(
                    f"float32 vs float64 {direction} log-det (and finite outputs) at d={case.dim}, input scale "
                    f"{scale:g}",
                    errors,
                    {
                        name: points,
                        "float32 log-det": ladj32,
                        "float64 log-det": ladj64,
                        "float32 out": out32,
                        "float64 out": out64,
                        "float64 log-det sensitivity to one float32 rounding": sensitivity,
                    },
                )
            )
    return judge(measurements, CHECK.tolerance_for(spec))


def conditioning(
    double: torch.nn.Module, points: Tensor, direction: Direction, context: Tensor | None, ladj: Tensor, seed: int
) -> Tensor:
    """Per row, the largest mixed relative change of the float64 log-det over ``PERTURBATIONS`` passes with the
    inputs and every parameter multiplied by ``1 + FLOAT32_EPS · N(0, 1)`` (a CPU generator seeded by ``seed``):
    how much of a float32 error the map's conditioning alone explains. Non-finite changes count as 0 (the float32
    side's own finiteness is judged separately)."""
    generator = torch.Generator().manual_seed(seed)
    worst = torch.zeros_like(ladj)
    for _ in range(PERTURBATIONS):
        moved = copy.deepcopy(double)
        with torch.no_grad():
            for parameter in moved.parameters():
                noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                parameter.mul_(1 + FLOAT32_EPS * noise.to(parameter.device))
        noise = torch.randn(points.shape, generator=generator, dtype=points.dtype).to(points.device)
        _, moved_ladj = apply(moved, points * (1 + FLOAT32_EPS * noise), direction, context)
        change = torch.nan_to_num(row_errors(moved_ladj.double(), ladj), nan=0.0, posinf=0.0)
        worst = torch.maximum(worst, change)
    return worst


CHECK = CheckSpec(
    name="stress",
    summary=f"at d={STRESS_DIM}, inputs of scale {STRESS_SCALE:g}: float32 log-dets match float64, nothing overflows",
    run=run,
    # float32 keeps ~7 digits, a deep stack at inputs of ~100 amplifies its rounding and a float32 ODE solve takes
    # other steps: ≤ 9.1e-5 measured over the built-ins (nsf; cnf 3.2e-5), so 1e-2 leaves a 100x margin for the
    # thorough profile; the bugs this targets (overflow, a float32 determinant, cancellation) give inf or O(1)
    tolerance=1e-2,
    max_examples=2,
)
