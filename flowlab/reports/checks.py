"""Render conformance-kit results (:class:`~flowlab.checks.runner.PropertyRun`): a rich table flow × property ×
device, a panel per failure (shrunk counterexample and the command reproducing it), and the JSON document whose
schema ``docs/checks.md`` documents (``SCHEMA`` names its version)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Literal

from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from flowlab.checks.runner import Counterexample, PropertyRun
from flowlab.spec import NOT_PASSING

SCHEMA = "flowlab-check/3"
STYLES = {
    "passed": "green",
    "failed": "bold red",
    "inconclusive": "yellow",
    "uncovered": "bold magenta",
    "skipped": "dim",
    "not_applicable": "dim",
}


def overall_status(
    runs: Sequence[PropertyRun], *, allow_uncovered: bool = False, allow_inconclusive: bool = False
) -> str:
    """``failed`` if any run's status is one of :data:`flowlab.spec.NOT_PASSING`: it failed, or its verdict could
    not be reached: a property the flow's kind calls for could not run on it (``uncovered``, allowed with
    ``allow_uncovered``) or a statistical check could not decide (``inconclusive``, allowed with
    ``allow_inconclusive``); else ``passed``. Skipped and not-applicable runs are listed, not failures."""
    allowed = {"uncovered"} if allow_uncovered else set()
    allowed |= {"inconclusive"} if allow_inconclusive else set()
    failed = any(run.status in NOT_PASSING and run.status not in allowed for run in runs)
    return "failed" if failed else "passed"


def _number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return str(value)


def example_record(example: Counterexample | None) -> dict[str, Any] | None:
    """A counterexample (or the worst case) as plain data."""
    if example is None:
        return None
    case = asdict(example.case)
    case["options"] = dict(example.case.options)
    return {
        "case": case,
        "detail": example.detail,
        "values": example.data,
        "max_error": _number(example.max_error),
        "tolerance": _number(example.tolerance),
        "marginal": example.marginal,
        "reproduce": example.reproduce,
    }


def run_record(run: PropertyRun) -> dict[str, Any]:
    """One property on one device as plain data."""
    return {
        "status": run.status,
        "max_error": _number(run.max_error),
        "tolerance": _number(run.tolerance),
        "detectable_error": _number(run.detectable),
        "examples": run.examples,
        "seconds": round(run.seconds, 4),
        "detail": run.detail,
        "counterexample": example_record(run.counterexample),
        "worst": example_record(run.worst),
    }


def document(
    runs: Sequence[PropertyRun],
    *,
    profile: str,
    devices: Sequence[str],
    version: str,
    warnings: dict[str, list[str]] | None = None,
    allow_uncovered: bool = False,
    allow_inconclusive: bool = False,
) -> dict[str, Any]:
    """The JSON document: ``flows → properties → devices → {status, max_error, tolerance, ...}``."""
    flows: dict[str, Any] = {}
    for run in runs:
        flow = flows.setdefault(run.flow, {"warnings": list((warnings or {}).get(run.flow, [])), "properties": {}})
        flow["properties"].setdefault(run.check, {})[run.device] = run_record(run)
    counts = {status: sum(run.status == status for run in runs) for status in STYLES}
    uncovered = [
        {"flow": run.flow, "property": run.check, "device": run.device, "reason": run.detail}
        for run in runs
        if run.status == "uncovered"
    ]
    return {
        "schema": SCHEMA,
        "flowlab_version": version,
        "profile": profile,
        "devices": list(devices),
        "status": overall_status(runs, allow_uncovered=allow_uncovered, allow_inconclusive=allow_inconclusive),
        "counts": counts,
        "uncovered": uncovered,
        "flows": flows,
    }


def _format(value: float | None) -> str:
    if value is None:
        return ""
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}" if value != int(value) or abs(value) >= 1e6 or value == 0 else f"{int(value)}"


def results_table(runs: Sequence[PropertyRun], *, title: str = "flowlab check") -> Table:
    """One row per flow × property × device: status, examples run (n), worst error vs tolerance, seconds.
    The reasons for skips and inconclusive results are in :func:`notes`, failures in :func:`failure_panel`."""
    devices = sorted({run.device for run in runs})
    table = Table(title=f"{title} on {', '.join(devices)}", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    widest = {
        "flow": max((len(run.flow) for run in runs), default=4),
        "property": max((len(run.check) for run in runs), default=8),
        "status": max((len(run.status) for run in runs), default=6),
    }
    columns = ("flow", "property", *(("device",) if len(devices) > 1 else ()), "status", "n", "error", "tol", "s")
    for column in columns:
        names = column in ("flow", "property")
        justify: Literal["left", "right"] = "left" if names or column in ("device", "status") else "right"
        width = widest.get(column, {"n": 3, "error": 8, "tol": 8, "s": 4}.get(column, len(column)))
        # on a narrow terminal the names fold onto a second line; the numbers are never cut
        table.add_column(
            column, justify=justify, no_wrap=not names, overflow="fold", min_width=None if names else width
        )
    for run in runs:
        error = run.max_error
        cells = [
            run.flow,
            run.check,
            *((run.device,) if len(devices) > 1 else ()),
            Text(run.status, style=STYLES[run.status]),
            str(run.examples) if run.examples else "",
            _format(error),
            _format(run.tolerance),
            f"{run.seconds:.1f}",
        ]
        table.add_row(*cells)
    return table


def flow_summaries(runs: Sequence[PropertyRun]) -> list[str]:
    """One plain line per flow and device, for output that is not a terminal (a log, a pipe): the count of each
    status, the properties that failed or were inconclusive by name, and the seconds, e.g.
    ``stacked / cpu: 8 passed, 1 failed (logdet), 2 skipped; 12.3 s``."""
    groups: dict[tuple[str, str], list[PropertyRun]] = {}
    for run in runs:
        groups.setdefault((run.flow, run.device), []).append(run)
    lines = []
    for (flow, device), group in groups.items():
        parts = []
        for status in STYLES:
            chosen = [run.check for run in group if run.status == status]
            if chosen:
                named = f" ({', '.join(chosen)})" if status in ("failed", "inconclusive", "uncovered") else ""
                parts.append(f"{len(chosen)} {status.replace('_', ' ')}{named}")
        lines.append(f"{flow} / {device}: {', '.join(parts)}; {sum(run.seconds for run in group):.1f} s")
    return lines


def notes(runs: Sequence[PropertyRun]) -> Text:
    """Why runs were inconclusive or uncovered (one line each), skipped or not applicable (one line per reason,
    listing the runs)."""
    text = Text()
    for run in runs:
        if run.status in ("inconclusive", "uncovered"):
            text.append(f"{run.status}: {run.flow} / {run.check} / {run.device}: ", style=STYLES[run.status]).append(
                f"{run.detail}\n"
            )
    for status in ("skipped", "not_applicable"):
        reasons: dict[str, list[str]] = {}
        for run in runs:
            if run.status == status:
                reasons.setdefault(run.detail, []).append(f"{run.flow}/{run.check}")
        label = status.replace("_", " ")
        for reason, which in reasons.items():
            text.append(f"{label} ({reason}): ", style="dim").append(", ".join(which) + "\n", style="dim")
    return text


def failure_panel(run: PropertyRun) -> Panel:
    """A failure: what went wrong and the shrunk counterexample with its offending values (print the reproduce
    command with :func:`reproduce_line` below it: outside the panel it is never wrapped, so it can be copied)."""
    parts: list[Any] = [Text(run.detail)]
    for label, example in (("counterexample (shrunk)", run.counterexample), ("worst case seen", run.worst)):
        if example is None:
            continue
        case = example.case
        context_dim = case.options.get("context_dim", 0)
        conditional = f" context_dim={context_dim} (contexts drawn from the seed)" if context_dim else ""
        conditional += "" if case.life == "fresh" else f" life={case.life}"
        size = "" if example.max_error is None else f" error {_format(example.max_error)}"
        size += "" if example.tolerance is None else f" (tolerance {_format(example.tolerance)})"
        size += " — marginal: within a few ulps of the tolerance" if example.marginal else ""
        parts.append(
            Text(
                f"{label}:{size} dim={case.dim}{conditional} batch={case.batch} seed={case.seed} scale={case.scale:g} "
                f"options={dict(case.options)} dtype={case.dtype} device={case.device}",
                style="bold",
            )
        )
        if example is run.worst:
            parts.append(Text(f"  {example.detail}", overflow="fold"))
        for key, value in example.data.items():
            parts.append(Text(f"  {key}: {value}", overflow="fold"))
    return Panel(
        Group(*parts), title=f"{run.flow} / {run.check} / {run.device}: failed", title_align="left", border_style="red"
    )


def reproduce_line(run: PropertyRun) -> Text:
    """``reproduce: <command>`` for a failed run, and ``reproduce the worst case: <command>`` when the worst case is
    another one (print with ``soft_wrap=True`` so the lines are not broken)."""
    command = run.counterexample.reproduce if run.counterexample is not None else ""
    text = Text("reproduce: ", style="bold").append(command, style="cyan")
    if run.worst is not None:
        text.append("\nreproduce the worst case: ", style="bold").append(run.worst.reproduce, style="cyan")
    return text
