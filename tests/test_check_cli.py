"""``flowlab check``: exit codes, the JSON document (its schema is in docs/checks.md), warnings, usage errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings

import flowlab
from flowlab import FlowSpec
from flowlab.checks import Case
from flowlab.checks.strategies import size_grid
from flowlab.cli import main
from flowlab.plugins import Registry, reset_registry
from flowlab.testing import cases, dims, inputs, option_values

DOCS = Path(__file__).resolve().parent.parent / "docs" / "checks.md"
RUN_KEYS = {
    "status",
    "max_error",
    "tolerance",
    "detectable_error",
    "examples",
    "seconds",
    "detail",
    "counterexample",
    "worst",
}


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = main(["check", *argv, "--json", "-"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_a_passing_flow_exits_0_with_a_json_document_matching_the_schema(capsys):
    code, data, _ = run_json(["affine", "--property", "invertibility", "--property", "mixing"], capsys)
    assert code == 0
    assert data["schema"] == "flowlab-check/3" and data["status"] == "passed" and data["devices"] == ["cpu"]
    assert set(data) == {"schema", "flowlab_version", "profile", "devices", "status", "counts", "uncovered", "flows"}
    flow = data["flows"]["affine"]
    assert flow["warnings"] == []
    for name in ("invertibility", "mixing"):
        run = flow["properties"][name]["cpu"]
        assert set(run) == RUN_KEYS
        assert run["status"] == "passed" and run["examples"] >= 1 and run["counterexample"] is None
        assert run["max_error"] <= run["tolerance"]


def test_the_schema_is_documented():
    text = DOCS.read_text()
    for key in (
        *RUN_KEYS,
        "schema",
        "flowlab_version",
        "profile",
        "devices",
        "counts",
        "flows",
        "warnings",
        "reproduce",
    ):
        assert f"`{key}`" in text, key


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no_such_flow"], r"unknown flow 'no_such_flow'; known flows: .*affine"),
        (["affine", "--property", "no_such_property"], r"unknown check 'no_such_property'; known checks: .*logdet"),
        (["affine", "--property", "logdet", "--case", "{not json"], r"--case expects JSON"),
        (["affine", "--case", '{"dim": 2, "batch": 1, "seed": 0}'], r"--case runs one case"),
        (["glow", "--property", "logdet", "--case", '{"dim": 1, "batch": 1, "seed": 0}'], r"dim 1 is outside glow"),
        (["affine", "--property", "logdet", "--case", '{"dim": 2, "batch": 0, "seed": 0}'], r"expected batch >= 1"),
        (["affine", "--property", "logdet", "--case", '{"dim":2,"batch":1,"seed":0,"options":{"wat":1}}'], r"'wat'"),
        (["affine", "--property", "logdet", "--json", "/no/such/folder/r.json"], r"--json /no/such/folder/r.json"),
        (["affine", "--property", "logdet", "--checkpoint", "x.pt"], r"give no NAME and no --dim"),
    ],
)
def test_usage_errors_exit_2_and_say_what_is_allowed(argv, message, capsys):
    assert main(["check", *argv]) == 2
    assert re.search(message, " ".join(capsys.readouterr().err.split()))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the behaviour where there is no CUDA")
@pytest.mark.parametrize("choice", ["cuda", "all"], ids=["gpu-only", "cpu-and-gpu"])  # "cuda" ids mean "needs CUDA"
def test_cuda_where_there_is_none_is_a_usage_error_unless_allowed(choice, capsys):
    """A CI gate asking for CUDA on a machine without it must not pass having checked nothing."""
    assert main(["check", "affine", "--property", "logdet", "--device", choice]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "torch.cuda.is_available() is False" in err and "--allow-missing-device" in err
    argv = ["affine", "--property", "logdet", "--device", choice, "--allow-missing-device"]
    code, data, _ = run_json(argv, capsys)
    run = data["flows"]["affine"]["properties"]["logdet"]["cuda"]
    assert code == 0 and run["status"] == "skipped" and "CUDA" in run["detail"]


def test_a_flow_without_explanation_gets_a_warning_not_a_failure(capsys):
    class Plugin:
        @flowlab.hookimpl
        def flowlab_register_flows(self, register):
            register(flowlab.FlowSpec(name="unexplained", summary="no docs", build=flowlab.flow_spec("affine").build))

    registry = Registry()
    registry.load_entry_points()
    registry.add_plugin(Plugin(), "unexplained")
    reset_registry(registry)
    try:
        code, data, err = run_json(["unexplained", "--property", "invertibility"], capsys)
    finally:
        reset_registry()
    assert code == 0
    assert "has no explanation" in data["flows"]["unexplained"]["warnings"][0]
    assert "warning" in err and "no explanation" in err


@settings(max_examples=20)
@given(case=cases(flowlab.flow_spec("stacked")))
def test_drawn_cases_respect_the_spec(case: Case):
    spec = flowlab.flow_spec("stacked")
    assert spec.min_dim <= case.dim <= spec.min_dim + 4 and 1 <= case.batch <= 8
    sized = {name for name, option in spec.options.items() if size_grid(spec, name, option)}  # e.g. blocks
    drawn = {name for name, option in spec.options.items() if option.choices} | sized | {"context_dim"}
    assert set(case.options) == drawn and case.options["context_dim"] in (0, 2)
    spec.resolve_options(case.options)  # every drawn option is allowed


@given(points=inputs(dims(min_dim=2), batch=3, scale=2.0))
def test_inputs_are_batches_of_points(points):
    assert points.shape[0] == 3 and points.shape[1] >= 2 and points.dtype.is_floating_point


@given(options=option_values(flowlab.flow_spec("coupling")))
def test_option_values_are_allowed(options):
    assert flowlab.flow_spec("coupling").resolve_options(options)


def test_non_finite_errors_render_in_the_table_and_as_json_strings():
    from rich.console import Console

    from flowlab.checks.runner import PropertyRun
    from flowlab.reports.checks import document, results_table

    runs = [
        PropertyRun("f", "invertibility", "cpu", "failed", max_error=float("inf"), tolerance=1e-8),
        PropertyRun("f", "logdet", "cpu", "failed", max_error=float("nan"), tolerance=1e-8),
    ]
    console = Console(record=True, width=120)
    console.print(results_table(runs))
    text = console.export_text()
    assert "inf" in text and "nan" in text
    data = document(runs, profile="quick", devices=["cpu"], version="0")
    assert data["flows"]["f"]["properties"]["invertibility"]["cpu"]["max_error"] == "inf"
    json.dumps(data, allow_nan=False)


def test_plugin_files_load_with_plugin_and_the_reproduce_command_keeps_them(tmp_path, capsys):
    mutants = str(Path(__file__).resolve().parent / "mutants" / "discrete.py")
    reset_registry()
    try:
        report = tmp_path / "report.json"
        argv = ["check", "--plugin", mutants, "mutant_logdet_offset", "--property", "logdet", "--json", str(report)]
        assert main(argv) == 1
        run = json.loads(report.read_text())["flows"]["mutant_logdet_offset"]["properties"]["logdet"]["cpu"]
        assert run["counterexample"]["reproduce"].startswith(f"flowlab check --plugin {mutants} mutant_logdet_offset")
    finally:
        reset_registry()
    assert main(["check", "--plugin", str(tmp_path / "missing.py")]) == 2
    assert "not found" in " ".join(capsys.readouterr().err.split())


def test_a_check_leaves_the_process_registry_as_it_found_it(tmp_path, capsys):
    """--dim and --checkpoint derive specs (never registered); a --plugin file's flows are forgotten after the
    command, so a second command in the same process (a test, a notebook) does not see them."""
    plugin = tmp_path / "extra_flow.py"
    plugin.write_text(PLUGIN_FILE)
    before = set(flowlab.flows())
    argv = ["check", "--plugin", str(plugin), "extra_affine", "--property", "invertibility", "--dim", "3"]
    assert main(argv) == 0
    assert set(flowlab.flows()) == before
    assert main(["check", "extra_affine"]) == 2, "the plugin file's flow is unknown to the next command"
    capsys.readouterr()


PLUGIN_FILE = """
import dataclasses

import flowlab
from flowlab import FlowSpec


@flowlab.hookimpl
def flowlab_register_flows(register):
    register(dataclasses.replace(flowlab.flow_spec("affine"), name="extra_affine"))
"""


def test_output_that_is_not_a_terminal_has_one_summary_line_per_flow(capsys):
    """In a log or a pipe the table would fold long names mid-word and double the lines: one line per flow."""
    assert main(["check", "affine", "coupling", "--property", "invertibility", "--property", "mixing"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if " / cpu: " in line]
    assert [line.split(" / ")[0] for line in lines] == ["affine", "coupling"]
    summary = r"\S+ / cpu: (\d+ passed|\d+ not applicable|, )+; \d+\.\d s"
    assert all(re.fullmatch(summary, line) for line in lines), lines


def test_a_checkpoint_of_a_flow_whose_sizes_the_kit_pins_is_checked_at_its_trained_sizes(tmp_path):
    """maf pins 8 hidden units for the kit's speed; a trained maf has its own: the pin is left out (it does not fit
    the trained parameters), solver pins that leave the parameters alone stay (cnf's dopri5)."""
    from flowlab.checks.trained import parameter_free_pins

    out = tmp_path / "run"
    assert main(["train", "--flow", "maf", "--data", "moons", "--steps", "1", "-o", "hidden=16", "--eval-size", "64",
                 "--out", str(out)]) == 0  # fmt: skip
    report = tmp_path / "report.json"
    argv = ["check", "--checkpoint", str(out / "checkpoint.pt"), "--property", "build", "--property", "invertibility"]
    assert main([*argv, "--json", str(report)]) == 0
    runs = next(iter(json.loads(report.read_text())["flows"].values()))["properties"]
    assert {name: run["cpu"]["status"] for name, run in runs.items()} == {"build": "passed", "invertibility": "passed"}
    maf, cnf = flowlab.flow_spec("maf"), flowlab.flow_spec("cnf")
    assert parameter_free_pins(maf, 2, maf.resolve_options({"hidden": 16})) == {"depth": 2}  # depth as trained
    assert parameter_free_pins(cnf, 2, cnf.resolve_options({"method": "rk4"}))["method"] == "dopri5"


def test_a_fixed_flow_that_cannot_be_built_as_it_is_fails_build():
    from flowlab.checks import SkipCase, check_spec
    from flowlab.checks.runner import run_property

    def build(dim, **options):
        raise SkipCase("the saved parameters do not fit")

    spec = FlowSpec(name="unfit", summary="s", build=build, explanation="e", fixed_parameters=True)
    run = run_property(check_spec("build"), spec)
    assert run.status == "failed" and "cannot be built as it is" in run.detail
