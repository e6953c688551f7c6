"""The conformance kit at d = 64: every discrete built-in flow, every property, in the thorough profile's cases
(its per-case sample sizes), at dimensions 64..68 instead of ``min_dim``..``min_dim + 4``; printed as the Markdown
table of docs/benchmarks.md, "Scale: d = 64".

    OMP_NUM_THREADS=1 python benchmarks/scale_d64.py [--examples 2] [--timeout 180] [FLOW ...]

The thorough profile draws 200 examples per property (fewer where a check caps them); this script draws
``--examples`` of them per (flow, property) without shrinking (a failure is reported as found, unshrunk) and no
example database, and reports the measured seconds per example and ``× the thorough profile's count``: the cost
of ``FLOWLAB_PROFILE=thorough flowlab check FLOW`` at d = 64, extrapolated from the examples measured. The
status is that of the examples drawn. Each flow runs in its own process; one past ``--timeout`` seconds is
stopped, and the properties it had not finished are shown as ``> T s``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time

from hypothesis import Phase, settings

from flowlab import threads
from flowlab.checks import checks, profiles
from flowlab.checks.runner import run_property
from flowlab.registry import flows

DIM = 64


def measure(name: str, examples: int) -> None:
    """In a child process: one JSON line per property of flow ``name`` (seconds per example, status)."""
    thorough = profiles.PROFILES["thorough"]
    profiles.PROFILES["thorough"] = settings(
        thorough, max_examples=examples, database=None, phases=(Phase.explicit, Phase.generate)
    )
    spec = dataclasses.replace(flows()[name], min_dim=max(DIM, flows()[name].min_dim))
    with threads.limited(1):
        for check in checks().values():
            limit = (
                thorough.max_examples if check.max_examples is None else min(thorough.max_examples, check.max_examples)
            )
            print(json.dumps({"check": check.name, "started": True}), flush=True)
            started = time.perf_counter()
            run = run_property(check, spec, profile="thorough")
            seconds = time.perf_counter() - started
            record = {"check": check.name, "status": run.status, "seconds": seconds, "examples": run.examples}
            print(json.dumps({**record, "limit": limit}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="flows (default: every discrete flow checked by default)")
    parser.add_argument("--examples", type=int, default=2, help="examples per (flow, property) (default 2)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds per flow (default 180)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(args.child, args.examples)
        return 0
    names = args.names or [n for n, s in flows().items() if s.kind == "discrete" and s.checked_by_default]
    rows: dict[str, dict[str, str]] = {}
    totals: dict[str, tuple[float, float, bool]] = {}
    for name in names:
        command = [sys.executable, __file__, "--child", name, "--examples", str(args.examples)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
            output, finished = done.stdout, True
        except subprocess.TimeoutExpired as exc:
            raw = exc.stdout or b""
            output, finished = raw.decode() if isinstance(raw, bytes) else raw, False
        cells, measured, extrapolated = {}, 0.0, 0.0
        for line in output.splitlines():
            record = json.loads(line)
            if "started" in record:
                cells[record["check"]] = f"> {args.timeout:.0f} s"
                continue
            if record["status"] == "skipped":
                del cells[record["check"]]
                continue
            per = record["seconds"] / max(1, record["examples"])
            measured += record["seconds"]
            extrapolated += per * record["limit"]
            mark = "" if record["status"] == "passed" else f" **{record['status']}**"
            cells[record["check"]] = f"{per:.2f}{mark}"
        rows[name], totals[name] = cells, (measured, extrapolated, finished)
        print(f"{name}: {cells} {measured:.0f} s", file=sys.stderr, flush=True)
    columns = [c for c in checks() if any(c in cells for cells in rows.values())]
    print(f"| flow | {' | '.join(columns)} | measured (s) | thorough, extrapolated |")
    print(f"|---|{'---|' * len(columns)}---|---|")
    for name, cells in rows.items():
        measured, extrapolated, finished = totals[name]
        row = " | ".join(cells.get(c, "–") for c in columns)
        more = "" if finished else "> "
        print(f"| {name} | {row} | {more}{measured:.0f} | {more}{extrapolated / 60:.0f} min |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
