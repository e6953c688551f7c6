"""``flowlab check -n`` (a process pool, ``flowlab.checks.pool``): the same report as the serial path, with
``--plugin`` files, ``--dim`` and ``--checkpoint``; the thread policy; plain progress lines when piped; flows that
are not checked by default.

One parallel run (two worker processes, a few seconds) serves several tests: it mixes passing built-ins, a failing
mutant (``tests/mutants/discrete.py``) and a property from a ``--plugin`` file that reports the torch threads its
worker ran with.
"""

from __future__ import annotations

import copy
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

import flowlab
from flowlab import threads
from flowlab.checks.origin import FlowOrigin
from flowlab.checks.pool import Schedule, Task
from flowlab.checks.runner import default_flow_names, selection
from flowlab.cli import main
from flowlab.plugins import Registry, reset_registry

MUTANTS = str(Path(__file__).resolve().parent / "mutants" / "discrete.py")
THREADS_CHECK = """
import torch

import flowlab
from flowlab.checks import CheckResult, CheckSpec


def run(spec, case):
    return CheckResult("passed", max_error=0.0, tolerance=0.0, detail=f"torch threads {torch.get_num_threads()}")


class Plugin:
    @flowlab.hookimpl
    def flowlab_register_checks(self, register):
        register(CheckSpec(name="torch_threads", summary="the worker's torch threads", run=run, max_examples=1))


PLUGIN = Plugin()
"""


def outcome(data: dict[str, Any]) -> dict[str, Any]:
    """The document less what may differ between two processes: seconds, and what depends on which cases were drawn
    besides the shrunk counterexample: the passing runs' worst errors, the failing runs' worst case (see
    docs/checks.md: Hypothesis also draws constants it finds in the source of the local modules a process has
    imported, so a worker may draw other cases than the serial run; the shrunk counterexample is the same)."""
    data = copy.deepcopy(data)
    for flow in data["flows"].values():
        for devices in flow["properties"].values():
            for run in devices.values():
                run.pop("seconds")
                drawn = ("max_error", "examples", "detail") if run["status"] == "passed" else ("max_error", "worst")
                for key in drawn:
                    run.pop(key)
    return data


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same ``flowlab check`` serially and with ``-n 2``: exit status, JSON document, stdout and stderr."""
    folder = tmp_path_factory.mktemp("parallel")
    plugin = folder / "threads_check.py"
    plugin.write_text(textwrap.dedent(THREADS_CHECK))
    argv = ["check", "--plugin", MUTANTS, "--plugin", str(plugin), "affine", "mutant_logdet_offset"]
    argv += ["--property", "logdet", "--property", "torch_threads"]
    results: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as patch:
        for name in (threads.ENV, threads.OMP_ENV):
            patch.delenv(name, raising=False)
        for mode, extra in (("serial", []), ("parallel", ["-n", "2"])):
            reset_registry()
            try:
                report = folder / f"{mode}.json"
                code = _run_captured([*argv, *extra, "--json", str(report)], folder / f"{mode}.out")
            finally:
                reset_registry()
            results[mode] = {"code": code[0], "out": code[1], "err": code[2], "data": json.loads(report.read_text())}
    return results


def _run_captured(argv: list[str], log: Path) -> tuple[int, str, str]:
    """``main(argv)`` with stdout and stderr written to files (neither is a terminal)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    log.write_text(out.getvalue() + err.getvalue())
    return code, out.getvalue(), err.getvalue()


def test_the_parallel_report_is_the_serial_one(reports):
    serial, parallel = reports["serial"], reports["parallel"]
    assert serial["code"] == parallel["code"] == 1
    assert outcome(parallel["data"]) == outcome(serial["data"])
    statuses = {flow: data["properties"]["logdet"]["cpu"]["status"] for flow, data in serial["data"]["flows"].items()}
    assert statuses == {"affine": "passed", "mutant_logdet_offset": "failed"}


def test_a_failing_mutant_under_n_2_shows_its_counterexample_and_reproduce_line(reports):
    out = " ".join(reports["parallel"]["out"].split())
    assert "mutant_logdet_offset / logdet / cpu: failed" in out and "counterexample (shrunk): error" in out
    assert f"reproduce: flowlab check --plugin {MUTANTS} --plugin " in out
    assert "mutant_logdet_offset --property logdet --device cpu --case" in out


def test_workers_load_the_plugin_files_and_run_on_one_thread(reports):
    run = reports["parallel"]["data"]["flows"]["affine"]["properties"]["torch_threads"]["cpu"]
    assert run["status"] == "passed" and run["detail"] == "torch threads 1"


@pytest.mark.parametrize("mode", ["serial", "parallel"])
def test_progress_is_one_plain_line_per_run_when_stderr_is_not_a_terminal(reports, mode):
    lines = [line for line in reports[mode]["err"].splitlines() if line.startswith("[")]
    assert len(lines) == 4, reports[mode]["err"]
    assert all(
        re.fullmatch(r"\[\d/4\] \S+ / \S+ / cpu: (passed|failed) in \d+\.\d s(, \d+ examples)?", x) for x in lines
    )
    assert "mutant_logdet_offset / logdet / cpu: failed" in reports[mode]["err"]


def test_the_thread_policy_resolves_explicit_settings_first():
    assert threads.resolve(None, {}) == 1
    assert threads.resolve(3, {"FLOWLAB_THREADS": "2", "OMP_NUM_THREADS": "4"}) == 3
    assert threads.resolve(None, {"FLOWLAB_THREADS": "2", "OMP_NUM_THREADS": "4"}) == 2
    assert threads.resolve(None, {"OMP_NUM_THREADS": "4"}) is None  # torch honours it already
    assert threads.resolve(0, {}) is None and threads.resolve(None, {"FLOWLAB_THREADS": "0"}) is None
    with pytest.raises(flowlab.OptionError, match="FLOWLAB_THREADS expects a number of threads"):
        threads.resolve(None, {"FLOWLAB_THREADS": "many"})


def test_the_thread_policy_sets_torch_threads_and_restores_them(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv(threads.OMP_ENV, raising=False)
    before = torch.get_num_threads()
    with threads.limited():
        assert torch.get_num_threads() == 1
    with threads.limited(2):
        assert torch.get_num_threads() == 2
    monkeypatch.setenv(threads.ENV, "2")
    with threads.limited():
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["affine", "-n", "abc"], r"-n expects a number of worker processes \(0: none\) or 'auto', got 'abc'"),
        (["affine", "--threads", "-1"], r"--threads expects a number of threads"),
        (["affine", "--property", "logdet", "-n", "2", "--case", '{"dim":2,"batch":1,"seed":0}'], r"drop -n"),
    ],
)
def test_bad_workers_and_threads_are_usage_errors(argv, message, capsys):
    assert main(["check", *argv]) == 2
    assert re.search(message, " ".join(capsys.readouterr().err.split()))


class _Flows:
    """A registry with two flows, one not checked by default, and one cheap property."""

    @flowlab.hookimpl
    def flowlab_register_flows(self, register):
        build = flowlab.flow_spec("affine").build
        register(flowlab.FlowSpec(name="mine", summary="checked", build=build, explanation="y = a z + b"))
        for name in ("peer_a", "peer_b"):
            register(
                flowlab.FlowSpec(name=name, summary="a peer's", build=build, explanation="-", checked_by_default=False)
            )

    @flowlab.hookimpl
    def flowlab_register_checks(self, register):
        from flowlab.checks import CheckResult, CheckSpec

        register(CheckSpec(name="noop", summary="passes", run=lambda spec, case: CheckResult("passed"), max_examples=1))


@pytest.fixture
def peers_registry():
    registry = Registry()
    registry.add_plugin(_Flows(), "flows")
    reset_registry(registry)
    yield registry
    reset_registry()


def test_flows_not_checked_by_default_are_named_and_checked_only_when_named(peers_registry, capsys):
    from flowlab.testing.conformance import parameters

    assert default_flow_names() == ["mine"]
    assert [p.values[0] for p in parameters((), None, ("cpu",))] == ["mine"]
    assert [(spec.name, check.name) for _, spec, check in selection([FlowOrigin("peer_a")])] == [("peer_a", "noop")]
    code, data = main(["check", "--json", "-"]), json.loads(capsys.readouterr().out)
    assert code == 0 and set(data["flows"]) == {"mine"}
    main(["check"])
    err = " ".join(capsys.readouterr().err.split())
    assert "2 registered flows are not checked by default (peer_a, peer_b)" in err
    assert "flowlab check peer_a peer_b" in err


def _document(argv: list[str], folder: Path, name: str) -> tuple[int, dict[str, Any]]:
    report = folder / f"{name}.json"
    code, _, _ = _run_captured([*argv, "--json", str(report)], folder / f"{name}.out")
    return code, json.loads(report.read_text())


def test_dim_runs_on_the_pool_as_it_does_serially(tmp_path):
    """``--dim`` derives its flows as specs (nothing registered), so workers rebuild them from the recipe."""
    argv = ["check", "stacked", "--dim", "16", "--property", "invertibility"]
    serial = _document(argv, tmp_path, "serial")
    parallel = _document([*argv, "-n", "2"], tmp_path, "parallel")
    assert serial[0] == parallel[0] == 0 and outcome(parallel[1]) == outcome(serial[1])
    assert list(parallel[1]["flows"]) == ["stacked@d16"]
    assert "stacked@d16" not in flowlab.flows(), "a derived flow is never registered"


def test_a_checkpoint_runs_on_the_pool_as_it_does_serially(tmp_path):
    out = tmp_path / "run"
    train = ["train", "--flow", "stacked", "--data", "moons", "--steps", "1", "-o", "blocks=2"]
    assert main([*train, "-o", 'block_options={"hidden": 8}', "--eval-size", "64", "--out", str(out)]) == 0
    argv = ["check", "--checkpoint", str(out / "checkpoint.pt"), "--property", "invertibility", "--property", "logdet"]
    serial = _document(argv, tmp_path, "serial")
    parallel = _document([*argv, "-n", "2"], tmp_path, "parallel")
    assert serial[0] == parallel[0] == 0 and outcome(parallel[1]) == outcome(serial[1])
    assert list(parallel[1]["flows"]) == ["stacked@run"]


BROKEN_CHECK = """
import flowlab
from flowlab.checks import CheckResult, CheckSpec


def applies(spec):
    raise RuntimeError("a bug in the property itself")


class Plugin:
    @flowlab.hookimpl
    def flowlab_register_checks(self, register):
        register(CheckSpec(name="broken", summary="raises", run=lambda s, c: CheckResult("passed"), applies=applies))


PLUGIN = Plugin()
"""


def test_a_worker_that_raises_is_a_failed_run_with_its_traceback(tmp_path):
    plugin = tmp_path / "broken_check.py"
    plugin.write_text(textwrap.dedent(BROKEN_CHECK))
    argv = ["check", "--plugin", str(plugin), "affine", "--property", "broken", "--property", "logdet", "-n", "2"]
    code, out, err = _run_captured(argv, tmp_path / "log")
    assert code == 1
    assert "the worker raised RuntimeError: a bug in the property itself" in " ".join(out.split())
    assert "Traceback" in err and "a bug in the property itself" in err
    assert "affine / cpu: 1 passed, 1 failed (broken)" in out


DYING_CHECK = """
import os

import flowlab
from flowlab.checks import CheckResult, CheckSpec


def run(spec, case):
    os._exit(3)  # the worker process dies (a segfault in a flow would do the same)


class Plugin:
    @flowlab.hookimpl
    def flowlab_register_checks(self, register):
        register(CheckSpec(name="dies", summary="kills its process", run=run, max_examples=1))


PLUGIN = Plugin()
"""


def test_a_worker_that_dies_fails_its_run_and_a_new_one_runs_the_rest(tmp_path):
    plugin = tmp_path / "dying_check.py"
    plugin.write_text(textwrap.dedent(DYING_CHECK))
    argv = ["check", "--plugin", str(plugin), "affine", "stacked", "--property", "dies", "--property", "logdet"]
    report = tmp_path / "report.json"
    # one worker: after affine's "dies" killed it, stacked's runs need the new process
    code, _, _ = _run_captured([*argv, "-n", "1", "--json", str(report)], tmp_path / "log")
    assert code == 1
    runs = {
        (flow, check): data["cpu"]
        for flow, flow_data in json.loads(report.read_text())["flows"].items()
        for check, data in flow_data["properties"].items()
    }
    for flow in ("affine", "stacked"):
        assert runs[flow, "dies"]["status"] == "failed"
        assert "the worker process running it stopped" in runs[flow, "dies"]["detail"]
        assert runs[flow, "logdet"]["status"] == "passed", runs[flow, "logdet"]


def test_the_schedule_keeps_a_worker_on_its_flow_then_steals_from_the_end_of_the_longest():
    tasks = [
        Task(FlowOrigin(flow), flow, f"p{i}", "cpu")
        for flow, count in (("a", 2), ("b", 5), ("c", 1))
        for i in range(count)
    ]
    schedule = Schedule(tasks, 2)
    order = [schedule.next_for(0), schedule.next_for(1), schedule.next_for(0), schedule.next_for(0)]
    assert [tasks[i].flow for i in order] == ["a", "b", "a", "c"]  # 0 on a, 1 on b; 0 then takes c, nobody's
    assert tasks[schedule.next_for(0)].check == "p4"  # every flow started: the end of b, the longest left
    assert [tasks[schedule.next_for(1)].check for _ in range(3)] == ["p1", "p2", "p3"]  # 1 goes on with b
    assert schedule.next_for(0) is None and schedule.next_for(1) is None
