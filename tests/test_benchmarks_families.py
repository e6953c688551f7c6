"""benchmarks/families.py: its peers match flowlab's parameter counts and directions, and each subcommand runs.

No timing is asserted (speed lives in the benchmark's output, docs/benchmarks.md); these tests keep the script
working and its comparisons fair: equal sizes, and every MAF peer with the density in one pass.
"""

from __future__ import annotations

import importlib.util
import random
import statistics
import sys
from pathlib import Path

import pytest
import torch
from flowlab_autoregressive.bijector import MADE
from torch.utils.flop_counter import FlopCounterMode

import flowlab.memory

for peer in ("zuko", "nflows", "normflows"):
    pytest.importorskip(peer)

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def families():
    sys.path.insert(0, str(BENCHMARKS))  # families.py imports its helpers from benchmarks/training.py
    try:
        spec = importlib.util.spec_from_file_location("families", BENCHMARKS / "families.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def flops(call) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        call()
    return counter.get_total_flops()


@pytest.mark.parametrize("family", ["stacked", "maf", "nsf"])
def test_peers_have_flowlabs_parameter_count(families, family):
    ours = families.flowlab_model(family, 6)
    peers = families.peer_models(family, 6, ours.parameters)
    assert len(peers) == 3
    for peer in peers:
        assert abs(peer.parameters / ours.parameters - 1) < 0.05, (peer.name, peer.parameters, ours.parameters)


def test_every_maf_evaluates_the_density_in_one_pass_and_samples_in_d(families):
    """The peers sample by d full passes (normflows' layer unwrapped would be the other way round); flowlab's
    ``MADE.solve`` makes d passes too (counted on the MADE's last activation), each computing only the hidden units
    its coordinate reads, so its sampling costs less than d densities but still more than one."""
    dim = 6
    ours = families.flowlab_model("maf", dim)
    for model in (ours, *families.peer_models("maf", dim, ours.parameters)):
        x = torch.randn(8, dim)
        density, sampling = flops(lambda m=model, x=x: m.log_prob(x)), flops(lambda m=model: m.sample(8))
        assert sampling / density > (1.5 if model is ours else dim / 2), model.name
    passes: list[int] = []
    for module in ours.module.modules():
        if isinstance(module, MADE):
            module.hidden[-1].register_forward_hook(lambda *_: passes.append(1))
    with torch.no_grad():
        ours.log_prob(torch.randn(8, dim))
        assert len(passes) == 4  # one pass per layer
        ours.sample(8)
    assert len(passes) == 4 + 4 * dim  # d passes per layer


def test_nearest_width(families):
    width, module = families.nearest(lambda h: torch.nn.Linear(3, h), 41)  # 4 parameters per unit
    assert width == 10 and families.parameters(module) == 40


def test_quality_and_speed_run(families, capsys):
    families.main(["quality", "--families", "maf", "--datasets", "moons", "--seeds", "0", "--steps", "2"])
    out = capsys.readouterr().out
    assert "| maf (18448) | moons | 0 |" in out and "| maf | moons | 2.39 |" in out  # zuko MAF's count
    speed = ["speed", "--dims", "2", "--families", "nsf", "--threads", "1", "--rounds", "1", "--min-run-time", "1e-3"]
    assert families.main(speed) == 0
    out = capsys.readouterr().out
    assert "ratio flowlab nsf / fastest peer" in out and "| 1 | 2 | nsf |" in out and "(wall clock)" in out
    assert families.main([*speed, "--clock", "cpu", "--malloc", "glibc"]) == 0
    assert "(cpu clock)" in (glibc := capsys.readouterr().out) and "malloc: as the environment leaves it" in glibc
    assert ("malloc: freed memory kept" in out) is flowlab.memory.wanted()
    assert out.count("load average") == 4  # before the run, before and after the thread count, after the run


def test_speed_check_exits_1_when_a_cell_is_above_the_fastest_peer(families, monkeypatch, capsys):
    """``--check``: the exit status says whether every cell's median ratio is at most 1.0."""
    args = ["speed", "--dims", "2", "--families", "maf", "--threads", "1", "--rounds", "1", "--check"]
    for ours, expected in ((1.0, 0), (1.5, 1)):

        def timed(models, dim, rounds, min_run_time, clock, ours=ours):
            return {model.name: [(ours if model.name.startswith("flowlab") else 1.0,) * 3] for model in models}

        monkeypatch.setattr(families, "time_models", timed)
        assert families.main(args) == expected
        out = capsys.readouterr().out
        assert ("check failed: maf d=2 1 thread(s) log_prob 1.50" in out) == (expected == 1)


def test_the_ratio_is_the_median_of_each_rounds_own_ratio(families):
    """Round 1 is slow for everyone, round 2 for flowlab alone: the paired ratios (0.9, 1.8, 0.9) have the median
    0.9, where the ratio of the medians (1.8 / 1.0) would say 1.8."""
    times = {
        "ours": [(1.8, 1.8, 1.8), (1.8, 1.8, 1.8), (0.9, 0.9, 0.9)],
        "peer a": [(2.0, 2.0, 2.0), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)],
        "peer b": [(9.0, 9.0, 9.0), (9.0, 9.0, 9.0), (9.0, 9.0, 9.0)],
    }
    ratios, fastest = families.paired_ratios(times, "ours", ["peer a", "peer b"])
    assert ratios == pytest.approx([0.9, 0.9, 0.9]) and fastest == ["peer a"] * 3
    assert families.medians(times["ours"]) == [1.8, 1.8, 1.8] and families.medians(times["peer a"]) == [1.0] * 3


def test_a_cell_at_parity_reads_as_parity(families):
    """Three peers as fast as flowlab, each time off by 10 % (log-normal) at random, five rounds: the median of the
    cell's ratio over 4000 simulated runs is 1.0 within 1 % (half the runs above 1.0). Dividing each round by that
    round's fastest peer would read 1.09 (the minimum of three noisy times is below their typical time)."""
    rng = random.Random(0)
    names = ["ours", "peer a", "peer b", "peer c"]
    cells, per_round_minimum = [], []
    for _ in range(4000):
        times = {name: [tuple(rng.lognormvariate(0, 0.1) for _ in range(3)) for _ in range(5)] for name in names}
        cells.append(families.paired_ratios(times, "ours", names[1:])[0][0])
        per_round_minimum.append(
            statistics.median(times["ours"][r][0] / min(times[p][r][0] for p in names[1:]) for r in range(5))
        )
    assert statistics.median(cells) == pytest.approx(1.0, abs=0.01)
    assert statistics.median(per_round_minimum) > 1.07
