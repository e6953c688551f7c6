"""The cost of each direction of ``glow``, and of its linear map with and without the LU parametrisation, printed as
Markdown tables (docs/families/glow.md).

    OMP_NUM_THREADS=1 python benchmarks/glow_cost.py [--dims 2 16 64] [--linear-dims 16 64 256] [--batch 1024]

The directions run under ``torch.no_grad()`` on float32 points, best of ``--repeats`` after one warm-up call, with the
parameters perturbed as the kit does. First the whole flow with its defaults (4 steps, coupling MLP 2 x 64, LU):
``forward`` (sampling) and ``inverse`` (density). Then one linear layer alone, ``lu=True`` (``W = P L U``: log-det
``Σ log|s|``, ``W⁻¹`` by two triangular solves against the identity) against ``lu=False`` (a plain ``W``:
``slogdet`` and ``solve``, an O(d³) factorisation on every call), at ``--batch`` rows and at one row, where the
per-call O(d³) work is all there is; and a training step of the layer alone (``inverse``, the mean of
``z²/2 − log-det``, backward; gradients on), where the plain ``W`` also pays for ``slogdet``'s backward.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from flowlab_glow.bijector import DenseLinear, LULinear

import flowlab
from flowlab.checks.cases import perturb_


def best_ms(call: Callable[[torch.Tensor], object], points: torch.Tensor, repeats: int) -> float:
    call(points)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(points)
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 16, 64])
    parser.add_argument("--linear-dims", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}, best of {args.repeats}")
    with torch.no_grad():
        print("\n| glow (defaults) d | forward (sampling) ms | inverse (density) ms |")
        print("|---|---|---|")
        for dim in args.dims:
            flow = perturb_(flowlab.build("glow", dim), 0).eval()
            points = torch.randn(args.batch, dim)
            print(
                f"| {dim} | {best_ms(flow.forward, points, args.repeats):.2f} | "
                f"{best_ms(flow.inverse, points, args.repeats):.2f} |"
            )
    print("\n| linear d | rows | forward LU / plain W ms | inverse LU / plain W ms | training step LU / plain W ms |")
    print("|---|---|---|---|---|")
    for dim in args.linear_dims:
        layers = perturb_(LULinear(dim), 0), perturb_(DenseLinear(dim), 0)
        for rows in (args.batch, 1):
            points = torch.randn(rows, dim)
            cells = []
            for call in ("forward", "inverse", "step"):
                lu_ms, dense_ms = (best_ms(_timed(layer, call), points, args.repeats) for layer in layers)
                cells.append(f"{lu_ms:.3f} / {dense_ms:.3f}")
            print(f"| {dim} | {rows} | " + " | ".join(cells) + " |")


def _timed(layer: torch.nn.Module, call: str) -> Callable[[torch.Tensor], object]:
    """``layer.forward`` or ``layer.inverse`` without gradients, or a training step of the layer alone."""
    if call == "step":

        def step(x: torch.Tensor) -> None:
            layer.zero_grad()
            z, ladj = layer.inverse(x)
            (0.5 * z.pow(2).sum(dim=1) - ladj).mean().backward()

        return step
    method = getattr(layer, call)
    return lambda x: torch.no_grad()(method)(x)


if __name__ == "__main__":
    main()
