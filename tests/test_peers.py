"""The ``peers`` plugin: which flows it registers, and what ``flowlab check`` says about some of them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import flowlab_peers
import pytest

import flowlab
from flowlab.cli import main

#: library (as the plugin names it) -> (the module to import, its distribution name, the flows registered)
EXPECTED = {
    "torch": ("torch", "torch", ["torch.affine"]),
    "zuko": ("zuko", "zuko", ["zuko.realnvp", "zuko.maf", "zuko.nsf", "zuko.nsf_flow", "zuko.cnf"]),
    "nflows": ("nflows", "nflows", ["nflows.realnvp", "nflows.maf", "nflows.maf_flow", "nflows.rqs"]),
    "normflows": (
        "normflows",
        "normflows",
        [
            "normflows.realnvp",
            "normflows.model",
            "normflows.composite",
            "normflows.planar",
            "normflows.radial",
            "normflows.actnorm",
        ],
    ),
    "pyro": (
        "pyro",
        "pyro-ppl",
        ["pyro.spline", "pyro.householder", "pyro.sylvester", "pyro.naf", "pyro.conditional_spline"],
    ),
    "freia": ("FrEIA", "FrEIA", ["freia.allinone", "freia.glow"]),
    "torchcfm": ("torchcfm", "torchcfm", ["torchcfm.otcfm_8gaussians"]),
}
INSTALL = "pip install -e '.[peers]' from the repository root"


@pytest.mark.parametrize("library", list(EXPECTED))
def test_peers_registers_the_flows_of_each_installed_library(library: str) -> None:
    module, distribution, names = EXPECTED[library]
    pytest.importorskip(module, reason=f"{module} is not installed ({INSTALL}; torchcfm: docs/adapters.md)")
    flows = flowlab.flows()
    for name in names:
        assert name in flows, f"{name} is not registered"
        spec = flows[name]
        assert not spec.checked_by_default, f"{name} must be checked only when named"
        assert f"Adapted from {distribution} " in spec.explanation  # the version and the direction mapping


def test_peers_imports_without_the_optional_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    for module, _, _ in EXPECTED.values():
        if module != "torch":
            monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    assert flowlab_peers.available() == ["torch"]
    registered: list[str] = []
    flowlab_peers.flowlab_register_flows(lambda spec: registered.append(spec.name))
    assert registered == EXPECTED["torch"][2]


def test_registering_imports_none_of_the_libraries() -> None:
    """The plugin looks the libraries up without importing them: ``flowlab list`` does not pay their import time."""
    code = (
        "import sys, flowlab; flowlab.flows(); "
        "print(sorted(m for m in ('zuko', 'nflows', 'normflows', 'pyro', 'FrEIA', 'torchcfm') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_zuko_cnf_has_solver_tolerances_the_ode_properties_can_pin() -> None:
    pytest.importorskip("zuko", reason=f"zuko is not installed ({INSTALL})")
    from flowlab.checks import check_spec
    from flowlab.checks.runner import preflight

    spec = flowlab.flow_spec("zuko.cnf")
    assert {"rtol", "atol"} <= set(spec.options)
    assert check_spec("ode_invertibility").needs(spec, preflight(spec).bijector) is True


def test_check_passes_on_zuko_and_torch(tmp_path: Path) -> None:
    """Two properties on three flows (the whole check of these flows: ``docs/peers.md``); about 15 s on one core."""
    pytest.importorskip("zuko", reason=f"zuko is not installed ({INSTALL})")
    started = time.perf_counter()
    argv = ["check", "zuko.nsf", "zuko.cnf", "torch.affine", "--property", "invertibility"]
    assert main([*argv, "--property", "ode_invertibility", "--json", str(tmp_path / "report.json")]) == 0
    assert time.perf_counter() - started < 120


def test_check_finds_normflows_planar_float32_logdet(tmp_path: Path) -> None:
    pytest.importorskip("normflows", reason=f"normflows is not installed ({INSTALL})")
    report = tmp_path / "report.json"
    assert main(["check", "normflows.planar", "--property", "dtype_device", "--json", str(report)]) == 1
    run = json.loads(report.read_text())["flows"]["normflows.planar"]["properties"]["dtype_device"]["cpu"]
    assert run["status"] == "failed"
    assert "forward log-det is torch.float32" in run["detail"]
    # shrunk to the activation that has the bug; a size option (transforms) is drawn too and shrinks to its default
    assert run["counterexample"]["case"]["options"] == {"act": "leaky_relu", "transforms": 3}


def test_every_peer_flow_explains_its_adaptation(capsys: pytest.CaptureFixture[str]) -> None:
    peers = [name for name, spec in flowlab.flows().items() if not spec.checked_by_default and "." in name]
    for name in peers:
        assert main(["explain", name]) == 0
        assert "Adapted from" in " ".join(capsys.readouterr().out.split())


def check_one(tmp_path: Path, flow: str, prop: str) -> dict:
    report = tmp_path / "report.json"
    main(["check", flow, "--property", prop, "--json", str(report)])
    run: dict = json.loads(report.read_text())["flows"][flow]["properties"][prop]["cpu"]
    return run


def test_check_finds_the_float32_accumulator_of_normflows_forward_and_log_det(tmp_path: Path) -> None:
    """``normflows.model`` is called through ``NormalizingFlow.forward_and_log_det``, which sums the layers' log-dets
    into ``torch.zeros(len(z))``: float32 whatever the input's dtype."""
    pytest.importorskip("normflows", reason=f"normflows is not installed ({INSTALL})")
    run = check_one(tmp_path, "normflows.model", "dtype_device")
    assert run["status"] == "failed" and "forward log-det is torch.float32" in run["detail"]


def test_check_finds_the_wrong_logdet_of_pyro_sylvester(tmp_path: Path) -> None:
    pytest.importorskip("pyro", reason=f"pyro-ppl is not installed ({INSTALL})")
    run = check_one(tmp_path, "pyro.sylvester", "logdet")
    assert run["status"] == "failed" and "autograd Jacobian" in run["detail"]


@pytest.mark.parametrize("flow", ["pyro.spline", "pyro.conditional_spline"])
def test_check_passes_the_logdet_of_correct_peers(tmp_path: Path, flow: str) -> None:
    pytest.importorskip("pyro", reason=f"pyro-ppl is not installed ({INSTALL})")
    run = check_one(tmp_path, flow, "logdet")
    assert run["status"] == "passed", run["detail"]
