"""``flowlab.grade``: the conformance kit on a student's code, its verdict and its words.

The answers graded here are the solutions (``solutions/``) and wrong answers made from them, the tutorial's five
known bugs among them: an unbounded ``exp(s)`` coupling scale, a stack of coupling layers with nothing between them,
a CNF log-density without the trace term, a time embedding that takes one time only, a Hutchinson probe redrawn
inside the solve. Each must fail the property that catches it, with the hint that names the bug.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
import torch

import flowlab
from flowlab.checks import checks
from flowlab.grading import EXERCISES, AnswerError
from flowlab.grading.continuous import NO_TRACE, REDRAWN, SCALAR_TIME
from flowlab.grading.discrete import UNBOUNDED

ROOT = Path(__file__).resolve().parents[1]


def words(text: str) -> str:
    """``text`` with every run of white space made one space: the report wraps its hints."""
    return " ".join(text.split())


def solution(name: str) -> dict:
    """The definitions of ``solutions/<name>.py``."""
    return runpy.run_path(str(ROOT / "solutions" / f"{name}.py"))


COUPLING = solution("02-affine-coupling")
AFFINE = solution("01-change-of-variables")["Affine1D"]


def test_the_exercises_and_their_properties_exist():
    assert set(EXERCISES) >= {
        "change_of_variables",
        "coupling",
        "coupling_stack",
        "made_mask",
        "exact_trace",
        "hutchinson",
        "time_embedding",
    }
    registered = set(checks())
    for exercise in EXERCISES.values():
        for variant in exercise.variants:
            assert set(variant.properties) <= registered, (exercise.name, variant.label)
            assert set(variant.hints) <= set(variant.properties), (exercise.name, variant.label)


def test_an_unknown_exercise_is_refused_with_the_list():
    with pytest.raises(flowlab.OptionError, match="unknown exercise 'couplings'; exercises: change_of_variables"):
        flowlab.grade("couplings", AFFINE)


def test_an_answer_of_the_wrong_kind_is_named():
    grade = flowlab.grade("change_of_variables", AFFINE())
    assert not grade.passed and grade.findings == []
    assert "expected the class of your 1-D map, built as Affine1D(): the class itself, got Affine1D" in str(grade)
    assert issubclass(AnswerError, flowlab.FlowlabError)


def test_a_stub_is_reported_once_at_its_line():
    class Stub(AFFINE):
        def forward(self, z):
            raise NotImplementedError("write forward")

    grade = flowlab.grade("change_of_variables", Stub)
    report = str(grade)
    assert not grade.passed and grade.failed == ["your 1-D map"]
    assert "NotImplementedError: write forward" in report
    assert "in forward, line" in report and 'raise NotImplementedError("write forward")' in report
    assert report.splitlines()[-1] == "✗ Not yet: your code did not run, so nothing was checked."
    assert repr(grade) == "Grade('change_of_variables', passed=False, failed=['your 1-D map'])"


def test_a_right_answer_passes():
    grade = flowlab.grade("change_of_variables", AFFINE)
    assert grade.passed and grade.failed == []
    assert str(grade).splitlines()[-1] == "✓ All 6 checks pass."


def test_a_wrong_log_det_says_what_it_should_have_been():
    class WrongSign(AFFINE):
        def inverse(self, x):
            z, ladj = super().inverse(x)
            return z, -ladj

    grade = flowlab.grade("change_of_variables", WrongSign)
    report = str(grade)
    assert "your 1-D map: logdet" in grade.failed
    logdet = report[report.index("✗ logdet") :]
    assert "where: d = 1, a batch of 2, seed 0" in logdet
    returned = float(re.search(r"your log-det:\s+(\S+)", logdet).group(1))
    expected = float(re.search(r"log\|det J\| by autograd \(what it should be\):\s+(\S+)", logdet).group(1))
    assert returned == pytest.approx(-expected, rel=1e-3) and abs(expected) > 0.1
    assert "inverse −log|a|" in logdet  # the exercise's hint


# -- the tutorial's five bugs ------------------------------------------------------------------------------------


class UnboundedCoupling(COUPLING["AffineCoupling"]):
    """The tutorial's coupling: x_b = z_b·exp(s) + t with s straight from the network."""

    def scale_and_shift(self, kept):
        return self.net(kept).chunk(2, dim=-1)


def test_an_unbounded_scale_fails_once_the_conditioner_is_strong():
    grade = flowlab.grade("coupling", UnboundedCoupling)
    strong = "your layer with its conditioner's outputs ×100 (as training can make them)"
    assert grade.failed == [f"{strong}: invertibility", f"{strong}: stress"]
    report = words(str(grade))
    assert report.count(words(UNBOUNDED)) == 2
    assert "inverse(forward(z)) vs z" in report and "your log-det in float32" in report


def test_a_stack_without_permutations_fails_mixing():
    def stack(dim, blocks=4):
        return flowlab.Compose([COUPLING["AffineCoupling"](dim) for _ in range(blocks)])

    grade = flowlab.grade("coupling_stack", stack)
    assert grade.failed == ["your stack: mixing"]
    report = words(str(grade))
    assert "pairs have no dependence: (x_0, z_1)" in report and "Let the layers take turns" in report


TRACES = solution("04-cnf-trace")


def test_a_cnf_without_the_trace_term_fails_its_log_det_and_its_mass():
    def no_trace(f, z):
        return torch.zeros(z.shape[0], dtype=z.dtype)

    grade = flowlab.grade("exact_trace", no_trace)
    assert grade.failed == ["your CNF (exact trace): ode_logdet", "your CNF (exact trace): ode_normalization"]
    report = words(str(grade))
    assert report.count(words(NO_TRACE)) == 2 and "forward log-dets [0.0] vs" in report


def test_a_probe_redrawn_inside_the_solve_fails_the_fixed_probe_check():
    def redrawn(f, z, probe):
        v = torch.randn_like(z)
        (vjp,) = torch.autograd.grad(f, z, v, create_graph=True)
        return (vjp * v).sum(dim=-1)

    grade = flowlab.grade("hutchinson", redrawn)
    assert "your FFJORD (Hutchinson trace): hutchinson_fixed_probe" in grade.failed
    report = words(str(grade))
    assert words(REDRAWN) in report and "is the probe redrawn inside the solve?" in report


def test_a_time_embedding_for_one_time_only_fails_time_embedding():
    class ScalarTime(solution("05-time-embedding")["TimeField"]):
        def forward(self, t, z):
            return self.net(torch.cat([z, t.view(1, 1).expand(z.shape[0], 1)], dim=-1))

    grade = flowlab.grade("time_embedding", ScalarTime)
    assert grade.failed == ["your CNF (your vector field): time_embedding"]
    report = words(str(grade))
    assert words(SCALAR_TIME) in report and "raised RuntimeError" in report


def test_the_solutions_of_the_traces_and_the_field_pass():
    for name, answer in (("exact_trace", TRACES["exact_trace"]), ("hutchinson", TRACES["hutchinson_trace"])):
        assert flowlab.grade(name, answer).passed, name
    assert flowlab.grade("time_embedding", solution("05-time-embedding")["TimeField"]).passed


def test_a_made_mask_that_lets_an_output_see_its_own_input_fails_logdet():
    notebook_sources = pytest.importorskip("notebook_sources", reason="reads the notebooks with jupytext")
    names = notebook_sources.namespace(ROOT / "docs" / "exercises" / "03-made-mask.md")
    assert flowlab.grade("made_mask", names["MaskedAffine"]).passed

    def not_strict(dim, hidden_degrees):
        inputs = torch.arange(1, dim + 1)
        return (hidden_degrees[:, None] >= inputs).float(), (inputs[:, None] >= hidden_degrees).float()

    names["made_masks"] = not_strict
    grade = flowlab.grade("made_mask", names["MaskedAffine"])
    assert "your autoregressive layer: logdet" in grade.failed
    assert "output i may read hidden units of degree < i" in words(str(grade))
