"""``dtype_device``: outputs keep the input's dtype and device; float32 agrees with float64 (and CUDA with CPU);
a dtype the flow does not compute in is refused.

The flow is built in float32 and in float64 on the case's device (the same perturbed parameters, rounded), and
``forward``, ``inverse``, ``log_prob`` and ``sample_and_log_prob`` must return tensors of that dtype on that device:
a layer that allocates with ``torch.zeros(n)`` (default dtype, CPU) fails here. A conditional flow gets the case's
drawn context in the same dtype and on the same device. ``log_prob`` in float32 must match
float64 to the tolerance (a mixed relative error; float32 keeps about 7 digits), and on a CUDA device the float64
``log_prob`` must match the CPU's.

A flow that computes in fewer dtypes (``FlowSpec.dtypes``, e.g. float64 only) is checked in those, and in each
other one it must *refuse*: the flow converted with ``.to(dtype)`` and called with inputs of that dtype must raise
(ideally a :class:`~flowlab.errors.DtypeError` saying which dtypes it supports), never return a result computed in
a precision it does not claim.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from flowlab import FlowSpec
from flowlab.checks import (
    Case,
    CheckResult,
    CheckSpec,
    Measurement,
    apply,
    build_case_flow,
    case_context,
    case_dtype,
    case_points,
    dtype_of,
    judge,
    row_errors,
    seeded,
)


def outputs(spec: FlowSpec, case: Case) -> tuple[dict[str, Tensor], list[str]]:
    """The flow's outputs for ``case`` and the list of those with the wrong dtype or device."""
    flow = build_case_flow(spec, case)
    z, points, context = case_points(case, side="base"), case_points(case), case_context(case)
    with seeded(case.seed, case.device):
        samples, sample_log_prob = flow.sample_and_log_prob(case.batch, context)
    forward, forward_ladj = apply(flow.bijector, z, "forward", context)
    inverse, inverse_ladj = apply(flow.bijector, points, "inverse", context)
    results = {
        "forward": forward,
        "forward log-det": forward_ladj,
        "inverse": inverse,
        "inverse log-det": inverse_ladj,
        "log_prob": flow.log_prob(points, context),
        "samples": samples,
        "sample log_prob": sample_log_prob,
    }
    want_dtype, want_device = dtype_of(case), torch.device(case.device)
    wrong = [
        f"{name} is {value.dtype} on {value.device}, expected {want_dtype} on {want_device}"
        for name, value in results.items()
        if value.dtype != want_dtype or value.device.type != want_device.type
    ]
    return results, wrong


def refusal(spec: FlowSpec, case: Case) -> str | None:
    """``None`` if the flow refuses ``case.dtype`` (not among ``FlowSpec.dtypes``), else what it did instead."""
    flow = build_case_flow(spec, replace(case, dtype=case_dtype(spec)))
    try:
        log_prob = flow.to(dtype_of(case)).log_prob(case_points(case), case_context(case))
    except Exception:
        return None
    return (
        f"{spec.name} declares dtypes {list(spec.dtypes)} (FlowSpec.dtypes) but computed a {log_prob.dtype} log_prob "
        f"in {case.dtype} instead of refusing: declare {case.dtype} if the flow works in it, or raise a DtypeError"
    )


def run(spec: FlowSpec, case: Case) -> CheckResult:
    results, problems = {}, []
    for dtype in ("float32", "float64"):
        if dtype in spec.dtypes:
            try:
                results[dtype], wrong = outputs(spec, replace(case, dtype=dtype))
            except Exception as exc:
                raise type(exc)(
                    f"in {dtype}: {exc} (if the flow computes in some dtypes only: FlowSpec.dtypes)"
                ) from exc
            problems += wrong
        elif (problem := refusal(spec, replace(case, dtype=dtype))) is not None:
            problems.append(problem)
    if problems:
        return CheckResult("failed", detail="; ".join(problems))
    if len(results) < 2 or not spec.eval_deterministic:  # float32 vs float64 of random log-dets would be noise
        declared = ", ".join(spec.dtypes)
        compared = "" if spec.eval_deterministic else "; random eval-mode log-dets not compared across dtypes"
        detail = f"outputs keep their dtype and device; computes in {declared}, refuses the rest{compared}"
        return CheckResult("passed", max_error=0.0, tolerance=0.0, detail=detail)
    single, double = results["float32"], results["float64"]
    points = case_points(replace(case, dtype="float64"))
    measurements = [
        Measurement(
            "float32 log_prob vs float64 log_prob",
            row_errors(single["log_prob"].double(), double["log_prob"]),
            {"x": points, "float32": single["log_prob"], "float64": double["log_prob"]},
        )
    ]
    if torch.device(case.device).type == "cuda" and "float64" in results:
        cpu, _ = outputs(spec, replace(case, dtype="float64", device="cpu"))
        measurements.append(
            Measurement(
                f"{case.device} log_prob vs cpu log_prob (float64)",
                row_errors(double["log_prob"].cpu(), cpu["log_prob"]),
                {"x": points, case.device: double["log_prob"], "cpu": cpu["log_prob"]},
            )
        )
    return judge(measurements, CHECK.tolerance_for(spec))


CHECK = CheckSpec(
    name="dtype_device",
    summary="outputs keep the input's dtype and device; float32 matches float64, CUDA matches CPU",
    run=run,
    tolerance=1e-3,
)
