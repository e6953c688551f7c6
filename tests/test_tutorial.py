"""The tutorial in docs/tutorial/ is executed: its Python blocks run in order, its `flowlab` commands succeed.

Each page runs in a temporary folder (what it writes lands there, never in docs/), in one namespace. A line of a
``bash`` block is a ``flowlab`` command run through ``flowlab.cli.main`` as its own process would run it: with a
fresh plugin registry, and with the file of ``--plugin FILE`` resolved against the repository root (pages are
written as run from there). Suffixes: ``# exits N`` expects exit status N (default 0); ``# slow`` marks an
expensive training command, run as written in the thorough profile (``FLOWLAB_PROFILE=thorough``) and otherwise
with ``--steps`` cut to ``QUICK_STEPS``, so the commands that read its checkpoint still run.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from flowlab.checks.profiles import profile_name
from flowlab.cli import main
from flowlab.plugins import reset_registry

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs" / "tutorial").glob("*.md"))
BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.S)
QUICK_STEPS = "10"


def blocks(page: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(page.read_text())]


def command(line: str) -> tuple[list[str], int]:
    """``(argv, expected exit status)`` of a bash line, as the module docstring says."""
    expected, slow = 0, False
    while suffix := re.search(r"\s*#\s*(exits (\d+)|slow)\s*$", line):
        if suffix.group(2) is not None:
            expected = int(suffix.group(2))
        slow = slow or suffix.group(1) == "slow"
        line = line[: suffix.start()]
    argv = shlex.split(line)
    assert argv[0] == "flowlab", f"only flowlab commands run in bash blocks: {line}"
    for i, arg in enumerate(argv[:-1]):
        if arg == "--plugin":
            argv[i + 1] = str(ROOT / argv[i + 1])
    if slow and profile_name() != "thorough":
        assert "--steps" in argv, f"a '# slow' line needs --steps to cut in the quick profile: {line}"
        argv[argv.index("--steps") + 1] = QUICK_STEPS
    return argv[1:], expected


def test_there_is_a_tutorial():
    assert PAGES and all(blocks(page) for page in PAGES)


def test_suffixes():
    assert command("flowlab check x  # exits 1") == (["check", "x"], 1)
    steps = "2000" if profile_name() == "thorough" else QUICK_STEPS
    assert command("flowlab train --steps 2000 --out x  # slow") == (["train", "--steps", steps, "--out", "x"], 0)
    mutants = str(ROOT / "tests" / "mutants" / "continuous.py")
    assert command("flowlab check --plugin tests/mutants/continuous.py m") == (["check", "--plugin", mutants, "m"], 0)


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_tutorial_page_runs(page, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # files the page writes land in a temporary folder
    namespace: dict = {"__name__": f"tutorial_{page.stem}"}
    try:
        for language, code in blocks(page):
            if language == "python":
                exec(compile(code, f"{page.name}", "exec"), namespace)
                continue
            for line in code.strip().splitlines():
                argv, expected = command(line)
                reset_registry()  # a fresh process: plugin files loaded by an earlier command are gone
                assert main(argv) == expected, f"{page.name}: {line}"
    finally:
        reset_registry()
    capsys.readouterr()
