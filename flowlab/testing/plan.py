"""What one ``flowlab check`` run is to do, written to a file so that other processes can do their share of it.

A :class:`CheckPlan` lists the ``(flow, property, device)`` runs in report order, the Hypothesis profile, the
``--plugin`` files that define some of the flows or properties, and the folder where each run's record goes
(``<index>.json``, see :mod:`flowlab.testing.records`). ``flowlab check -n`` writes it
(:mod:`flowlab.testing.parallel`); the pytest-xdist workers read it (:mod:`flowlab.testing.plan_plugin`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

#: the plan's file name; the workers' pytest plugin collects a file of this name into one test per run
PLAN_FILE = "flowlab-check-plan.json"


@dataclass(frozen=True)
class PlannedRun:
    """One property on one flow and device."""

    flow: str
    check: str
    device: str


@dataclass(frozen=True)
class CheckPlan:
    """The runs of one ``flowlab check``, its profile, its plugin files (absolute paths) and its records folder."""

    runs: tuple[PlannedRun, ...]
    profile: str
    records: Path
    plugins: tuple[str, ...] = field(default=())

    def record_path(self, index: int) -> Path:
        """Where the record of ``runs[index]`` goes."""
        return self.records / f"{index:05d}.json"

    def write(self, path: Path) -> None:
        """Write the plan to ``path`` as JSON."""
        data = {
            "runs": [[run.flow, run.check, run.device] for run in self.runs],
            "profile": self.profile,
            "records": str(self.records),
            "plugins": list(self.plugins),
        }
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> CheckPlan:
        """The plan :meth:`write` wrote to ``path``."""
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            runs=tuple(PlannedRun(*run) for run in data["runs"]),
            profile=data["profile"],
            records=Path(data["records"]),
            plugins=tuple(data["plugins"]),
        )
