"""``stress``: over a sweep of large dimensions and of input scales, float32 agrees with float64 and nothing
overflows.

The drawn cases stay near ``min_dim`` and a few standard deviations, where a log-det computed as ``log(∏ exp(s_i))``
or ``log|det J|`` from a float32 determinant is still finite. Here the flow is built at each dimension of
:data:`STRESS_DIMS` it has (within ``FlowSpec.min_dim``/``max_dim``/``allows_dim``) crossed with each input scale of
:data:`STRESS_SCALES` (a product of per-coordinate factors can overflow only at d = 64 and only at small inputs,
where the factors are large), with the case's parameters (and life) rounded to float32; ``forward`` (at base
points) and ``inverse`` (at data points) run in float32 and, on the same rounded parameters and inputs, in float64
(a fresh instance loaded with the float32 one's state: no ``copy.deepcopy``, which fails on a flow that keeps
non-leaf tensors). A conditional flow gets the case's contexts at the same scale as the points, rounded to float32
as they are. The sweep always covers the dimensions up to :data:`STRESS_FLOOR` (where the target bugs show first:
a product of per-coordinate factors of ~4 overflows float32 at d = 64); beyond, it is cost-capped: larger
dimensions are taken in increasing order while the case has spent less than its profile's :data:`STRESS_SECONDS`
(the next one must fit in what is left, judged from the last one's cost and its growth). The result names the
dimensions reached and those left out.

Per row, both the log-det and the points must agree (mixed relative errors) and be finite on both sides; a
non-finite value fails, with the magnitudes reached (to tell overflow from a wrong formula). An ill-conditioned map
loses digits in any implementation (an inverse autoregressive pass at inputs of ~100 reaches |z| ~ 1e8, and iaf's
inverse log-det at scale 25 moves by ±0.5 of 25.7 in exact arithmetic under one float32 rounding of its inputs and
parameters), so what is judged is the float32 error *beyond* that sensitivity:
``max(0, err(float32) − CONDITIONING_FACTOR · max_k err(perturbed_k))`` per row, ``err`` the mixed relative error
against float64 on the unperturbed values and ``perturbed_k`` the ``PERTURBATIONS`` float64 passes on inputs and
parameters multiplied by ``1 + 2^-23·N(0, 1)`` (measured only where the plain error exceeds the tolerance:
a well-conditioned map costs nothing more). Log-dets and points are held to the same tolerance: a cancellation in
float32 (an arcsinh written as ``log(u + √(u² + 1))``, which loses every digit for ``u ≪ −1``) gives O(1) errors.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import torch
from torch import Tensor, nn

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

#: the dimensions swept, in increasing order (each within the flow's declared dimensions), cost-capped
STRESS_DIMS = (32, 64, 128, 256, 512)
#: input (and context) scales at each dimension
STRESS_SCALES = (0.1, 1.0, 25.0)
#: the dimensions up to this one are always swept (each flow's first one too, whatever its min_dim)
STRESS_FLOOR = 64
#: seconds a case may spend on its sweep, by profile: a dimension above the floor is started only if its expected
#: cost (:func:`next_cost`) fits in what is left. ``quick`` (CI, the default): the discrete flows reach
#: d = 128-512, the ODE flows stop at the floor; ``thorough``: the ODE flows reach 128-256, the discrete ones 512
STRESS_SECONDS = {"quick": 0.5, "thorough": 2.0}
#: the least growth of a dimension's cost when it doubles (quadratic: a d×d product per point)
COST_GROWTH = 4.0
#: float64 passes at inputs and parameters moved by one float32 rounding, to measure the conditioning
PERTURBATIONS = 4
#: how many times the largest perturbed deviation the float32 error may reach before it counts
CONDITIONING_FACTOR = 4.0
#: float32's machine epsilon, the relative size of one rounding
FLOAT32_EPS = 2.0**-23


def stress_dims(spec: FlowSpec) -> list[int]:
    """The dimensions of the sweep: each of ``STRESS_DIMS`` moved into the flow's ``[min_dim, max_dim]`` and up to
    the next dimension it allows (``allows_dim``); at least one."""
    dims: list[int] = []
    for wanted in STRESS_DIMS:
        dim = max(wanted, spec.min_dim)
        dim = dim if spec.max_dim is None else min(dim, spec.max_dim)
        top = dim + 64 if spec.max_dim is None else spec.max_dim
        allowed = next((d for d in range(dim, top + 1) if spec.dim_allowed(d)), None)
        if allowed is not None and allowed not in dims:
            dims.append(allowed)
    return dims or [spec.min_dim]


def run(spec: FlowSpec, case: Case) -> CheckResult:
    started = time.perf_counter()
    measurements: list[Measurement] = []
    reached: list[int] = []
    planned = stress_dims(spec)
    costs: list[float] = []
    budget = STRESS_SECONDS.get(case.profile, max(STRESS_SECONDS.values()))
    for dim in planned:
        left = budget - (time.perf_counter() - started)
        if reached and dim > STRESS_FLOOR and next_cost(costs) > left:
            break
        begun = time.perf_counter()
        measurements += sweep(spec, replace(case, dim=dim))
        reached.append(dim)
        costs.append(time.perf_counter() - begun)
    result = judge(measurements, CHECK.tolerance_for(spec))
    skipped = [d for d in planned if d not in reached]
    result.detail += f"; dims {', '.join(map(str, reached))} × input scales {', '.join(map(str, STRESS_SCALES))}"
    if skipped:
        left_out = ", ".join(map(str, skipped))
        result.detail += f" (dims {left_out} left out: over the {budget:g} s budget of the {case.profile} profile)"
    return result


def next_cost(costs: list[float]) -> float:
    """The expected cost of the next dimension of the sweep (each doubles the last): the last one's times the growth
    from the one before it, at least :data:`COST_GROWTH` (a flow whose cost is cubic in ``d``, e.g. one that forms a
    d×d matrix per call, grows 8x per step and would overrun the budget at the quadratic rate)."""
    growth = COST_GROWTH if len(costs) < 2 else max(COST_GROWTH, costs[-1] / max(costs[-2], 1e-9))
    return costs[-1] * growth


def sweep(spec: FlowSpec, case: Case) -> list[Measurement]:
    """The measurements of one dimension, at every scale: float32 vs float64 log-dets and points."""
    tolerance = CHECK.tolerance_for(spec)
    single = build_case_bijector(spec, replace(case, dtype="float32"))
    double = build_case_bijector(spec, replace(case, dtype="float64", life="fresh"))
    double.load_state_dict(single.state_dict())  # float64 on exactly the float32 flow's (rounded) state
    found: list[Measurement] = []
    directions: tuple[tuple[Direction, str, int], ...] = (("forward", "z", 0), ("inverse", "x", 1))
    for scale in STRESS_SCALES:
        context = case_context(replace(case, dtype="float32"), scale=scale)
        context64 = None if context is None else context.double()
        for direction, name, salt in directions:
            side: Side = "base" if direction == "forward" else "data"
            # drawn in float32 (inside a bounded support after rounding too), compared at those very values
            points = case_points(replace(case, dtype="float32"), salt=salt, scale=scale, side=side).double()
            out64, ladj64 = apply(double, points, direction, context64)
            out32, ladj32 = apply(single, points.float(), direction, context)
            finite = torch.isfinite(out32).all(dim=1) & torch.isfinite(out64).all(dim=1)
            errors = {"log-det": row_errors(ladj32.double(), ladj64), "points": row_errors(out32.double(), out64)}
            if any(bool((error > tolerance).any()) for error in errors.values()):
                sensitivity = conditioning(double, points, direction, context64, out64, ladj64, case.seed + salt)
            else:
                sensitivity = {kind: torch.zeros_like(ladj64) for kind in errors}
            where = f"{direction} at d={case.dim}, input scale {scale:g}"
            for kind in errors:
                excess = (errors[kind] - CONDITIONING_FACTOR * sensitivity[kind]).clamp(min=0)
                found.append(
                    Measurement(
                        f"float32 vs float64 {kind} (and finite outputs), {where}",
                        torch.where(finite, excess, torch.full_like(ladj64, math.inf)),
                        {
                            name: points,
                            "float32 log-det": ladj32,
                            "float64 log-det": ladj64,
                            "float32 out": out32,
                            "float64 out": out64,
                            f"float64 {kind} sensitivity to one float32 rounding": sensitivity[kind],
                        },
                    )
                )
    return found


def conditioning(
    double: nn.Module,
    points: Tensor,
    direction: Direction,
    context: Tensor | None,
    out: Tensor,
    ladj: Tensor,
    seed: int,
) -> dict[str, Tensor]:
    """Per row, the largest mixed relative change of the float64 log-det and points over ``PERTURBATIONS`` passes
    with the inputs and every parameter multiplied by ``1 + FLOAT32_EPS · N(0, 1)`` (a CPU generator seeded by
    ``seed``; the parameters are restored afterwards): how much of a float32 error the map's conditioning alone
    explains. Non-finite changes count as 0 (the float32 side's own finiteness is judged separately)."""
    generator = torch.Generator().manual_seed(seed)
    state = {name: value.clone() for name, value in double.state_dict().items()}
    parameters = {name for name, _ in double.named_parameters()}
    worst = {"log-det": torch.zeros_like(ladj), "points": torch.zeros_like(ladj)}
    try:
        for _ in range(PERTURBATIONS):
            moved = {
                name: value * (1 + FLOAT32_EPS * torch.randn(value.shape, generator=generator, dtype=value.dtype))
                if name in parameters
                else value
                for name, value in state.items()
            }
            double.load_state_dict(moved)
            noise = torch.randn(points.shape, generator=generator, dtype=points.dtype).to(points.device)
            moved_out, moved_ladj = apply(double, points * (1 + FLOAT32_EPS * noise), direction, context)
            for kind, got, reference in (("log-det", moved_ladj, ladj), ("points", moved_out, out)):
                change = torch.nan_to_num(row_errors(got.double(), reference), nan=0.0, posinf=0.0)
                worst[kind] = torch.maximum(worst[kind], change)
    finally:
        double.load_state_dict(state)
    return worst


CHECK = CheckSpec(
    name="stress",
    summary=f"at d = {STRESS_DIMS[0]}…{STRESS_DIMS[-1]} × input scales {STRESS_SCALES[0]:g}…{STRESS_SCALES[-1]:g}: "
    "float32 log-dets and points match float64, nothing overflows",
    run=run,
    # float32 keeps ~7 digits, a deep stack at inputs of ~100 amplifies its rounding and a float32 ODE solve takes
    # other steps: ≤ 9.1e-5 measured over the built-ins (nsf; cnf 3.2e-5), so 1e-2 leaves a 100x margin for the
    # thorough profile; the bugs this targets (overflow, a float32 determinant, cancellation) give inf or O(1)
    tolerance=1e-2,
    max_examples=2,
)
