"""`flowlab explain`: every flow explains its math; --jacobian draws the structure and compares log-dets."""

from __future__ import annotations

import pytest
import torch

import flowlab
from flowlab.checks import Case
from flowlab.checks.cases import build_case_bijector
from flowlab.cli import main
from flowlab.jacobian import jacobian_view

#: the flows flowlab checks by default; the peers plugin's adapted flows are explained in tests/test_peers.py
FLOWS = sorted(name for name, spec in flowlab.flows().items() if spec.checked_by_default)


@pytest.mark.parametrize("name", FLOWS)
def test_every_flow_explains_its_math(name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    spec = flowlab.flow_spec(name)
    assert spec.explanation.strip(), f"{name} has no explanation"
    assert main(["explain", name]) == 0
    out = capsys.readouterr().out
    assert spec.summary[:40] in out.replace("\n", " ") or spec.summary.split()[0] in out
    assert "no explanation" not in out
    for option in spec.options:
        assert option in out


@pytest.mark.parametrize("name", FLOWS)
def test_every_flow_draws_its_jacobian(name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    dim = max(flowlab.flow_spec(name).min_dim, 3)
    assert main(["explain", name, "--jacobian", "--dim", str(dim), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "log|det ∂x/∂z| from the flow" in out and "slogdet" in out


def test_a_conditional_flow_draws_its_jacobian_in_z_at_a_drawn_context(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["explain", "nsf", "--jacobian", "--dim", "3", "--option", "context_dim=2"]) == 0
    out = capsys.readouterr().out
    difference = float(out.split("(difference")[1].split(")")[0])
    assert difference < 1e-10


def test_coupling_jacobian_is_block_triangular_with_exact_zeros():
    layer = build_case_bijector(flowlab.flow_spec("coupling"), Case(dim=4, batch=1, seed=0))
    view = jacobian_view(layer, torch.randn(4, dtype=torch.float64))
    assert view.zero_pattern[[0, 2]][:, [1, 3]].all()  # kept rows do not depend on moved inputs
    assert not view.zero_pattern[[1, 3]][:, [0, 2]].any()  # moved rows do depend on kept inputs
    assert abs(view.logdet_flow - view.logdet_autograd) < 1e-10


def test_jacobian_grid_blanks_exact_zeros_of_a_stack_without_permutations(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    argv = ["explain", "stacked", "--jacobian", "--dim", "4", "--option", "permutation=none", "--option", "blocks=2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "8 of 16 entries exactly zero" in out  # kept rows 0 and 2 are rows of the identity
    row0 = next(line for line in out.splitlines() if line.strip().startswith("0 ") and "+1.00" in line)
    assert row0.count("+") == 1


def test_jacobian_view_reports_ill_conditioning():
    flat = flowlab.build("affine", 2, matrix=[[1.0, 0.0], [0.0, 1e-11]])
    view = jacobian_view(flat, torch.zeros(2, dtype=torch.float64))
    assert not view.well_conditioned and view.condition > 1e10


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explain", "nope"], "unknown flow 'nope'"),
        (["explain", "coupling", "--jacobian", "--dim", "1"], "--dim must be at least 2"),
        (["explain", "coupling", "--jacobian", "--option", "hidden"], "expected KEY=VALUE"),
        (["explain", "coupling", "--jacobian", "--option", "hidden=0"], "hidden=0 is below its minimum 1"),
    ],
)
def test_bad_explain_requests_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
