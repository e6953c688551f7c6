"""The README's set-up commands are the ones CI runs; its tour runs as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from flowlab.cli import main

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(python3 -m venv .venv[^\n]*)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_the_readme_test_command():
    commands = readme_commands()
    assert len(commands) == 2, commands
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci


def test_readme_main_job_runs_flowlab():
    assert re.search(r"\.venv/bin/flowlab \w+", readme_commands()[0])


def tour_commands() -> list[str]:
    section = (ROOT / "README.md").read_text().split("\n## Tour\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return block.strip().splitlines()


def test_the_readme_tour_runs_as_written(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # as from a fresh checkout: runs/tour does not exist yet
    commands = tour_commands()
    assert [shlex.split(line)[1] for line in commands] == ["list", "explain", "check", "train", "plot"]
    for line in commands:
        program, *argv = shlex.split(line, comments=True)
        assert program == ".venv/bin/flowlab", line
        assert main(argv) == 0, line
    assert (tmp_path / "runs" / "tour" / "density.png").stat().st_size > 0
    capsys.readouterr()
