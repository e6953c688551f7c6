"""The ``peers`` plugin: which flows it registers, and what ``flowlab check`` says about some of them."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import flowlab_peers
import pytest

import flowlab
from flowlab.cli import main

EXPECTED = {
    "torch": ["torch.affine"],
    "zuko": ["zuko.realnvp", "zuko.maf", "zuko.nsf", "zuko.cnf"],
    "nflows": ["nflows.realnvp", "nflows.maf", "nflows.rqs"],
    "normflows": [
        "normflows.realnvp",
        "normflows.composite",
        "normflows.planar",
        "normflows.radial",
        "normflows.actnorm",
    ],
}


@pytest.mark.parametrize("library", list(EXPECTED))
def test_peers_registers_the_flows_of_each_installed_library(library: str) -> None:
    pytest.importorskip(library, reason=f"{library} is not installed (pip install 'flowlab-nf[peers]')")
    flows = flowlab.flows()
    for name in EXPECTED[library]:
        assert name in flows, f"{name} is not registered"
        spec = flows[name]
        assert not spec.checked_by_default, f"{name} must be checked only when named"
        assert f"Adapted from {library} " in spec.explanation  # the version and the direction mapping


def test_peers_imports_without_the_optional_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    for library in ("zuko", "nflows", "normflows"):
        monkeypatch.setitem(sys.modules, library, None)  # makes `import library` raise ImportError
    assert flowlab_peers.available() == ["torch"]
    registered: list[str] = []
    flowlab_peers.flowlab_register_flows(lambda spec: registered.append(spec.name))
    assert registered == EXPECTED["torch"]


def test_zuko_cnf_has_solver_tolerances_the_ode_properties_can_pin() -> None:
    pytest.importorskip("zuko", reason="zuko is not installed (pip install 'flowlab-nf[peers]')")
    from flowlab.checks import check_spec
    from flowlab.checks.runner import preflight

    spec = flowlab.flow_spec("zuko.cnf")
    assert {"rtol", "atol"} <= set(spec.options)
    assert check_spec("ode_invertibility").needs(spec, preflight(spec).bijector) is True


def test_check_passes_on_zuko_and_torch(tmp_path: Path) -> None:
    """Two properties on three flows (the whole check of these flows: ``docs/peers.md``); about 15 s on one core."""
    pytest.importorskip("zuko", reason="zuko is not installed (pip install 'flowlab-nf[peers]')")
    started = time.perf_counter()
    argv = ["check", "zuko.nsf", "zuko.cnf", "torch.affine", "--property", "invertibility"]
    assert main([*argv, "--property", "ode_invertibility", "--json", str(tmp_path / "report.json")]) == 0
    assert time.perf_counter() - started < 120


def test_check_finds_normflows_planar_float32_logdet(tmp_path: Path) -> None:
    pytest.importorskip("normflows", reason="normflows is not installed (pip install 'flowlab-nf[peers]')")
    report = tmp_path / "report.json"
    assert main(["check", "normflows.planar", "--property", "dtype_device", "--json", str(report)]) == 1
    run = json.loads(report.read_text())["flows"]["normflows.planar"]["properties"]["dtype_device"]["cpu"]
    assert run["status"] == "failed"
    assert "forward log-det is torch.float32" in run["detail"]
    assert run["counterexample"]["case"]["options"] == {"act": "leaky_relu"}


def test_every_peer_flow_explains_its_adaptation(capsys: pytest.CaptureFixture[str]) -> None:
    peers = [name for name, spec in flowlab.flows().items() if not spec.checked_by_default and "." in name]
    for name in peers:
        assert main(["explain", name]) == 0
        assert "Adapted from" in " ".join(capsys.readouterr().out.split())
