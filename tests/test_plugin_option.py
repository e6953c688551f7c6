"""``--plugin FILE`` on every command that reads the registry: one shared implementation
(``flowlab.cli.plugin_files``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from flowlab.cli import EXIT_USAGE, main
from flowlab.plugins import reset_registry

PLUGIN = """
from dataclasses import replace
from typing import Any

import flowlab_affine
from flowlab import hookimpl

SPEC = replace(flowlab_affine.SPEC, name="file_affine", summary="the affine flow, from a plugin file")


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    register(SPEC)
"""


@pytest.fixture
def plugin_file(tmp_path: Path):
    path = tmp_path / "my_flow.py"
    path.write_text(PLUGIN)
    reset_registry()
    yield str(path)
    reset_registry()


def test_list_explain_and_info_load_the_file(plugin_file, capsys):
    assert main(["list", "--json", "--plugin", plugin_file]) == 0
    assert "file_affine" in [flow["name"] for flow in json.loads(capsys.readouterr().out)["flows"]]
    reset_registry()
    assert main(["explain", "file_affine", "--plugin", plugin_file]) == 0
    assert "the affine flow, from a plugin file" in capsys.readouterr().out
    reset_registry()
    assert main(["info", "--json", "--plugin", plugin_file]) == 0
    assert f"file:{plugin_file}" in [p["name"] for p in json.loads(capsys.readouterr().out)["plugins"]]


def test_train_eval_sample_and_plot_load_the_file(plugin_file, tmp_path, capsys):
    out = tmp_path / "run"
    run = ["--batch-size", "16", "--eval-size", "32", "--steps", "1", "--out", str(out)]
    assert main(["train", "--flow", "file_affine", "--data", "moons", *run, "--plugin", plugin_file]) == 0
    checkpoint = str(out / "checkpoint.pt")
    commands = [["eval", checkpoint, "-n", "100"], ["sample", checkpoint, "--out", str(tmp_path / "s.npy")]]
    if importlib.util.find_spec("matplotlib") is not None:  # plots need the 'plot' extra
        commands.append(["plot", checkpoint, "--out", str(tmp_path / "p.png"), "-n", "50"])
    for argv in commands:
        reset_registry()
        assert main([*argv, "--plugin", plugin_file]) == 0, capsys.readouterr().err
    reset_registry()
    assert main(["eval", checkpoint]) == 1  # without the file the flow is not installed: say which file it was
    err = " ".join(capsys.readouterr().err.split())
    assert "not installed" in err and f"it was trained with --plugin {Path(plugin_file).resolve()}: give that" in err


@pytest.mark.parametrize("command", [["list"], ["info"], ["explain", "affine"], ["eval", "x.pt"]])
def test_a_missing_plugin_file_is_a_usage_error(command, tmp_path, capsys):
    reset_registry()
    assert main([*command, "--plugin", str(tmp_path / "missing.py")]) == EXIT_USAGE
    err = " ".join(capsys.readouterr().err.split())
    assert "missing.py" in err and "not found" in err and "Traceback" not in err
    reset_registry()
