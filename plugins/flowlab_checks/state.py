"""``state``: a flow that has lived equals a fresh instance holding its saved state, bit for bit.

The case's flow after its life (``trained`` when the case drew ``fresh``: the state must have moved; see
``flowlab.checks.lives``) is saved as a checkpoint saves it (``state_dict`` through ``torch.save``) and loaded with
``torch.load(weights_only=True)`` into another instance, built under another seed (other parameters, other initial
buffers) and used once in eval mode before loading, so that whatever it derived from its first parameters must
follow the loaded ones. Both are then called on the same points (and contexts): ``forward`` and ``inverse``
(points and log-dets; ``log_prob`` is the inverse's ``log p_z(z) + log-det``) in eval mode, and in training mode (at
least ``FlowSpec.min_train_batch`` rows, the global RNG seeded alike for both calls, so dropout draws the same
masks). Everything must be bit-equal, except what is random by declaration: a flow with a stochastic log-det
(``logdet="stochastic"``) is compared in eval mode only (the generators it draws from in training mode are not
part of its state, and an adaptive solver's steps, hence even its points, follow the draws), and the eval-mode
log-dets of a flow with ``eval_deterministic=False`` are left out.

What fails: state kept outside the ``state_dict`` (running statistics in a plain attribute or a non-persistent
buffer), a cache derived from the first parameters and not refreshed by ``load_state_dict``, a ``state_dict``
that ``torch.load(weights_only=True)`` refuses (it holds objects other than tensors and plain containers).
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from flowlab import Flow, FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    Direction,
    Measurement,
    apply,
    build_case_bijector,
    case_context,
    case_points,
    judge,
    other_seed,
    row_errors,
    seeded,
    with_context,
)


def saved_and_loaded(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` through ``torch.save`` and ``torch.load(weights_only=True)``, as a checkpoint goes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded: dict[str, Any] = torch.load(buffer, weights_only=True, map_location="cpu")
    return loaded


def modes(spec: FlowSpec) -> tuple[bool, ...]:
    """``train`` flags of the modes compared: eval mode, and training mode unless its log-det is an estimate (the
    generators it draws from are not state, and an adaptive solver's steps, hence its points, follow the draws)."""
    return (False,) if spec.logdet == "stochastic" else (False, True)


def run(spec: FlowSpec, case: Case) -> CheckResult:
    lived = build_case_bijector(spec, case if case.life != "fresh" else replace(case, life="trained"))
    other = build_case_bijector(spec, replace(case, seed=other_seed(case.seed), life="fresh"))
    z, x, context = case_points(case, salt=0, side="base"), case_points(case, salt=1), case_context(case)
    apply(other, z, "forward", context)
    apply(other, x, "inverse", context)
    other.load_state_dict(saved_and_loaded(lived.state_dict()))
    base = Flow(lived, None if spec.base is None else spec.base(case.dim, dtype=x.dtype, device=x.device))
    measurements = []
    for train in modes(spec):
        mode = "training" if train else "eval"
        rows = max(case.batch, spec.min_train_batch) if train else case.batch
        context = case_context(case, batch=rows)
        directions: tuple[tuple[Direction, Tensor], ...] = (
            ("forward", case_points(case, salt=0, batch=rows, side="base")),
            ("inverse", case_points(case, salt=1, batch=rows)),
        )
        for direction, points in directions:
            results = []
            for bijector in (lived, other):
                with seeded(case.seed + 3, case.device):
                    results.append(apply(bijector.train(train), points, direction, context))
            (out, ladj), (out_loaded, ladj_loaded) = results
            random_ladj = not train and not spec.eval_deterministic
            what = "points" if random_ladj else "points and log-dets"
            errors = row_errors(out_loaded, out)
            values = {"input": points, "lived": out, "loaded": out_loaded}
            if not random_ladj:
                errors = torch.maximum(errors, row_errors(ladj_loaded, ladj))
                values.update({"lived log-det": ladj, "loaded log-det": ladj_loaded})
            if direction == "inverse" and not train and not random_ladj:  # log_prob = log p_z(z) + log-det
                what = "log_prob (its inverse's points and log-dets)"
                values.update(
                    {
                        "lived log_prob": base.base_log_prob(out) + ladj,
                        "loaded log_prob": base.base_log_prob(out_loaded) + ladj_loaded,
                    }
                )
            measurements.append(
                Measurement(
                    f"{direction} {what}: the lived flow vs a fresh instance holding its saved state ({mode} mode)",
                    errors,
                    with_context(values, context),
                )
            )
    return judge(measurements, CHECK.tolerance_for(spec))


CHECK = CheckSpec(
    name="state",
    summary="a flow that has lived equals a fresh instance holding its state_dict (saved, loaded with "
    "weights_only=True), bit for bit",
    run=run,
    tolerance=0.0,
    max_examples=2,
)
