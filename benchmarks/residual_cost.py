"""The cost of each direction of ``residual`` and ``residual_exact``, printed as a Markdown table
(docs/families/residual.md).

    OMP_NUM_THREADS=1 python benchmarks/residual_cost.py [--dims 2 16] [--batch 1024] [--repeats 3]

Both flows are built with their defaults (4 blocks, ``g`` of 2 hidden layers of 64 units, coeff 0.9, LipSwish)
and perturbed as the kit does. ``forward`` (sampling: one ``g`` per block plus the log-det) and ``inverse``
(density: the fixed-point iteration plus the log-det) run under ``torch.no_grad()`` on ``[batch, d]`` float32
points in training mode (``residual``: the roulette estimate) and eval mode (both: the exact ``slogdet``); the
training step is ``−mean log p(x)`` and its backward pass (the implicit gradient of the inverse). Best of
``--repeats`` after one warm-up, in CPU seconds of this process (``time.process_time``: on a shared machine wall
time counts the other jobs too). ``iterations`` is the fixed-point iterations of the last inverse (slowest row,
mean over blocks), ``terms`` the series terms of the last training-mode roulette estimate (mean over blocks).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from flowlab_residual.bijector import ResidualBlock

import flowlab
from flowlab.checks.cases import perturb_


def best_ms(call: Callable[[], object], repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        call()
        times.append(time.process_time() - start)
    return 1e3 * min(times)


def mean_over_blocks(bijector: torch.nn.Module, attribute: str) -> float:
    values = [getattr(m, attribute) for m in bijector.modules() if isinstance(m, ResidualBlock)]
    return sum(values) / len(values)


def row(name: str, dim: int, flow: flowlab.Flow, x: torch.Tensor, mode: str, repeats: int) -> str:
    bijector = flow.bijector
    flow.train(mode == "train")
    with torch.no_grad():
        forward = best_ms(lambda: bijector(x), repeats)
        terms = mean_over_blocks(bijector, "terms") if mode == "train" and name == "residual" else 0
        inverse = best_ms(lambda: bijector.inverse(x), repeats)
    iterations = mean_over_blocks(bijector, "iterations")
    step = best_ms(lambda: (-flow.log_prob(x).mean()).backward(), repeats)
    return f"| {name} | {dim} | {mode} | {forward:.1f} | {inverse:.1f} | {iterations:.0f} | {terms:.1f} | {step:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 16])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| flow | d | mode | forward ms | inverse ms | iterations | terms | training step ms |")
    print("|---|---|---|---|---|---|---|---|")
    for dim in args.dims:
        x = torch.randn(args.batch, dim, generator=torch.Generator().manual_seed(0))
        for name in ("residual", "residual_exact"):
            torch.manual_seed(0)
            bijector = flowlab.build(name, dim)
            assert isinstance(bijector, flowlab.Bijector)
            perturb_(bijector, 0)
            flow = flowlab.Flow(bijector)
            for mode in ("train", "eval"):
                print(row(name, dim, flow, x, mode, args.repeats))


if __name__ == "__main__":
    main()
