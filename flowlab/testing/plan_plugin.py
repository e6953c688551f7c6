"""The pytest plugin of ``flowlab check -n`` (``-p flowlab.testing.plan_plugin``): a plan file
(:data:`~flowlab.testing.plan.PLAN_FILE`) given as a test path is collected into one test per planned run, which
pytest-xdist spreads over its workers.

Each worker, when it collects the plan, applies the thread policy (:mod:`flowlab.threads`: one thread unless
``$FLOWLAB_THREADS`` / ``$OMP_NUM_THREADS`` say otherwise) and loads the plan's plugin files, so it knows the same
flows and properties as the parent. Each test runs :func:`~flowlab.checks.runner.run_property` and writes the run's
record; a test whose run raised (the flow or property is unknown to the worker, the kit itself broke) writes the
traceback as its record's ``error`` and fails, so the parent reports it. A failed *property* is not a failed test:
it is a result, which the parent renders.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowlab.plugins import load_plugin_files
from flowlab.testing.plan import PLAN_FILE, CheckPlan, PlannedRun


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name == PLAN_FILE:
        return PlanFile.from_parent(parent, path=file_path)
    return None


class PlanFile(pytest.File):
    """A plan: one :class:`PlanItem` per run, in the plan's order."""

    def collect(self) -> Iterator[PlanItem]:
        from flowlab import threads

        plan = CheckPlan.read(self.path)
        threads.apply()
        load_plugin_files(plan.plugins)
        for index, run in enumerate(plan.runs):
            yield PlanItem.from_parent(
                self, name=f"{index}:{run.flow}-{run.check}-{run.device}", plan=plan, index=index, run=run
            )


class PlanItem(pytest.Item):
    """One planned run; writes its record to the plan's records folder."""

    def __init__(self, *, plan: CheckPlan, index: int, run: PlannedRun, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.plan, self.index, self.planned = plan, index, run

    def runtest(self) -> None:
        from flowlab.checks.base import check_spec
        from flowlab.checks.runner import run_property
        from flowlab.registry import flow_spec
        from flowlab.testing.records import record_of, write_record

        where = {"flow": self.planned.flow, "check": self.planned.check, "device": self.planned.device}
        try:
            run = run_property(
                check_spec(self.planned.check),
                flow_spec(self.planned.flow),
                self.planned.device,
                profile=self.plan.profile,
            )
        except Exception:
            write_record(self.plan.record_path(self.index), {**where, "error": traceback.format_exc()})
            raise
        write_record(self.plan.record_path(self.index), record_of(run))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, self.name
