"""The command line: --version, --help everywhere, list, info, errors without tracebacks, NO_COLOR."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import flowlab
from flowlab.cli import COMMAND_MODULES, main

COMMANDS = [module.rsplit(".", 1)[1].removesuffix("_cmd") for module in COMMAND_MODULES]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"flowlab {flowlab.__version__}"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"] if command else ["--help"])
    assert exit_info.value.code == 0
    assert "usage: flowlab" in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "commands" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2


def test_list_table_without_colour_when_piped(capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out
    for name in ("affine", "coupling", "stacked"):
        assert name in out


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    coupling = next(f for f in data["flows"] if f["name"] == "coupling")
    assert coupling["kind"] == "discrete" and coupling["logdet"] == "exact"
    assert coupling["options"]["activation"]["allowed"] == "'relu' | 'tanh' | 'elu' | 'silu'"


def test_list_json_shows_the_flow_families(capsys):
    assert main(["list", "--json"]) == 0
    flows = {f["name"]: f for f in json.loads(capsys.readouterr().out)["flows"]}
    families = {"maf": "autoregressive", "iaf": "autoregressive", "nsf": "spline", "glow": "glow"}
    families["residual"] = "residual"
    assert {name: flows[name]["plugin"] for name in families} == families
    assert flows["residual"]["logdet"] == "stochastic" and flows["nsf"]["options"]["bins"]["default"] == 8


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["versions"]) >= {"python", "torch", "torchdiffeq", "pluggy", "hypothesis", "rich"}
    assert isinstance(data["cuda"]["available"], bool)
    assert {"affine", "coupling", "stacked"} <= {p["name"] for p in data["plugins"]}


def test_info_table(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torchdiffeq" in out and "CUDA" in out


def test_flowlab_error_is_one_line_without_traceback(capsys, monkeypatch):
    def boom(args):
        raise flowlab.OptionError("coupling: option hidden=0 is below its minimum 1")

    monkeypatch.setattr("flowlab.cli.list_cmd.run", boom)
    assert main(["list"]) == 2  # an OptionError is a usage error
    err = capsys.readouterr().err
    assert "error: coupling: option hidden=0 is below its minimum 1" in err
    assert "Traceback" not in err


def test_list_shows_the_datasets_with_their_entropies(capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    checkerboard = next(d for d in data["datasets"] if d["name"] == "checkerboard")
    assert checkerboard["dim"] == 2 and checkerboard["entropy"] == flowlab.dataset_spec("checkerboard").entropy
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "flowlab datasets" in out and "pinwheel" in out and "unknown" in out


def test_python_dash_m_flowlab_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "flowlab", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("flowlab "), result.stderr


def test_the_command_freezes_its_start_up_and_a_call_in_code_does_not():
    """As the process's own command (``main()``: the console script, ``python -m flowlab``) the start-up is moved
    out of the garbage collector's way (``gc.freeze``); ``main([...])`` from a caller's code leaves its collector."""
    import gc

    before = gc.get_freeze_count()
    assert main(["list", "--json"]) == 0
    assert gc.get_freeze_count() == before
    code = "import gc, sys; from flowlab.cli import main; sys.argv = ['flowlab', 'list', '--json']; main(); "
    code += "print(gc.get_freeze_count(), file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert int(result.stderr.strip().splitlines()[-1]) > 100_000  # torch, the plugins, the registry
