"""``call_forms``: the same numbers give the same result in every memory layout and call form.

A flow must not depend on how its input sits in memory. ``forward`` (at base points) and ``inverse`` (at data
points) are called, in eval mode, on the case's points in :data:`LAYOUTS`: column-major (a transposed copy), a
strided slice of a wider tensor (non-contiguous), and the first row expanded to the batch (stride 0); each must
give the outputs of a contiguous copy of the same values (a layer that reads its input's storage as if it were
contiguous, as ``as_strided`` or a hand-written kernel does, returns other values or fails). A conditional flow's
contexts are given in the same layouts, and in the two call forms of ``Flow`` (``docs/conditioning.md``): one
context per row (``[rows, k]``) and one for every row (``[k]``, which ``Flow`` expands to a stride-0 view):
``log_prob`` and ``sample_and_log_prob`` (the same seed) must give what the per-row copy gives (a shared-context
fast path that drifted from the per-row code fails). A flow with a ``context_dim`` option is checked at
``context_dim=2`` when the case drew 0 (the option is pinned otherwise), and with at least :data:`MIN_ROWS` rows.

Errors are mixed relative errors against the contiguous copy; the tolerance allows for a linear algebra kernel
that sums in another order for another layout (measured on the built-ins: at most 8e-16).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from flowlab import Flow, FlowSpec
from flowlab.checks import (
    CONTEXT_OPTION_NAME,
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
    row_errors,
    seeded,
    with_context,
)


def column_major(values: Tensor) -> Tensor:
    return values.t().contiguous().t()


def strided(values: Tensor) -> Tensor:
    wide = values.new_zeros(values.shape[0], 2 * values.shape[1])
    wide[:, ::2] = values
    return wide[:, ::2]


def first_row_expanded(values: Tensor) -> Tensor:
    return values[:1].expand_as(values)


def contiguous(values: Tensor) -> Tensor:
    return values.contiguous()


def first_row_repeated(values: Tensor) -> Tensor:
    return values[:1].repeat(values.shape[0], 1)


#: the fewest rows a case is checked with (one row has a single layout)
MIN_ROWS = 3

#: name -> (the layout of a ``[rows, n]`` tensor, the contiguous tensor of the same values)
LAYOUTS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "column-major": (column_major, contiguous),
    "strided (non-contiguous)": (strided, contiguous),
    "first row expanded (stride 0)": (first_row_expanded, first_row_repeated),
}


def with_context_dim(spec: FlowSpec, case: Case) -> Case:
    """``case``, at ``context_dim=2`` if the flow has that option, the case drew 0 and the flow does not pin it."""
    if CONTEXT_OPTION_NAME in spec.options and CONTEXT_OPTION_NAME not in spec.check_options:
        if not case.options.get(CONTEXT_OPTION_NAME):
            return replace(case, options={**case.options, CONTEXT_OPTION_NAME: 2})
    return case


def run(spec: FlowSpec, case: Case) -> CheckResult:
    case = replace(with_context_dim(spec, case), batch=max(case.batch, MIN_ROWS))
    bijector = build_case_bijector(spec, case)
    context = case_context(case)
    measurements = []
    directions: tuple[tuple[Direction, int], ...] = (("forward", 0), ("inverse", 1))
    for direction, salt in directions:
        points = case_points(case, salt=salt, side="base" if direction == "forward" else "data")
        references: dict[str, tuple[Tensor, Tensor | None, Tensor, Tensor]] = {}
        for name, (layout, copy) in LAYOUTS.items():
            copies = (copy(points), None if context is None else copy(context))
            key = copy.__name__
            if key not in references:  # a contiguous copy of the same values: one call per kind of copy
                references[key] = (*copies, *apply(bijector, copies[0], direction, copies[1]))
            reference_points, reference_context, expected, expected_ladj = references[key]
            variants = {"points": (layout(points), reference_context)}
            if context is not None:
                variants["context"] = (reference_points, layout(context))
            for what, (laid_points, laid_context) in variants.items():
                out, ladj = apply(bijector, laid_points, direction, laid_context)
                measurements.append(
                    Measurement(
                        f"{direction} with the {what} {name} vs a contiguous copy",
                        torch.maximum(row_errors(out, expected), row_errors(ladj, expected_ladj)),
                        with_context({"input": reference_points, "got": out, "expected": expected}, reference_context),
                    )
                )
    if context is not None:
        measurements += shared_context(spec, case, bijector)
    return judge(measurements, CHECK.tolerance_for(spec))


def shared_context(spec: FlowSpec, case: Case, bijector: torch.nn.Module) -> list[Measurement]:
    """``log_prob`` and ``sample_and_log_prob`` with one context for every row (``[k]``) vs its per-row copy."""
    shared = case_context(case, batch=1)
    assert shared is not None
    shared = shared[0]
    per_row = shared.repeat(case.batch, 1)
    x = case_points(case, salt=1)
    base = None if spec.base is None else spec.base(case.dim, dtype=x.dtype, device=x.device)
    flow = Flow(bijector, base)  # type: ignore[arg-type]
    drawn = []
    for context in (shared, per_row):
        with seeded(case.seed + 5, case.device):
            drawn.append(flow.sample_and_log_prob(case.batch, context))
    (samples, sample_log_prob), (expected_samples, expected_sample_log_prob) = drawn
    log_prob, expected = flow.log_prob(x, shared), flow.log_prob(x, per_row)
    return [
        Measurement(
            "log_prob with one context [k] for every row vs the per-row copy [rows, k]",
            row_errors(log_prob, expected),
            {"x": x, "context": per_row, "shared": log_prob, "per row": expected},
        ),
        Measurement(
            "sample_and_log_prob with one context [k] vs the per-row copy (same seed)",
            torch.maximum(row_errors(samples, expected_samples), row_errors(sample_log_prob, expected_sample_log_prob)),
            {"context": per_row, "shared": samples, "per row": expected_samples},
        ),
    ]


CHECK = CheckSpec(
    name="call_forms",
    summary="column-major, strided and stride-0 inputs and contexts, and a shared [k] context, give what "
    "contiguous per-row copies give",
    run=run,
    tolerance=1e-12,
    max_examples=2,
)
