"""The cost of each direction of ``maf`` and ``iaf``, printed as a Markdown table (docs/families/autoregressive.md).

    OMP_NUM_THREADS=1 python benchmarks/autoregressive_cost.py [--dims 2 16 64] [--batch 1024] [--repeats 5]

Each flow is built with its defaults (4 layers, MADE of 2 hidden layers of 64 units), perturbed as the kit does;
``forward`` (sampling) and ``inverse`` (density) run under ``torch.no_grad()`` on ``[batch, d]`` float32 points,
best of ``--repeats`` after one warm-up call, in CPU seconds of this process (``time.process_time``: on a shared machine
wall time counts the other jobs too). The one-pass direction costs about one MADE call per layer, the other
``d`` of them.
"""

from __future__ import annotations

import argparse
import time

import torch

import flowlab
from flowlab.checks.cases import perturb_


def best_seconds(call, points: torch.Tensor, repeats: int) -> float:
    call(points)
    times = []
    for _ in range(repeats):
        start = time.process_time()
        call(points)
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 16, 64])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}, best of {args.repeats}")
    print("\n| flow | d | forward (sampling) ms CPU | inverse (density) ms CPU | ratio slow / fast |")
    print("|---|---|---|---|---|")
    for flow in ("maf", "iaf"):
        for dim in args.dims:
            bijector = perturb_(flowlab.build(flow, dim), 0).eval()
            points = torch.randn(args.batch, dim)
            with torch.no_grad():
                forward = best_seconds(bijector.forward, points, args.repeats)
                inverse = best_seconds(bijector.inverse, points, args.repeats)
            ratio = max(forward, inverse) / min(forward, inverse)
            print(f"| {flow} | {dim} | {1e3 * forward:.2f} | {1e3 * inverse:.2f} | {ratio:.1f} |")


if __name__ == "__main__":
    main()
