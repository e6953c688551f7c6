"""The power and the cost of the ``normalization`` property, printed as Markdown tables (docs/checks.md, "Power of
the statistical checks"; docs/benchmarks.md, "Normalization: power and cost").

    OMP_NUM_THREADS=1 python benchmarks/normalization_power.py power                  # stacked, maf, nsf
    OMP_NUM_THREADS=1 python benchmarks/normalization_power.py power --flows maf --dims 64 --seeds 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/normalization_power.py share --rounds 3        # share of flowlab check

``power``: for each flow, dimension (3, 16, 64), profile (quick, thorough) and seed, ``normalization.run`` on the
flow as it is and with a planted 2 % error in ``log_prob`` (the inverse log-det off by ``log 1.02``): everywhere
(a constant), and only where the base point has ``z₀ > Φ⁻¹(0.9)`` (a region holding 10 % of the mass). Each row
gives the stated power (``detectable``: the smallest ``|Z − 1|`` a constant error must have to fail, and the one an
error confined to 10 % of the mass must have), how many of the seeds' cases each planted error failed and the
correct flow passed, and the median seconds per case.

``share``: ``flowlab check --json`` on the flows checked by default (a fresh process, one thread), ``--rounds``
times; per round, the seconds of every property summed over the flows, and normalization's share of the total
property time; then the medians. The 1-minute load average is printed before and after each round: the machine is
shared, so read the seconds with it (the share is steadier than the seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from flowlab_checks import normalization
from torch import Tensor

import flowlab
from flowlab import Bijector, FlowSpec
from flowlab.checks import Case

#: ``Φ⁻¹(0.9)``: ``z₀`` above it holds 10 % of the base's mass
TOP_DECILE = 1.2815515655446004
ERROR = 0.02


class PlantedError(Bijector):
    """The flow ``name``'s bijector whose inverse log-det is off by ``log(1 + error)`` where ``z₀ > threshold``."""

    def __init__(self, name: str, dim: int, error: float, threshold: float) -> None:
        super().__init__()
        self.dim, self.offset, self.threshold = dim, math.log1p(error), threshold
        self.inner = flowlab.build(name, dim)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.inner(z)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, ladj = self.inner.inverse(x)
        return z, ladj + self.offset * (z[:, 0] > self.threshold)


def planted(name: str, error: float, threshold: float) -> FlowSpec:
    spec = flowlab.flow_spec(name)
    return FlowSpec(
        name=f"{name}+error",
        summary="",
        build=lambda dim, **options: PlantedError(name, dim, error, threshold),
        min_dim=spec.min_dim,
    )


def power(flows: list[str], dims: list[int], seeds: list[int]) -> None:
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(
        "| flow | d | profile | samples | detectable: constant | detectable: 10 % of the mass | constant 2 % fails |"
        " 10 %-region 2 % fails | correct passes | s per case |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in flows:
        variants = {
            "correct": flowlab.flow_spec(name),
            "constant": planted(name, ERROR, -math.inf),
            "region": planted(name, ERROR, TOP_DECILE),
        }
        for dim in dims:
            for profile in ("quick", "thorough"):
                outcomes: dict[str, int] = {key: 0 for key in variants}
                constant, region, seconds = [], [], []
                for seed in seeds:
                    case = Case(dim=dim, batch=4, seed=seed, profile=profile)
                    for key, spec in variants.items():
                        started = time.perf_counter()
                        result = normalization.run(spec, case)
                        seconds.append(time.perf_counter() - started)
                        outcomes[key] += result.status == ("passed" if key == "correct" else "failed")
                        if key == "correct":
                            constant.append(result.data["detectable_constant"])
                            region.append(result.detectable or math.inf)
                n = len(seeds)
                print(
                    f"| {name} | {dim} | {profile} | {normalization.SAMPLES[profile]} | {max(constant):.2e} | "
                    f"{max(region):.2e} | {outcomes['constant']}/{n} | {outcomes['region']}/{n} | "
                    f"{outcomes['correct']}/{n} | {statistics.median(seconds):.2f} |",
                    flush=True,
                )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def share(rounds: int, timeout: float) -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    shares, totals, norms = [], [], []
    for index in range(rounds):
        report = Path(tempfile.mkdtemp(prefix="normalization-share-")) / "report.json"
        load = os.getloadavg()[0]
        started = time.perf_counter()
        command = [sys.executable, "-m", "flowlab", "check", "--json", str(report)]
        subprocess.run(command, env=environment, capture_output=True, timeout=timeout, check=False)
        wall = time.perf_counter() - started
        document = json.loads(report.read_text())
        seconds: dict[str, float] = {}
        statuses: dict[str, str] = {}
        for flow, entry in document["flows"].items():
            for prop, runs in entry["properties"].items():
                seconds[prop] = seconds.get(prop, 0.0) + runs["cpu"]["seconds"]
                if prop == "normalization":
                    statuses[flow] = runs["cpu"]["status"]
        total = sum(seconds.values())
        shares.append(seconds["normalization"] / total)
        totals.append(total)
        norms.append(seconds["normalization"])
        print(
            f"round {index + 1}: wall {wall:.1f} s, property time {total:.1f} s, normalization "
            f"{seconds['normalization']:.1f} s ({shares[-1]:.1%}); normalization statuses "
            f"{sorted(set(statuses.values()))}; load average {load:.1f} -> {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    print(
        f"median over {rounds} rounds: property time {statistics.median(totals):.1f} s, normalization "
        f"{statistics.median(norms):.1f} s, share {statistics.median(shares):.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    power_parser = sub.add_parser("power", help="stated power and planted 2 % errors per flow, d and profile")
    power_parser.add_argument("--flows", nargs="+", default=["stacked", "maf", "nsf"])
    power_parser.add_argument("--dims", nargs="+", type=int, default=[3, 16, 64])
    power_parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    share_parser = sub.add_parser("share", help="normalization's share of flowlab check's property time")
    share_parser.add_argument("--rounds", type=int, default=3)
    share_parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.mode == "power":
        power(args.flows, args.dims, args.seeds)
    else:
        share(args.rounds, args.timeout)


if __name__ == "__main__":
    main()
