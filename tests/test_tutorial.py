"""The tutorial in docs/tutorial/ is executed: its Python blocks run in order, its `flowlab` commands succeed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from flowlab.cli import main

PAGES = sorted((Path(__file__).resolve().parent.parent / "docs" / "tutorial").glob("*.md"))
BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.S)


def blocks(page: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(page.read_text())]


def test_there_is_a_tutorial():
    assert PAGES and all(blocks(page) for page in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_tutorial_page_runs(page, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # files the page writes land in a temporary folder
    namespace: dict = {"__name__": f"tutorial_{page.stem}"}
    for language, code in blocks(page):
        if language == "python":
            exec(compile(code, f"{page.name}", "exec"), namespace)
            continue
        for line in code.strip().splitlines():
            expected = 0
            status = re.search(r"#\s*exits (\d+)", line)
            if status:
                expected = int(status.group(1))
                line = line[: status.start()]
            argv = shlex.split(line)
            assert argv[0] == "flowlab", f"{page.name}: only flowlab commands run in bash blocks: {line}"
            assert main(argv[1:]) == expected, f"{page.name}: {line}"
    capsys.readouterr()
