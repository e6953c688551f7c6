"""The notebooks of docs/ as the tests read them (a helper, not a test module).

- ``TUTORIALS`` and ``EXERCISES``: the Markdown sources jupytext pairs with notebooks (docs/notebooks.md);
- :func:`read`: a source as a notebook (``nbformat.NotebookNode``), the ``# slow`` training lines cut to
  ``QUICK_STEPS`` steps unless the profile is ``thorough``;
- :func:`solution_cells`: an exercise's ``# TODO`` cells with the definitions of the same names in
  ``solutions/<the exercise's file name>.py``; :func:`then_solved`: the exercise followed by them and its grading
  cells again;
- :func:`namespace`: an exercise's code with its solution run in one namespace (without its set-up and grading
  cells), to grade variants of it.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path
from typing import Any

import jupytext
import nbformat

from flowlab.checks.profiles import profile_name

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorial").glob("*.md"))
EXERCISES = sorted((ROOT / "docs" / "exercises").glob("*.md"))
SOLUTIONS = ROOT / "solutions"
QUICK_STEPS = "10"
#: a ``%flowlab`` training line marked ``# slow``, and its ``--steps N``
SLOW = re.compile(r"^(\s*%flowlab .*--steps )(\d+)(.*#\s*slow\s*)$", re.M)
TODO = "# TODO"
GRADING = "flowlab.grade("


def read(path: Path) -> Any:
    """``path`` as a notebook, with the ``# slow`` lines cut to ``QUICK_STEPS`` steps in the quick profile."""
    notebook = jupytext.read(path)
    if profile_name() != "thorough":
        for cell in code_cells(notebook):
            cell.source = SLOW.sub(lambda m: m.group(1) + QUICK_STEPS + m.group(3), cell.source)
    return notebook


def code_cells(notebook: Any) -> list[Any]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def grading_cells(notebook: Any) -> list[Any]:
    return [cell for cell in code_cells(notebook) if GRADING in cell.source]


def defined_names(source: str) -> list[str]:
    """The functions and classes defined at the top level of ``source``."""
    tree = ast.parse(source)
    return [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]


def solution_cells(notebook: Any, exercise: Path) -> list[Any]:
    """Copies of the ``# TODO`` cells of ``notebook`` (of ``exercise``), each with the solution's definitions of
    the names it defines, after its own imports."""
    source = (SOLUTIONS / f"{exercise.stem}.py").read_text()
    definitions = {
        node.name: ast.get_source_segment(source, node)
        for node in ast.parse(source).body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    }
    todo = [cell for cell in code_cells(notebook) if TODO in cell.source]
    assert todo, f"{exercise.name} has no {TODO} cell"
    solved = []
    for cell in todo:
        names = defined_names(cell.source)
        missing = [name for name in names if name not in definitions]
        assert names and not missing, f"{exercise.name}: solutions/{exercise.stem}.py lacks {missing or names}"
        imports = "\n".join(line for line in cell.source.splitlines() if line.startswith(("import ", "from ")))
        solved.append(nbformat.v4.new_code_cell("\n\n\n".join([imports, *(str(definitions[n]) for n in names)])))
    return solved


def then_solved(notebook: Any, exercise: Path) -> Any:
    """``notebook`` followed by its solution cells and, again, its grading cells: run in one kernel, the first
    grading cells grade the stub, the last ones the solution (the given code reads the solved names at call time)."""
    notebook.cells += [*solution_cells(notebook, exercise), *(copy.deepcopy(c) for c in grading_cells(notebook))]
    return notebook


def namespace(exercise: Path) -> dict[str, Any]:
    """The exercise's code with its solution, run in one namespace: its set-up cell (IPython magics) and grading
    cells left out."""
    notebook = read(exercise)
    names: dict[str, Any] = {"__name__": f"exercise_{exercise.stem.replace('-', '_')}"}
    for cell in [*code_cells(notebook)[1:], *solution_cells(notebook, exercise)]:
        if GRADING not in cell.source:
            exec(compile(cell.source, str(exercise), "exec"), names)
    return names
