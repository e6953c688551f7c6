"""The cost of ``flowlab check`` under contention, printed as a Markdown table (docs/benchmarks.md, "Cost of flowlab
check").

    python benchmarks/check_cost.py                       # every scenario below
    python benchmarks/check_cost.py cnf-pair cnf-pair-torch --timeout 300

Scenarios (each a fresh ``python -m flowlab check`` process, or two at once; only the built-in plugins are loaded,
``FLOWLAB_DISABLE_PLUGIN_AUTOLOAD=1``; ``OMP_NUM_THREADS`` and ``FLOWLAB_THREADS`` are removed from the environment
so that the kit's thread policy, :mod:`flowlab.threads`, decides, unless the scenario passes ``--threads 0``, which
gives torch its own default of one thread per core):

- ``all``, ``all-torch``, ``all-n2``: every built-in flow, serially with one thread / with torch's threads, and with
  ``-n 2`` (two pytest-xdist workers of one thread each);
- ``cnf``, ``cnf-torch``: ``flowlab check cnf`` alone;
- ``cnf-pair``, ``cnf-pair-torch``: two ``flowlab check cnf`` started together (wall time until both are done).

A run past ``--timeout`` seconds is stopped and reported as ``> timeout``. The 1-minute load average before and
after each scenario is printed next to it (the "after" one mostly reflects the scenario itself plus whatever else
ran): the machine is shared, so read the figures with it. CPU s is the processes' user + system time; flows /
runs is what the first process checked (from its ``--json`` document), as the built-in set changes over time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CHECK = [sys.executable, "-m", "flowlab", "check"]
TORCH_THREADS = ["--threads", "0"]

#: name -> (what it runs, the argument lists of the processes started together)
SCENARIOS: dict[str, tuple[str, list[list[str]]]] = {
    "all": ("every built-in flow, serial, 1 thread (the policy)", [[]]),
    "all-torch": ("every built-in flow, serial, torch's threads", [TORCH_THREADS]),
    "all-n2": ("every built-in flow, -n 2 (1 thread per worker)", [["-n", "2"]]),
    "cnf": ("cnf alone, 1 thread (the policy)", [["cnf"]]),
    "cnf-torch": ("cnf alone, torch's threads", [["cnf", *TORCH_THREADS]]),
    "cnf-pair": ("two cnf at once, 1 thread each (the policy)", [["cnf"], ["cnf"]]),
    "cnf-pair-torch": ("two cnf at once, torch's threads", [["cnf", *TORCH_THREADS], ["cnf", *TORCH_THREADS]]),
}


@dataclass
class Cost:
    """Wall time until every process ended (``None``: stopped at the timeout), their CPU time, exit codes, and what
    the first process checked (``flows``, ``runs``: from its JSON document; 0 if it was stopped)."""

    wall: float | None
    cpu: float
    codes: list[int | None]
    flows: int = 0
    runs: int = 0


def environment() -> dict[str, str]:
    """This environment without thread settings, with only the built-in plugins."""
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "FLOWLAB_THREADS")}
    env["FLOWLAB_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


def measure(argvs: list[list[str]], timeout: float) -> Cost:
    """Start one ``flowlab check`` per argument list at once and wait for all of them (or the timeout)."""
    report = Path(tempfile.mkdtemp(prefix="check-cost-")) / "report.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [*CHECK, *argv, *(("--json", str(report)) if index == 0 else ())],
            env=environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for index, argv in enumerate(argvs)
    ]
    wall: float | None = None
    try:
        for process in processes:
            process.wait(timeout=max(0.0, timeout - (time.perf_counter() - started)))
        wall = time.perf_counter() - started
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
            process.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cost = Cost(wall=wall, cpu=cpu, codes=[process.returncode if wall is not None else None for process in processes])
    if report.exists():
        data = json.loads(report.read_text())
        cost.flows, cost.runs = len(data["flows"]), sum(data["counts"].values())
        report.unlink()
    report.parent.rmdir()
    return cost


def row(name: str, cost: Cost, loads: tuple[float, float], timeout: float) -> str:
    """One Markdown table row."""
    what, argvs = SCENARIOS[name]
    command = " & ".join("flowlab check " + " ".join(argv) for argv in argvs)
    wall = f"{cost.wall:.1f}" if cost.wall is not None else f"> {timeout:.0f} (stopped)"
    load = " / ".join(f"{value:.1f}" for value in loads)
    checked = f"{cost.flows} / {cost.runs}" if cost.runs else "-"
    return f"| `{name}` | {what} | `{command.strip()}` | {checked} | {wall} | {cost.cpu:.1f} | {cost.codes} | {load} |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"default: all of {', '.join(SCENARIOS)}")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before a scenario is stopped")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    print(f"`uname -n` {os.uname().nodename}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M %Z')}\n")
    print("| scenario | what | command(s) | flows / runs | wall s | CPU s | exit | load before / after |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.scenarios or SCENARIOS:
        before = os.getloadavg()[0]
        cost = measure(SCENARIOS[name][1], args.timeout)
        print(row(name, cost, (before, os.getloadavg()[0]), args.timeout), flush=True)


if __name__ == "__main__":
    main()
