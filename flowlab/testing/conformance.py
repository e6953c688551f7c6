"""Run the conformance kit on flows from a test suite: :func:`conformance_tests`, :func:`check_flow`,
:func:`assert_conforms`. Same runner as ``flowlab check`` (:func:`flowlab.checks.runner.run_property`).

:func:`conformance_tests` makes one pytest test per flow × property × device, so pytest-xdist spreads them over
processes (``pytest -n auto``) or machines (``--tx``): the way to run the kit across machines (``docs/checks.md``).
:func:`check_flow` and :func:`assert_conforms` also take a ``FlowSpec`` that is not registered (a flow a test or a
notebook made up)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest

from flowlab.checks.origin import FlowOrigin
from flowlab.checks.runner import PropertyRun, default_flow_names, run_property, selection
from flowlab.registry import check_spec, checks, flow_spec
from flowlab.spec import NOT_PASSING, FlowSpec
from flowlab.threads import limited


def parameters(names: Sequence[str], properties: Sequence[str] | None, devices: Sequence[str]) -> list[Any]:
    """``pytest.param(flow, property, device)`` for every combination, with readable ids."""
    origins = [FlowOrigin(name) for name in names or default_flow_names()]
    return [
        pytest.param(spec.name, check.name, device, id=f"{spec.name}-{check.name}-{device}")
        for _, spec, check in selection(origins, properties)
        for device in devices
    ]


def check_flow(
    flow: str | FlowSpec,
    *,
    properties: Iterable[str] | None = None,
    device: str = "cpu",
    profile: str | None = None,
) -> list[PropertyRun]:
    """Run the kit's properties (all registered ones by default) on the flow named ``flow``, or on ``flow`` itself
    (a ``FlowSpec``, registered or not)."""
    spec = flow_spec(flow) if isinstance(flow, str) else flow
    chosen = list(checks().values()) if properties is None else [check_spec(name) for name in properties]
    return [run_property(check, spec, device, profile=profile) for check in chosen]


def describe(run: PropertyRun) -> str:
    """A failure (or any run) in words: status, error vs tolerance, detail, counterexample and how to rerun it."""
    lines = [f"{run.flow} / {run.check} / {run.device}: {run.status} — {run.detail}"]
    if run.max_error is not None:
        lines.append(f"  worst error {run.max_error:.3g} (tolerance {run.tolerance:.3g}), {run.examples} examples")
    if run.counterexample is not None:
        lines.append(f"  counterexample: {run.counterexample.case}")
        if run.counterexample.data:
            lines.append(f"  values: {run.counterexample.data}")
        lines.append(f"  reproduce: {run.counterexample.reproduce}")
    if run.worst is not None:
        lines.append(f"  worst case: error {run.worst.max_error:.3g} at {run.worst.case}")
        lines.append(f"  reproduce the worst case: {run.worst.reproduce}")
    return "\n".join(lines)


def assert_conforms(
    flow: str | FlowSpec,
    *,
    properties: Iterable[str] | None = None,
    device: str = "cpu",
    profile: str | None = None,
) -> list[PropertyRun]:
    """:func:`check_flow`, raising ``AssertionError`` that describes every failed property."""
    runs = check_flow(flow, properties=properties, device=device, profile=profile)
    failed = [run for run in runs if run.status in NOT_PASSING]
    assert not failed, "\n".join(describe(run) for run in failed)
    return runs


def conformance_tests(*names: str, properties: Sequence[str] | None = None) -> Callable[..., None]:
    """A pytest test function running the kit on ``names`` (if none: every flow checked by default, see
    :func:`~flowlab.checks.runner.selection`): one test per flow × property × device (``--flowlab-device``), skipped
    with the kit's reason where a property does not apply. Each test runs under the kit's thread policy
    (:func:`flowlab.threads.limited`: one torch thread unless ``$FLOWLAB_THREADS`` or ``$OMP_NUM_THREADS`` says
    otherwise), and gives the suite's other tests their thread count back.

    Assign it in a test module: ``test_conformance = conformance_tests("myflow")``.
    """

    @pytest.mark.flowlab_conformance(names=names, properties=properties)
    def test_conformance(flowlab_flow: str, flowlab_property: str, flowlab_device: str, flowlab_profile: str) -> None:
        with limited():
            run = run_property(
                check_spec(flowlab_property), flow_spec(flowlab_flow), flowlab_device, profile=flowlab_profile
            )
        if run.status in ("skipped", "not_applicable"):
            pytest.skip(run.detail)
        assert run.status not in NOT_PASSING, describe(run)

    return test_conformance
