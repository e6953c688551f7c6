"""``flowlab compare``: equal budgets, the table and its JSON, the PNG, skipping finished runs, resuming interrupted
ones exactly, refusing a directory of other runs."""

from __future__ import annotations

import json
import math

import pytest

from flowlab.cli import main
from flowlab.comparison import Budget, FlowSummary, RunResult, compare, configs, run_dir
from flowlab.errors import OptionError
from flowlab.training import Trainer

TINY = {"batch_size": 32, "lr": 1e-3}


def test_the_cli_writes_the_table_as_json_and_a_png_and_a_rerun_skips_finished_runs(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the comparison's picture needs matplotlib (the plot extra)")
    out = tmp_path / "cmp"
    args = ["compare", "--flows", "affine", "coupling", "--data", "moons", "--steps", "3", "--seeds", "2"]
    args += ["--batch-size", "32", "--out", str(out), "--json"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "compare.json").read_text())
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert [f["flow"] for f in printed["flows"]] == ["affine", "coupling"]
    assert [(r["flow"], r["seed"], r["steps"]) for r in printed["runs"]] == [
        ("affine", 0, 3),
        ("affine", 1, 3),
        ("coupling", 0, 3),
        ("coupling", 1, 3),
    ]
    for flow in printed["flows"]:
        runs = [r["nll"] for r in printed["runs"] if r["flow"] == flow["flow"]]
        assert flow["nll"] == pytest.approx(sum(runs) / 2)
        assert flow["se"] == pytest.approx(abs(runs[0] - runs[1]) / 2), "SE across 2 seeds: |a − b| / 2"
        assert flow["bits_per_dim"] == pytest.approx(flow["nll"] / (2 * math.log(2)))
        assert flow["parameters"] > 0 and flow["nfe"] is None
    checkpoint = run_dir(out, "affine", 0) / "checkpoint.pt"
    stamp = checkpoint.stat().st_mtime_ns
    assert main([*args[:-1]]) == 0  # the table, not JSON
    assert checkpoint.stat().st_mtime_ns == stamp, "a finished run is read back, not retrained"
    assert "affine" in capsys.readouterr().out


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    budget = Budget(steps=4)
    (config,) = configs(["affine"], "moons", [0], budget, **TINY)
    whole = compare(["affine"], "moons", out=tmp_path / "a", budget=budget, **TINY).runs[0]
    partial = Trainer(config)
    partial.fit(steps=2)
    directory = run_dir(tmp_path / "b", "affine", 0)
    directory.mkdir(parents=True)
    partial.save(str(directory / "checkpoint.pt"))
    resumed = compare(["affine"], "moons", out=tmp_path / "b", budget=budget, **TINY).runs[0]
    assert (resumed.nll, resumed.steps) == (whole.nll, whole.steps)


def test_a_directory_of_other_runs_is_refused(tmp_path):
    compare(["affine"], "moons", out=tmp_path, budget=Budget(steps=2), **TINY)
    with pytest.raises(OptionError, match=r"made with steps=2, not 3; .*use another --out"):
        compare(["affine"], "moons", out=tmp_path, budget=Budget(steps=3), **TINY)


def test_a_seconds_budget_stops_each_run_on_the_clock(tmp_path):
    (run,) = compare(["affine"], "moons", out=tmp_path, budget=Budget(seconds=0.3), **TINY).runs
    assert run.steps >= 1 and run.seconds >= 0.3


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({}, "one budget"),
        ({"steps": 3, "seconds": 1.0}, "one budget"),
        ({"steps": 0}, "positive"),
        ({"seconds": -1.0}, "positive"),
    ],
)
def test_a_budget_is_steps_or_seconds(budget, message):
    with pytest.raises(OptionError, match=message):
        Budget(**budget)


def test_one_seed_shows_the_held_out_se_of_its_run():
    run = RunResult("affine", 0, 3.0, 0.25, 3.0 / (2 * math.log(2)), 100, 4, 1.0, 3, None)
    summary = FlowSummary.of([run], dim=2)
    assert (summary.nll, summary.se, summary.seeds) == (3.0, 0.25, 1)


def test_options_go_to_their_flow_only():
    from flowlab.cli.compare_cmd import flow_options

    options = flow_options(["coupling:hidden=8", "coupling:depth=1", "affine:seed=3"])
    assert options == {"coupling": {"hidden": 8, "depth": 1}, "affine": {"seed": 3}}
    runs = configs(["affine", "coupling"], "moons", [0, 1], Budget(steps=3), options=options, **TINY)
    assert [(c.flow, c.seed, c.options) for c in runs] == [
        ("affine", 0, {"seed": 3}),
        ("affine", 1, {"seed": 3}),
        ("coupling", 0, {"hidden": 8, "depth": 1}),
        ("coupling", 1, {"hidden": 8, "depth": 1}),
    ]
    with pytest.raises(OptionError, match="options for maf, which is not among the flows"):
        configs(["affine"], "moons", [0], Budget(steps=3), options={"maf": {}}, **TINY)
    with pytest.raises(OptionError, match="expected -o FLOW:KEY=VALUE"):
        flow_options(["hidden=8"])


def test_on_a_finite_dataset_each_run_scores_its_best_checkpoint_on_the_test_split_as_eval_does(tmp_path, capsys):
    import numpy as np

    from flowlab.checkpoint import read_checkpoint

    rows = tmp_path / "rows.npy"
    np.save(rows, np.random.default_rng(0).normal(size=(60, 2)))
    comparison = compare(["affine"], str(rows), out=tmp_path / "cmp", budget=Budget(steps=20), **TINY)
    (run,) = comparison.runs
    folder = run_dir(tmp_path / "cmp", "affine", 0)
    best = read_checkpoint(folder / "best.pt")
    assert comparison.score == "test NLL of the best checkpoint" and run.scored_step == best["step"]
    assert [entry["step"] for entry in best["history"]][-1] == best["step"] and run.steps == 20
    assert main(["eval", str(folder), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["n"] == run.n_test == 12 and (run.nll, run.se) == (evaluated["nll_nats"], evaluated["se_nats"])
