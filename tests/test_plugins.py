"""Plugin discovery: entry points for built-ins and third parties, broken plugins, duplicates, switches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import flowlab
from flowlab.plugins import BUILTIN_DISTRIBUTION, Registry


def flowlab_cli(*args: str, env: dict[str, str] | None = None, pythonpath: Path | None = None):
    full_env = {**os.environ, **(env or {})}
    if pythonpath is not None:
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), full_env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "flowlab.cli", *args], capture_output=True, text=True, env=full_env, timeout=120
    )


def make_distribution(root: Path, dist: str, entry_name: str, module: str, source: str) -> Path:
    """A minimal installed distribution (a ``.dist-info`` with an entry point) in ``root``, put on PYTHONPATH."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[flowlab]\n{entry_name} = {module}\n")
    return root


def listing(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_builtins_are_attributed_to_flowlab_through_entry_points():
    data = listing(flowlab_cli("list", "--json"))
    flows = {f["name"]: f for f in data["flows"]}
    for name in ("affine", "coupling", "stacked"):
        assert flows[name]["distribution"] == BUILTIN_DISTRIBUTION
        assert flows[name]["plugin"] == name
    plugins = {p["name"]: p for p in data["plugins"]}
    assert plugins["coupling"]["module"] == "flowlab_coupling"


def test_installed_third_party_plugin_is_listed_and_builds():
    data = listing(flowlab_cli("list", "--json"))
    tiny = next(f for f in data["flows"] if f["name"] == "tiny_scale")
    assert tiny["distribution"] == "flowlab-tiny-plugin"
    assert flowlab.build("tiny_scale", 3).dim == 3


def test_plugin_that_raises_on_import_is_broken_and_the_rest_work(tmp_path):
    path = make_distribution(tmp_path, "flowlab-broken", "broken", "flowlab_broken", "raise RuntimeError('boom')\n")
    data = listing(flowlab_cli("list", "--json", pythonpath=path))
    broken = next(p for p in data["plugins"] if p["name"] == "broken")
    assert not broken["ok"] and "RuntimeError: boom" in broken["error"]
    assert {"affine", "coupling", "stacked", "tiny_scale"} <= {f["name"] for f in data["flows"]}
    table = flowlab_cli("list", env={"COLUMNS": "200"}, pythonpath=path)
    assert table.returncode == 0 and "broken" in table.stdout and "boom" in table.stdout


def test_autoload_off_keeps_only_builtins_and_blocking_by_name(tmp_path):
    data = listing(flowlab_cli("list", "--json", env={"FLOWLAB_DISABLE_PLUGIN_AUTOLOAD": "1"}))
    assert {f["distribution"] for f in data["flows"]} == {BUILTIN_DISTRIBUTION}
    data = listing(flowlab_cli("list", "--json", env={"FLOWLAB_BLOCK_PLUGINS": "tiny, affine"}))
    names = {f["name"] for f in data["flows"]}
    assert "tiny_scale" not in names and "affine" not in names and "coupling" in names


SPEC_SOURCE = """
import flowlab

def build(dim):
    return flowlab.build("affine", dim)

@flowlab.hookimpl
def flowlab_register_flows(register):
    register(flowlab.FlowSpec(name={name!r}, summary="x", build=build))
"""


class RaisingPlugin:
    @flowlab.hookimpl
    def flowlab_register_flows(self, register):
        register(flowlab.FlowSpec(name="half_registered", summary="x", build=lambda dim: None))
        raise ValueError("hook failed")


class DuplicatePlugin:
    @flowlab.hookimpl
    def flowlab_register_flows(self, register):
        register(flowlab.FlowSpec(name="coupling", summary="impostor", build=lambda dim: None))


class NotASpecPlugin:
    @flowlab.hookimpl
    def flowlab_register_flows(self, register):
        register({"name": "dict"})


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.load_entry_points()
    return registry


def test_hook_that_raises_marks_the_plugin_broken_and_registers_nothing(registry):
    info = registry.add_plugin(RaisingPlugin(), "raising")
    assert not info.ok and "flowlab_register_flows raised ValueError: hook failed" in info.error
    assert "half_registered" not in registry.records("flows")
    assert "coupling" in registry.records("flows")


def test_two_flows_with_one_name_is_an_error_naming_both_plugins(registry):
    info = registry.add_plugin(DuplicatePlugin(), "impostor")
    assert not info.ok
    assert f"'coupling' is registered by two plugins: 'coupling' ({BUILTIN_DISTRIBUTION}) and 'impostor'" in info.error
    assert registry.records("flows")["coupling"].summary != "impostor"


def test_registering_something_that_is_not_a_flowspec_is_reported(registry):
    info = registry.add_plugin(NotASpecPlugin(), "dicts")
    assert not info.ok and "expects a FlowSpec, got dict" in info.error


def test_duplicate_between_third_party_distributions_names_both(tmp_path):
    one = make_distribution(tmp_path / "a", "flowlab-one", "one", "flowlab_one", SPEC_SOURCE.format(name="same"))
    two = make_distribution(tmp_path / "b", "flowlab-two", "two", "flowlab_two", SPEC_SOURCE.format(name="same"))
    data = listing(flowlab_cli("list", "--json", pythonpath=Path(f"{one}{os.pathsep}{two}")))
    errors = [p["error"] for p in data["plugins"] if not p["ok"]]
    assert errors == [
        "flow 'same' is registered by two plugins: 'one' (flowlab-one) and 'two' (flowlab-two); "
        "rename one or block one with FLOWLAB_BLOCK_PLUGINS"
    ]
    assert sum(f["name"] == "same" for f in data["flows"]) == 1


def test_discovery_draws_nothing_so_imports_no_hypothesis():
    """Registering every flow and check (``flowlab list``, ``flowlab.flows()``) builds no strategy: hypothesis
    (~0.15 s of import, most of discovery's own time) is imported when a check runs, not before."""
    code = (
        "import sys, flowlab, flowlab.checks; flowlab.flows(); flowlab.checks.checks(); "
        "print('hypothesis' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_discovery_reads_each_distributions_metadata_once(monkeypatch):
    """Each parse of a distribution's metadata costs 1-2 ms; the built-ins are 14 entry points of one distribution."""
    from importlib import metadata

    import flowlab.plugins as plugins

    read: list[str] = []

    def name_and_version(dist):
        read.append(dist.metadata["Name"])
        return dist.metadata["Name"], dist.metadata["Version"]

    monkeypatch.setattr(plugins, "_name_and_version", name_and_version)
    registry = Registry()
    registry.load_entry_points()
    distributions = {ep.dist.metadata["Name"] for ep in metadata.entry_points(group="flowlab")}
    assert sorted(read) == sorted(distributions)
    assert registry.plugins["affine"].version == metadata.version(BUILTIN_DISTRIBUTION)
