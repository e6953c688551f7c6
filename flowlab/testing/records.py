"""A :class:`~flowlab.checks.runner.PropertyRun` as JSON and back, so that a run made in another process (a
pytest-xdist worker of ``flowlab check -n``) is rendered exactly as one made in this process.

The record holds every field of the run, of its :class:`~flowlab.checks.runner.Counterexample` and of that
counterexample's :class:`~flowlab.checks.base.Case`, by name (a field added to one of them travels without a change
here). It is the worker-to-parent format, not the report: non-finite floats are JSON's ``NaN``/``Infinity`` (Python
reads them back), values that are not JSON are written as their ``repr``. The public document is
:func:`flowlab.reports.checks.document`.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from flowlab.checks.base import Case
from flowlab.checks.runner import Counterexample, PropertyRun


def _fields(record: object) -> dict[str, Any]:
    return {item.name: getattr(record, item.name) for item in fields(record)}  # type: ignore[arg-type]


def record_of(run: PropertyRun) -> dict[str, Any]:
    """``run`` as plain data (see the module docstring)."""
    record = _fields(run)
    if run.counterexample is not None:
        case = {**_fields(run.counterexample.case), "options": dict(run.counterexample.case.options)}
        record["counterexample"] = {**_fields(run.counterexample), "case": case}
    return record


def run_from_record(record: dict[str, Any]) -> PropertyRun:
    """The :class:`PropertyRun` that :func:`record_of` wrote."""
    example = record.get("counterexample")
    if example is not None:
        example = Counterexample(**{**example, "case": Case(**example["case"])})
    return PropertyRun(**{**record, "counterexample": example})


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` atomically (a reader polling the folder never sees half a file)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(record, default=repr), encoding="utf-8")
    os.replace(partial, path)


def read_record(path: Path) -> dict[str, Any]:
    """The record in ``path``."""
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return record
