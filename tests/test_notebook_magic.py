"""``%flowlab`` (``flowlab.notebook``): a flowlab command run in the kernel's process, as its own process would run
it; its exit status, the pictures it names."""

from __future__ import annotations

from pathlib import Path

import pytest

import flowlab
from flowlab.notebook import CommandFailed, load_ipython_extension, pictures, run_line

ROOT = Path(__file__).resolve().parents[1]


def test_a_command_runs_and_returns_its_status(capsys):
    assert run_line("list") == 0
    assert "stacked" in capsys.readouterr().out


def test_a_failing_command_stops_the_cell_unless_its_status_is_expected(capsys):
    with pytest.raises(CommandFailed, match=r"flowlab check no-such-flow exited with status 2, expected 0"):
        run_line("check no-such-flow")
    assert run_line("check no-such-flow  # exits 2") == 2
    with pytest.raises(CommandFailed, match="exited with status 2, expected 1"):
        run_line("check no-such-flow  # exits 1")
    capsys.readouterr()


def test_each_command_gets_a_fresh_registry(capsys):
    mutants = ROOT / "tests" / "mutants" / "time_embedding.py"
    assert run_line(f"list --json --plugin {mutants}") == 0
    assert "mutant_scalar_time" in capsys.readouterr().out
    assert "mutant_scalar_time" not in flowlab.flows()  # gone for the next command and the Python cells


def test_the_pictures_a_command_writes():
    argv = ["plot", "run/checkpoint.pt", "--out", "a.png", "--animate=b.gif", "--out", "c.npy", "--frames", "4"]
    assert pictures(argv) == [Path("a.png"), Path("b.gif")]
    assert pictures(["train", "--out", "runs/x"]) == []


def test_the_extension_registers_the_line_magic():
    registered = []

    class Shell:
        def register_magic_function(self, function, kind, name):
            registered.append((kind, name))

    load_ipython_extension(Shell())
    assert registered == [("line", "flowlab")]
