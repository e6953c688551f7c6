"""Every notebook runs from top to bottom in a fresh IPython kernel: the tutorials (docs/tutorial/) and the exercises
(docs/exercises/), Markdown sources that jupytext reads as notebooks (docs/notebooks.md).

Each runs in a temporary folder (what it writes lands there, never in docs/) through nbclient and a kernel of this
Python. A ``%flowlab`` training line marked ``# slow`` runs as written in the thorough profile
(``FLOWLAB_PROFILE=thorough``) and with ``--steps 10`` otherwise, so the cells after it still run. An exercise runs
once, as written (its stub fails every grading cell), then with its ``# TODO`` cells redefined by its solution
(``solutions/``) and its grading cells run again (every one passes). Every notebook opens with the same set-up cell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

EXTRA = "the notebooks need the notebooks extra (pip install -e '.[notebooks]' from the repository root)"
nbclient = pytest.importorskip("nbclient", reason=EXTRA)
pytest.importorskip("ipykernel", reason=EXTRA)
pytest.importorskip("jupytext", reason=EXTRA)

from notebook_sources import EXERCISES, TUTORIALS, code_cells, grading_cells, read, then_solved  # noqa: E402

#: per cell; a quick-profile notebook takes well under a minute
CELL_TIMEOUT = 600
PASSED, FAILED = "✓ All", "✗ Not yet"


def execute(notebook: Any, folder: Path) -> Any:
    """Run every cell of ``notebook`` in a fresh kernel whose working folder is ``folder``; a cell that raises fails
    the test with the cell and its traceback."""
    client = nbclient.NotebookClient(
        notebook, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute()
    return notebook


def text(cell: Any) -> str:
    """What the cell showed as text: its streams and the plain-text form of its values."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def verdicts(notebook: Any) -> list[str]:
    """The last line of each grading cell's report."""
    return [text(cell).strip().splitlines()[-1] if text(cell).strip() else "" for cell in grading_cells(notebook)]


def test_there_are_tutorials_and_exercises():
    assert len(TUTORIALS) >= 5 and len(EXERCISES) >= 4
    assert all(grading_cells(read(path)) for path in EXERCISES)


@pytest.mark.parametrize("path", TUTORIALS + EXERCISES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_notebook_opens_with_the_set_up_cell(path):
    first = code_cells(read(path))[0].source
    assert first == code_cells(read(TUTORIALS[0]))[0].source
    assert "%load_ext flowlab.notebook" in first and 'pip install -q "{CHECKOUT}[plot]"' in first


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(path, tmp_path):
    notebook = execute(read(path), tmp_path)
    draws = any("%flowlab plot" in cell.source or "plt.subplots" in cell.source for cell in code_cells(notebook))
    pictures = [o for c in code_cells(notebook) for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert pictures or not draws, f"{path.name} draws a picture but none is shown inline"


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.stem)
def test_exercise_stub_fails_and_solution_passes(path, tmp_path):
    """One kernel: the notebook as written, then its solution cells and its grading cells again."""
    found = verdicts(execute(then_solved(read(path), path), tmp_path))
    stub, solved = found[: len(found) // 2], found[len(found) // 2 :]
    assert stub and all(verdict.startswith(FAILED) for verdict in stub), stub
    assert all(verdict.startswith(PASSED) for verdict in solved), solved
