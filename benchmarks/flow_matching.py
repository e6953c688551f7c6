"""Maximum likelihood vs flow matching on the 2D toys, side by side, median of seeds; and against torchcfm.

    OMP_NUM_THREADS=1 python benchmarks/flow_matching.py table        # the table of docs/benchmarks.md
    OMP_NUM_THREADS=1 python benchmarks/flow_matching.py table --seeds 0 --datasets 8gaussians   # a quick look
    OMP_NUM_THREADS=1 python benchmarks/flow_matching.py table --log LOG   # re-tabulate the JSON lines of a run
    OMP_NUM_THREADS=1 python benchmarks/flow_matching.py compile      # cnf with compile=True against eager

Every run trains ``cnf`` (hidden 32, depth 2, tanh: the flow's defaults) on one dataset with one objective through
``flowlab.training.Trainer`` (batch 256, the objective's default learning rate), then measures, on the same
held-out points of every run of a seed:

- ``NLL``: the held-out NLL by the exact trace (dopri5, rtol = atol = 1e-5) on ``--eval-size`` points;
- ``train s``: training wall time, evaluations excluded; ``to mle s``: for the flow-matching objectives, the
  training time until the first intermediate evaluation (every ``--eval-every`` steps) at or below the median final
  NLL of ``mle`` on that dataset ("—" if never);
- ``NFE dopri5``: function evaluations of one adaptive sampling solve (rtol = atol = 1e-5) of 1024 points;
- ``NFE rk4``: the fewest rk4 evaluations (4 per step, steps 1, 2, 3, 4, 6, 8, 12, 16, 24, 32) whose samples are
  within ``--tol`` (1% of the data's RMS radius) of the adaptive solve's samples from the same base points, mean
  ‖x_rk4 − x_dopri5‖ (equal sample quality: the same samples, whatever the field);
- ``SW``: sliced Wasserstein-1 distance (64 directions) between 2048 adaptive samples and 2048 data points;
- ``straight``: mean deviation of the paths from the straight line between their ends, over 33 times, divided by
  the mean length of those lines (0: straight paths).

``reflow``: ``rectified`` retrained from the seed's ``rectified`` run on 10000 of its own couplings (``reflow_steps``).
``torchcfm cfm`` / ``torchcfm otcfm``: torchcfm 1.0.7's ``ConditionalFlowMatcher`` /
``ExactOptimalTransportConditionalFlowMatcher`` (sigma 0, POT's exact solver) training the same ``TimeMLP`` with the
same optimizer, steps, batches and learning rate in a plain loop, then evaluated by flowlab (its field loaded into a
``cnf``). torchcfm is a benchmark-only dependency: ``pip install --no-deps torchcfm==1.0.7 pot``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import flowlab
from flowlab.evaluation import held_out_nll
from flowlab.ode import set_solver, straightness
from flowlab.registry import objective_spec
from flowlab.seeding import generator
from flowlab.training import TrainConfig, Trainer

DATASETS = ("8gaussians", "checkerboard", "moons", "2spirals")
OBJECTIVES = ("mle", "cfm", "otcfm", "rectified")
RK4_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


def fit(trainer: Trainer, steps: int, every: int, points: Tensor | None) -> tuple[float, list[tuple[float, float]]]:
    """Train to ``steps``; (training seconds, [(seconds so far, held-out NLL)] at every ``every`` steps)."""
    seconds, curve = 0.0, []
    while trainer.step < steps:
        start = time.perf_counter()
        for _ in range(min(every, steps - trainer.step)):
            trainer.train_step()
        seconds += time.perf_counter() - start
        if points is not None and trainer.step < steps:
            curve.append((seconds, held_out_nll(trainer.flow, points).nats))
    return seconds, curve


def sliced_w1(a: Tensor, b: Tensor, directions: int = 64) -> float:
    """Sliced Wasserstein-1 distance of two equal-size point sets (sorted projections on fixed directions)."""
    theta = torch.randn(directions, a.shape[1], generator=torch.Generator().manual_seed(0), dtype=a.dtype)
    theta = theta / theta.norm(dim=1, keepdim=True)
    pa, pb = (a @ theta.T).sort(dim=0).values, (b @ theta.T).sort(dim=0).values
    return float((pa - pb).abs().mean())


def sampling(flow: flowlab.Flow, data: Tensor, tol: float) -> dict[str, Any]:
    """NFE of adaptive and of fixed-step sampling at equal samples, sample quality and straightness."""
    bijector: Any = flow.bijector
    flow.eval()
    saved = bijector.solver
    z = torch.randn(1024, data.shape[1], generator=generator(0, "bench-z"))
    with torch.no_grad():
        reference = bijector.trajectory(z, [1.0])[-1]
        nfe_dopri = bijector.nfe
        samples = bijector.trajectory(torch.randn(2048, data.shape[1], generator=generator(0, "bench-sw")), [1.0])
        rk4 = None
        for steps in RK4_STEPS:
            set_solver(bijector, method="rk4", steps=steps)
            if float((bijector.trajectory(z, [1.0])[-1] - reference).norm(dim=1).mean()) <= tol:
                rk4 = 4 * steps
                break
        bijector.solver = saved
        lines = (bijector.trajectory(z, [1.0])[-1] - z).norm(dim=1).mean()
        straight = straightness(bijector, z) / float(lines)
    return {"nfe_dopri5": nfe_dopri, "nfe_rk4": rk4, "sw": sliced_w1(samples[-1], data), "straight": straight}


def torchcfm_run(data: str, seed: int, steps: int, lr: float, ot: bool) -> tuple[flowlab.Flow, float]:
    """torchcfm training the same field with the same batches; (the flow, training seconds)."""
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
    )

    trainer = Trainer(TrainConfig(flow="cnf", data=data, seed=seed, eval_size=2))  # same init, same data stream
    field = trainer.flow.bijector.field
    matcher = ExactOptimalTransportConditionalFlowMatcher(sigma=0.0) if ot else ConditionalFlowMatcher(sigma=0.0)
    optimizer = torch.optim.Adam(field.parameters(), lr=lr)
    torch.manual_seed(seed)
    start = time.perf_counter()
    for step in range(steps):
        x1 = trainer.draw(256, "batch", step)
        x0 = torch.randn_like(x1)
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        loss = (field(t, xt) - ut).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return trainer.flow, time.perf_counter() - start


def table(args: argparse.Namespace) -> None:
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    if args.log is not None:  # re-tabulate the JSON lines of an earlier run
        for line in Path(args.log).read_text().splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                rows.setdefault((row["data"], row["run"]), []).append(row)
        print_table(rows, args)
        return
    for seed in args.seeds:  # seed outermost: a run cut short still has whole seeds
        for data in args.datasets:
            dataset = flowlab.dataset_spec(data)
            tol = args.tol * float(dataset.sample(4096, generator(0, "rms")).pow(2).sum(1).mean().sqrt())
            points = dataset.sample(args.eval_size, generator(seed, "bench-test"))
            curve_points = points[: args.curve_size]
            reference = dataset.sample(2048, generator(seed, "bench-sw"))
            runs: dict[str, tuple[Trainer, float, list[tuple[float, float]]]] = {}
            for objective in OBJECTIVES:
                steps = args.mle_steps if objective == "mle" else args.steps
                trainer = Trainer(TrainConfig(flow="cnf", data=data, objective=objective, seed=seed, eval_size=2))
                seconds, curve = fit(trainer, steps, args.eval_every, None if objective == "mle" else curve_points)
                runs[objective] = (trainer, seconds, curve)
            with tempfile.TemporaryDirectory() as tmp:
                path = str(Path(tmp) / "rectified.pt")
                runs["rectified"][0].save(path)
                config = TrainConfig(
                    flow="cnf",
                    data=data,
                    objective="rectified",
                    seed=seed,
                    eval_size=2,
                    objective_options={"reflow_from": path},
                )
                start = time.perf_counter()
                trainer = Trainer(config)  # draws the couplings: part of reflow's cost
                prepare = time.perf_counter() - start
                seconds, curve = fit(trainer, args.reflow_steps, args.eval_every, curve_points)
                runs["rectified + reflow"] = (trainer, prepare + seconds, curve)
            fm_lr = objective_spec("cfm").lr
            if seed in args.torchcfm_seeds:
                for ot in (False, True):
                    flow, seconds = torchcfm_run(data, seed, args.steps, fm_lr, ot)
                    runs["torchcfm otcfm" if ot else "torchcfm cfm"] = (_Done(flow), seconds, [])
            for name, (trainer, seconds, curve) in runs.items():
                flow = trainer.flow
                row = {
                    "nll": held_out_nll(flow, points).nats,
                    "seconds": seconds,
                    "curve": curve,
                    **sampling(flow, reference, tol),
                }
                rows.setdefault((data, name), []).append(row)
                print(json.dumps({"data": data, "seed": seed, "run": name, **row}), flush=True)
    print_table(rows, args)


class _Done:
    """A trained flow where a Trainer is expected (torchcfm's runs)."""

    def __init__(self, flow: flowlab.Flow) -> None:
        self.flow = flow


def median(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return statistics.median(present) if len(present) * 2 > len(values) else None


def print_table(rows: dict[tuple[str, str], list[dict[str, Any]]], args: argparse.Namespace) -> None:
    print()
    print(
        "| data | objective | NLL (entropy) | train s | to mle s | NFE dopri5 | NFE rk4 | SW | straight |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for data in dict.fromkeys(data for data, _ in rows):
        target = median([r["nll"] for r in rows[(data, "mle")]])
        entropy = flowlab.dataset_spec(data).entropy
        for (name_data, name), runs in rows.items():
            if name_data != data:
                continue
            reach = []
            for run in runs:
                hit = next((s for s, nll in run["curve"] if nll <= target), None)
                final = run["nll"] <= target
                reach.append(hit if hit is not None else (run["seconds"] if final else None))
            to_mle = "" if name == "mle" or not runs[0]["curve"] else _fmt(median(reach), "{:.1f}")
            print(
                f"| {data} | {name} | {median([r['nll'] for r in runs]):.3f} ({entropy:.2f}) | "
                f"{median([r['seconds'] for r in runs]):.1f} | {to_mle} | "
                f"{median([r['nfe_dopri5'] for r in runs]):.0f} | "
                f"{_fmt(median([r['nfe_rk4'] for r in runs]), '{:.0f}')}"
                f" | {median([r['sw'] for r in runs]):.3f} | {median([r['straight'] for r in runs]):.3f} |"
            )


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else spec.format(value)


def compile_bench(args: argparse.Namespace) -> None:
    """One exact-trace ``log_prob`` batch (eval) and one maximum-likelihood step of ``cnf`` (hidden 64), eager
    against ``compile=True``: the first call (compilation included), then the median of ``--repeats`` calls."""
    print("| path | batch | first call s | log_prob ms | mle step ms | NFE |\n|---|---|---|---|---|---|")
    x = flowlab.dataset_spec("8gaussians").sample(args.batch, generator(0, "compile"))
    for compiled in (False, True):
        first, times, nfe = compile_row(compiled, x, args.repeats)
        label = "compile=True" if compiled else "eager"
        print(f"| {label} | {args.batch} | {first:.1f} | {times['log_prob']:.1f} | {times['step']:.1f} | {nfe} |")


def compile_row(compiled: bool, x: Tensor, repeats: int) -> tuple[float, dict[str, float], int]:
    torch.manual_seed(0)
    flow = flowlab.Flow(flowlab.build("cnf", 2, hidden=64, compile=compiled))
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)

    def log_prob() -> None:
        flow.eval()
        flow.log_prob(x)

    def step() -> None:
        flow.train()
        optimizer.zero_grad()
        (-flow.log_prob(x).mean()).backward()
        optimizer.step()

    start = time.perf_counter()
    log_prob()
    step()
    first = time.perf_counter() - start
    times = {}
    for name, fn in (("log_prob", log_prob), ("step", step)):
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        times[name] = statistics.median(samples) * 1e3
    return first, times, int(flow.bijector.nfe)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table", help="mle vs cfm vs otcfm vs rectified (+ reflow) vs torchcfm")
    t.add_argument("--datasets", nargs="+", default=list(DATASETS))
    t.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    t.add_argument("--steps", type=int, default=2000, help="flow-matching steps (default 2000)")
    t.add_argument("--mle-steps", type=int, default=400, help="maximum-likelihood steps (default 400)")
    t.add_argument("--reflow-steps", type=int, default=1000, help="reflow steps (default 1000)")
    t.add_argument("--eval-every", type=int, default=500, help="steps between intermediate NLLs (default 500)")
    t.add_argument("--eval-size", type=int, default=2048, help="held-out points of the final NLL (default 2048)")
    t.add_argument("--curve-size", type=int, default=512, help="held-out points of intermediate NLLs (512)")
    t.add_argument("--tol", type=float, default=0.01, help="rk4 vs dopri5 samples, fraction of the data's RMS")
    t.add_argument("--torchcfm-seeds", nargs="*", type=int, default=[0], help="seeds with torchcfm runs (0)")
    t.add_argument("--log", default=None, help="re-tabulate the JSON lines this command printed earlier")
    c = sub.add_parser("compile", help="compile=True against the eager exact trace")
    c.add_argument("--batch", type=int, default=256)
    c.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    (table if args.command == "table" else compile_bench)(args)


if __name__ == "__main__":
    main()
