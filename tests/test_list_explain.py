"""``flowlab list`` fits 80 columns (one line per record, options on request); ``explain --jacobian`` prints the
math too."""

from __future__ import annotations

import pytest

import flowlab
from flowlab.cli import main


@pytest.fixture
def narrow(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("NO_COLOR", "1")


def test_list_fits_80_columns_with_one_line_per_flow_and_dataset(narrow, capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name, spec in flowlab.flows().items():
        [line] = [line for line in lines if line.split()[:1] == [name]]  # one line, the name in full
        assert spec.summary[:10] in line
    for name in flowlab.datasets():
        assert len([line for line in lines if line.split()[:1] == [name]]) == 1
    for name in ("mle", "cfm", "otcfm", "rectified"):
        assert len([line for line in lines if line.split()[:1] == [name]]) == 1


def test_list_json_shows_the_training_objectives_with_their_options(capsys):
    import json

    assert main(["list", "--json"]) == 0
    objectives = {o["name"]: o for o in json.loads(capsys.readouterr().out)["objectives"]}
    assert {"mle", "cfm", "otcfm", "rectified"} <= set(objectives)
    assert objectives["mle"]["conditional"] and not objectives["cfm"]["conditional"]
    assert objectives["cfm"]["kinds"] == ["continuous"] and "sigma" in objectives["cfm"]["options"]


def test_list_options_shows_each_flows_options_with_defaults(narrow, capsys):
    assert main(["list", "--options"]) == 0
    out = capsys.readouterr().out
    assert "stacked: block='coupling', blocks=8" in " ".join(out.split())
    assert "max_nfe=10000, max_seconds=60.0" in " ".join(out.split())


def test_explain_jacobian_prints_the_math_and_the_jacobian(narrow, capsys):
    assert main(["explain", "coupling", "--jacobian", "--dim", "4"]) == 0
    out = capsys.readouterr().out
    spec = flowlab.flow_spec("coupling")
    assert spec.summary[:20] in out and "options" in out  # the explanation panel
    assert "∂x/∂z of coupling" in out and "log|det| of the autograd Jacobian" in out
