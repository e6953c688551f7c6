"""The cost of each direction of ``nsf``, and of the spline alone, printed as Markdown tables (docs/families/spline.md).

    OMP_NUM_THREADS=1 python benchmarks/spline_cost.py [--dims 2 16 64] [--batch 1024] [--repeats 5]

``nsf`` is built with its defaults (4 layers, 8 bins, B = 5, conditioner of 2 hidden layers of 64 units), perturbed
as the kit does; ``forward`` (sampling: the quadratic root) and ``inverse`` (density: the spline in closed form) run
under ``torch.no_grad()`` on ``[batch, d]`` float32 points, best of ``--repeats`` after one warm-up call, in CPU
seconds of this process (``time.process_time``: on a shared machine wall time counts the other jobs too). The second
table times ``rational_quadratic`` alone on ``batch · d / 2`` entries (one layer's moved half), to show what the
spline costs next to the conditioner.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from typing import cast

import torch
from flowlab_spline.spline import constrain, rational_quadratic

import flowlab
from flowlab.checks.cases import perturb_


def best_seconds(call: Callable[[], object], repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        call()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 16, 64])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}, best of {args.repeats}")
    print("\n| d | forward (sampling) ms CPU | inverse (density) ms CPU | forward / inverse |")
    print("|---|---|---|---|")
    with torch.no_grad():
        for dim in args.dims:
            bijector = cast(flowlab.Bijector, perturb_(flowlab.build("nsf", dim), 0).eval())
            points = torch.randn(args.batch, dim)
            forward = best_seconds(functools.partial(bijector.forward, points), args.repeats)
            inverse = best_seconds(functools.partial(bijector.inverse, points), args.repeats)
            print(f"| {dim} | {1e3 * forward:.2f} | {1e3 * inverse:.2f} | {forward / inverse:.2f} |")
        print("\n| d | entries | spline ms CPU | inverse spline ms CPU |")
        print("|---|---|---|---|")
        for dim in args.dims:
            entries = args.batch * (dim - dim // 2)
            widths, heights, derivatives = constrain(torch.randn(entries, 23), 8)
            spline = functools.partial(rational_quadratic, 3 * torch.randn(entries), widths, heights, derivatives)
            direct = best_seconds(functools.partial(spline, check=False), args.repeats)
            root = best_seconds(functools.partial(spline, inverse=True, check=False), args.repeats)
            print(f"| {dim} | {entries} | {1e3 * direct:.2f} | {1e3 * root:.2f} |")


if __name__ == "__main__":
    main()
