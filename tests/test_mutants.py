"""Planted-bug flows ("mutants") prove that each property can fail: ``flowlab check`` must fail every mutant on the
property meant to catch it.

Every module in ``tests/mutants/`` is loaded by path and is a plugin file, as ``flowlab check --plugin FILE`` takes
one: a module-level ``@flowlab.hookimpl`` ``flowlab_register_flows``, and ``EXPECTED`` (mutant flow name -> the
property that must fail it).
The plugins are registered for these tests only, on top of the installed ones (whose checks they rely on).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from flowlab.cli import main
from flowlab.plugins import Registry, import_file, reset_registry

MUTANTS_DIR = Path(__file__).resolve().parent / "mutants"


MODULES = {path.stem: import_file(path) for path in sorted(MUTANTS_DIR.glob("*.py"))}
EXPECTED = {name: prop for module in MODULES.values() for name, prop in module.EXPECTED.items()}
#: mutants that hide what a property needs (e.g. keep their trace estimator under another name): the run is
#: uncovered, which fails ``flowlab check`` as a failure does
UNCOVERED = {name for module in MODULES.values() for name in getattr(module, "UNCOVERED", ())}


@pytest.fixture(scope="module")
def mutant_registry():
    registry = Registry()
    registry.load_entry_points()
    for stem, module in MODULES.items():
        info = registry.add_plugin(module, f"mutants-{stem}")
        assert info.ok, f"tests/mutants/{stem}.py: {info.error}"
    reset_registry(registry)
    yield registry
    reset_registry()


def test_there_are_enough_mutants():
    assert len(EXPECTED) >= 8
    assert len(set(EXPECTED.values())) >= 7  # most properties have a mutant that fails them


def test_every_mutant_is_registered(mutant_registry):
    assert set(EXPECTED) <= set(mutant_registry.records("flows"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_flowlab_check_fails_the_mutant_on_its_property(name, mutant_registry, tmp_path, capsys):
    prop = EXPECTED[name]
    report = tmp_path / "report.json"
    assert main(["check", name, "--property", prop, "--json", str(report)]) == 1, capsys.readouterr().out
    data = json.loads(report.read_text())
    result = data["flows"][name]["properties"][prop]["cpu"]
    assert data["status"] == "failed", result
    if result["status"] == "uncovered":  # the flow lacks what the property needs: a failed run, without a case
        assert name in UNCOVERED and result["detail"], result
        return
    assert result["status"] == "failed", result
    counterexample = result["counterexample"]
    assert counterexample["reproduce"].startswith(f"flowlab check {name} --property {prop} --device cpu --case ")
    out = capsys.readouterr().out
    assert "counterexample" in out and "reproduce" in out


def test_the_reproduce_command_reruns_only_the_failing_case(mutant_registry, tmp_path):
    report = tmp_path / "report.json"
    main(["check", "mutant_logdet_offset", "--property", "logdet", "--json", str(report)])
    reproduce = json.loads(report.read_text())["flows"]["mutant_logdet_offset"]["properties"]["logdet"]["cpu"]
    argv = shlex.split(reproduce["counterexample"]["reproduce"])[1:]
    again = tmp_path / "again.json"
    assert main([*argv, "--json", str(again)]) == 1
    rerun = json.loads(again.read_text())["flows"]["mutant_logdet_offset"]["properties"]["logdet"]["cpu"]
    assert rerun["examples"] == 1 and rerun["counterexample"]["case"] == reproduce["counterexample"]["case"]
