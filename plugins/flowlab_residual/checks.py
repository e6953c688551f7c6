"""Checks of the residual flows, registered for the conformance kit (``flowlab check residual`` runs them).

- ``residual_roulette_unbiased``: the training-mode log-dets of many copies of one point (each row draws its own
  probe and its own roulette, so the rows are independent estimates) average to the exact ``slogdet`` of the same
  flow, in both directions, as built and with every term through the roulette (``n_exact_terms=0``) and weights
  that make ``J_g ≈ I/2`` (where every term, and so a wrong roulette weight, shows):
  ``|mean − exact| ≤ 5`` standard errors (CLT; a correct estimator fails with probability below one in a million
  per case). A biased estimator (a fixed truncation, a missing ``1/P(n ≥ k)`` weight, a wrong
  sign) fails; the result states the smallest bias it would have detected.
- ``residual_lipschitz``: the contraction the inverse and the series rely on. At the case's points every block's
  ``‖J_g‖₂`` (autograd, float64) is at most ``coeff^(depth + 1)``; and a user weight with ``‖W‖₂ = 2·coeff`` loaded
  from a state dict is rescaled by the spectral normalisation (the bound still holds), or, in a flow built with
  ``spectral_norm=False``, raises ``LipschitzError`` naming the layer, on loading and on the next call.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch

from flowlab import FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    Status,
    batch_jacobian,
    build_case_bijector,
    case_points,
    float64_cpu,
)
from flowlab_residual.bijector import ResidualBlock
from flowlab_residual.lipschitz import LipschitzError, SpectralLinear

Z_BOUND = 5.0
#: copies of the point per case: rows are independent estimates (quick: CI-sized; thorough: 16× the rows, 4× the power)
COPIES = {"quick": 4096, "thorough": 65536}
#: slack on ‖J_g‖₂ ≤ coeff^L: rounding of the SVD and of the autograd Jacobian
BOUND_SLACK = 1e-6


def roulette_flow(spec: FlowSpec) -> bool | str:
    if "roulette_p" in spec.options and spec.logdet == "stochastic":
        return True
    return "applies to residual flows with the Russian-roulette log-det estimate (option roulette_p)"


def residual_flow(spec: FlowSpec) -> bool | str:
    if {"coeff", "depth", "spectral_norm"} <= set(spec.options):
        return True
    return "applies to residual flows (options coeff, depth, spectral_norm)"


def blocks_of(module: Any) -> list[ResidualBlock]:
    return [layer for layer in module.modules() if isinstance(layer, ResidualBlock)]


def without_blocks(spec: FlowSpec, module: Any) -> CheckResult | None:
    """A skip if ``module`` (of a flow with a residual flow's options) has no ``ResidualBlock`` to look into."""
    if blocks_of(module):
        return None
    return CheckResult("skipped", detail=f"{spec.name} has no flowlab_residual ResidualBlock to examine")


# -- residual_roulette_unbiased --------------------------------------------------------------------------------------
def half_identity(module: Any) -> Any:
    """Every weight ``s · I`` (rectangular) with ``s^L = 1/2`` (within ``coeff``), the hidden biases 3 (where the
    activations' slope is ≈ 1): then ``J_g ≈ I/2``, every term of the series of one size (``tr J_g^k ≈ d/2^k``). A
    kit-perturbed flow has ``‖J_g‖₂`` of a few hundredths and log-dets of ~1e-3, where a wrong roulette weight
    would not show; at ``I/2`` dropping the weight ``1/P(n ≥ 1)`` alone is a bias of ``0.2 d`` nats per block, and the
    variance stays small (``ρ² = 1/4 ≪ 1 − p``)."""
    with torch.no_grad():
        for block in blocks_of(module):
            layers = list(block.g.linears)
            for i, layer in enumerate(layers):
                assert isinstance(layer, SpectralLinear)
                scale = min(layer.coeff, 0.5 ** (1 / len(layers)))
                layer.weight.copy_(scale * torch.eye(*layer.weight.shape, dtype=layer.weight.dtype))
                layer.bias.fill_(3.0 if i + 1 < len(layers) else 0.0)
    return module


def run_unbiased(spec: FlowSpec, case: Case) -> CheckResult:
    tolerance = CHECK_UNBIASED.tolerance_for(spec)
    case = float64_cpu(case)
    copies = COPIES.get(case.profile, COPIES["quick"])
    z = case_points(case, batch=1)
    # as built; and with every term through the roulette (no exact terms) where each term is large
    variants = (
        ("as built", build_case_bijector(spec, case, eval_logdet="exact")),
        (
            "n_exact_terms=0, J_g ≈ I/2",
            half_identity(build_case_bijector(spec, case, eval_logdet="exact", n_exact_terms=0)),
        ),
    )
    skipped = without_blocks(spec, variants[0][1])
    if skipped is not None:
        return skipped
    scores, parts, detectable = [], [], 0.0
    for label, module in variants:
        with torch.no_grad():
            x, exact_forward = module(z)
            _, exact_inverse = module.inverse(x)
            module.train()
            for direction, point, exact in (("forward", z, exact_forward), ("inverse", x, exact_inverse)):
                rows = point.expand(copies, case.dim).clone()
                _, estimates = module(rows) if direction == "forward" else module.inverse(rows)
                mean, spread = float(estimates.mean()), float(estimates.std()) / math.sqrt(copies)
                score = abs(mean - float(exact[0])) / max(spread, 1e-12)
                scores.append(score)
                detectable = max(detectable, tolerance * spread)
                parts.append(
                    f"{label}, {direction}: mean {mean:.6g} ± {spread:.2g} (SE) vs exact {float(exact[0]):.6g}, "
                    f"{score:.2f} SE"
                )
    worst = max(scores)
    return CheckResult(
        "passed" if worst <= tolerance else "failed",
        worst,
        tolerance,
        f"training-mode roulette log-dets of {copies} copies of one point vs slogdet(I + J_g) (d={case.dim}): "
        + "; ".join(parts)
        + f"; detects a bias of {detectable:.2g}",
        {"scores": scores},
        detectable=detectable,
    )


CHECK_UNBIASED = CheckSpec(
    name="residual_roulette_unbiased",
    summary="residual: the Russian-roulette log-det estimates average to the exact slogdet (|z| ≤ 5, both directions)",
    run=run_unbiased,
    applies=roulette_flow,
    tolerance=Z_BOUND,
    max_examples=3,
)


# -- residual_lipschitz ----------------------------------------------------------------------------------------------
def residual_part(block: ResidualBlock, points: torch.Tensor) -> torch.Tensor:
    """``g(z) = f(z) − z`` through the block's own forward."""
    return block(points)[0] - points


def jacobian_norms(module: Any, points: torch.Tensor) -> list[float]:
    """``max_rows ‖J_g‖₂`` of every block, at the points each block receives, by autograd of ``f(z) − z``."""
    norms = []
    for block in blocks_of(module):
        jacobian = batch_jacobian(partial(residual_part, block), points)
        norms.append(float(torch.linalg.matrix_norm(jacobian, 2).max()))
        with torch.no_grad():
            points = block(points)[0]
    return norms


def with_norm(weight: torch.Tensor, norm: float) -> torch.Tensor:
    """``weight`` scaled to spectral norm ``norm``."""
    return weight * (norm / float(torch.linalg.matrix_norm(weight, 2)))


def refusals(module: Any, state: dict[str, torch.Tensor], key: str, points: torch.Tensor) -> list[str]:
    """What a ``spectral_norm=False`` flow failed to refuse of the oversized weight ``state[key]``."""
    problems = []
    parameter = dict(module.named_parameters())[key]
    for what in ("load_state_dict", "the next call"):
        try:
            if what == "load_state_dict":
                module.load_state_dict(state)
            else:
                with torch.no_grad():  # in place, as an optimizer step would put it
                    parameter.copy_(state[key])
                module(points)
        except LipschitzError as exc:
            if "block 0, linear layer 1" not in str(exc):
                problems.append(f"{what} raised an error that does not name the layer: {exc}")
        else:
            problems.append(f"{what} accepted a weight with ‖W‖₂ = 2·coeff")
    return problems


def run_lipschitz(spec: FlowSpec, case: Case) -> CheckResult:
    tolerance = CHECK_LIPSCHITZ.tolerance_for(spec)
    case = float64_cpu(case)
    options = spec.resolve_options(case.options)
    coeff, bound = options["coeff"], options["coeff"] ** (options["depth"] + 1)
    points = case_points(case, scale=max(case.scale, 1.0))
    module: Any = build_case_bijector(spec, case)
    skipped = without_blocks(spec, module)
    if skipped is not None:
        return skipped
    norms = jacobian_norms(module, points)
    # the same flow unnormalised, its weights brought within the bound: it loads and runs; then a user weight twice
    # the bound in block 0's first layer, which the normalised flow must rescale and the unnormalised one refuse
    unnormalised: Any = build_case_bijector(spec, case, spectral_norm=False)
    state = {
        name: with_norm(value, min(coeff, float(torch.linalg.matrix_norm(value, 2))))
        if ".linears." in name and name.endswith(".weight")
        else value.clone()
        for name, value in unnormalised.state_dict().items()
    }
    problems = []
    try:
        unnormalised.load_state_dict(state)
        unnormalised(points)
    except LipschitzError as exc:
        problems.append(f"spectral_norm=False refused weights within the bound: {exc}")
    key = next(name for name in state if name.endswith("linears.0.weight"))
    state[key] = with_norm(state[key], 2 * coeff)
    problems += [f"spectral_norm=False: {p}" for p in refusals(unnormalised, state, key, points)]
    module.load_state_dict(state)
    loaded = jacobian_norms(module, points)
    worst = max(norms + loaded) / bound
    status: Status = "passed" if worst <= tolerance and not problems else "failed"
    return CheckResult(
        status,
        worst if not problems else math.inf,
        tolerance,
        f"max ‖J_g‖₂ / coeff^(depth+1) per block: {', '.join(f'{n / bound:.4g}' for n in norms)} (as built), "
        f"{', '.join(f'{n / bound:.4g}' for n in loaded)} (with a loaded weight of norm 2·coeff); bound "
        f"{bound:.4g}" + ("; " + "; ".join(problems) if problems else "; spectral_norm=False raised LipschitzError"),
        {"norms": norms, "loaded": loaded, "bound": bound},
    )


CHECK_LIPSCHITZ = CheckSpec(
    name="residual_lipschitz",
    summary="residual: ‖J_g‖₂ ≤ coeff^(depth+1) in every block, also for a loaded oversized weight; "
    "spectral_norm=False refuses it (LipschitzError)",
    run=run_lipschitz,
    applies=residual_flow,
    tolerance=1 + BOUND_SLACK,
    max_examples=3,
)

CHECKS = (CHECK_UNBIASED, CHECK_LIPSCHITZ)
