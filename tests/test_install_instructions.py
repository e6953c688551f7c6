"""Install instructions that work: flowlab's distribution, ``flowlab-nf``, is not on PyPI, so no message, guide or
notebook may tell anyone to install it by name from an index, not even as what to write once it is published (a
reader copies the command whatever stands before it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowlab.errors import install_hint

ROOT = Path(__file__).resolve().parents[1]
SEARCHED = ("flowlab", "plugins", "docs", "README.md")
#: ``pip install flowlab-nf``, ``pip install -q 'flowlab-nf[plot]'``, ``%pip install "flowlab-nf[...] @ ..."``, ...
INDEX_INSTALL = re.compile(r"pip\s+install\s+(?:-\S+\s+)*['\"]?flowlab-nf\b")


def sources() -> list[Path]:
    files = []
    for name in SEARCHED:
        path = ROOT / name
        files += [path] if path.is_file() else [p for p in path.rglob("*") if p.suffix in (".py", ".md", ".j2", ".yml")]
    return sorted(files)


def index_installs(text: str) -> list[str]:
    """The index installs of flowlab-nf in ``text``, each with some context."""
    return [
        text[max(0, match.start() - 60) : match.end() + 20].replace("\n", " ") for match in INDEX_INSTALL.finditer(text)
    ]


def test_the_search_finds_what_it_must():
    assert index_installs("run pip install flowlab-nf now") and index_installs("pip install -q 'flowlab-nf[plot]'")
    assert index_installs("(pip install\n'flowlab-nf[peers]' installs them)")
    assert index_installs("# Once flowlab-nf is published: %pip install 'flowlab-nf[plot]'.")
    assert not index_installs("pip install -e '.[plot]' from the repository root")
    assert len(sources()) > 50


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_install_of_flowlab_nf_from_an_index(path):
    assert index_installs(path.read_text(encoding="utf-8")) == [], (
        f"{path.relative_to(ROOT)}: say how to install from a checkout (pip install -e '.[extra]' from its root)"
    )


def test_the_hint_of_the_error_messages_installs_from_a_checkout():
    hint = install_hint("plot")
    assert hint.startswith("pip install -e '.[plot]' from the root of a flowlab checkout")
    assert index_installs(hint) == []
