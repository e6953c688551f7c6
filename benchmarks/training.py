"""Quality and speed of flowlab's flows on the 2D toys, side by side with zuko, nflows and normflows.

    OMP_NUM_THREADS=1 python benchmarks/training.py quality [--steps 2000] [--flows stacked ffjord] [--datasets ...]
    OMP_NUM_THREADS=1 python benchmarks/training.py speed

``quality``: trains each flow with ``flowlab.training.Trainer`` (Adam, batch 256, lr 1e-3) and reports the held-out
NLL on 20000 fresh points with its standard error, the dataset's entropy and the gap; zuko's ``RealNVP`` of the
same size (8 transforms, hidden (64, 64): the same parameter count as ``stacked``) is trained on exactly the same
batches and evaluated on the same points. A result more than 3 SE below the entropy is flagged (a normalisation bug).

``speed``: median times (``torch.utils.benchmark``, best of 3 interleaved rounds) of ``log_prob`` and ``sample`` at
batch 4096 and of one training step (forward, backward, Adam) at batch 512, at dim 2 and 16, for ``stacked``
(8 coupling blocks, hidden 64) and peers of equal parameter count (exact for zuko and normflows, nearest hidden
width for nflows' residual nets).
Peers are optional: a missing one is reported, not fatal.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils import benchmark

import flowlab
from flowlab.evaluation import held_out_nll
from flowlab.seeding import generator
from flowlab.training import TrainConfig, Trainer

EVAL_POINTS = 20000


# -- peers: (log_prob(x), sample(n), parameters) behind one small interface -----------------------------------------
@dataclass
class Model:
    name: str
    module: nn.Module
    log_prob: Callable[[torch.Tensor], torch.Tensor]
    sample: Callable[[int], torch.Tensor]

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def flowlab_stacked(dim: int, validate: bool = True) -> Model:
    flow = flowlab.Flow(flowlab.build("stacked", dim, blocks=8, block_options={"hidden": 64}), validate=validate)
    name = "flowlab stacked" + ("" if validate else " (validate=False)")
    return Model(name, flow, flow.log_prob, flow.sample)


def zuko_realnvp(dim: int) -> Model:
    import zuko

    flow = zuko.flows.RealNVP(dim, transforms=8, hidden_features=(64, 64))
    return Model("zuko RealNVP", flow, lambda x: flow().log_prob(x), lambda n: flow().sample((n,)))


def nflows_realnvp(dim: int, target: int) -> Model:
    from nflows.flows.realnvp import SimpleRealNVP

    def build(h: int) -> nn.Module:
        return SimpleRealNVP(features=dim, hidden_features=h, num_layers=8, num_blocks_per_layer=1)

    hidden = min(range(8, 129), key=lambda h: abs(sum(p.numel() for p in build(h).parameters()) - target))
    flow = build(hidden)
    return Model(f"nflows SimpleRealNVP (hidden {hidden})", flow, flow.log_prob, flow.sample)


def normflows_realnvp(dim: int) -> Model:
    import normflows as nf

    layers: list[nn.Module] = []
    for _ in range(8):
        net = nf.nets.MLP([dim // 2, 64, 64, 2 * (dim - dim // 2)], init_zeros=True)
        layers += [nf.flows.AffineCouplingBlock(net), nf.flows.Permute(dim, mode="swap")]
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), layers)
    return Model("normflows RealNVP", flow, flow.log_prob, lambda n: flow.sample(n)[0])


def peers(dim: int, target: int) -> list[Model]:
    models = []
    for make in (lambda: zuko_realnvp(dim), lambda: nflows_realnvp(dim, target), lambda: normflows_realnvp(dim)):
        try:
            models.append(make())
        except ImportError as exc:
            print(f"(skipped a peer: {exc})")
    return models


# -- quality ----------------------------------------------------------------------------------------------------------
def train_peer(model: Model, trainer: Trainer, steps: int) -> None:
    """Train ``model`` on the batches the flowlab trainer draws (same seed, same step -> same points)."""
    optimizer = torch.optim.Adam(model.module.parameters(), lr=trainer.config.lr)
    for step in range(steps):
        x = trainer.draw(trainer.config.batch_size, "batch", step)
        loss = -model.log_prob(x).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def peer_nll(model: Model, points: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        nll = torch.cat([-model.log_prob(b) for b in points.split(4096)]).double()
    return float(nll.mean()), float(nll.std()) / math.sqrt(len(nll))


def quality(args: argparse.Namespace) -> None:
    print("| flow | dataset | steps | held-out NLL ± SE (nats) | entropy | gap | train time (s) |")
    print("|---|---|---|---|---|---|---|")
    for data, seed in itertools.product(args.datasets, args.seeds):
        spec = flowlab.dataset_spec(data)
        points = spec.sample(EVAL_POINTS, generator(1, "eval"))
        for flow in args.flows:
            stacked = flow == "stacked"
            block_options = {"hidden": 64, **args.block_options}
            options = {"blocks": 8, "block_options": block_options} if stacked else dict(args.ode_options)
            steps = args.steps if stacked else args.ode_steps
            lr = 1e-3 if stacked else args.ode_lr
            config = TrainConfig(flow, data, options, steps=steps, lr=lr, eval_every=steps, seed=seed)
            trainer = Trainer(config)
            start = time.perf_counter()
            trainer.fit()
            seconds = time.perf_counter() - start
            nll = held_out_nll(trainer.flow, points)
            row(f"{flow} (seed {seed})", data, steps, nll.nats, nll.se, spec.entropy, seconds)
            if flow == "stacked" and args.zuko:
                torch.manual_seed(seed)
                model = zuko_realnvp(2)
                start = time.perf_counter()
                train_peer(model, trainer, steps)
                seconds = time.perf_counter() - start
                nats, se = peer_nll(model, points)
                row(f"zuko RealNVP (seed {seed}, same size and batches)", data, steps, nats, se, spec.entropy, seconds)


def row(name: str, data: str, steps: int, nats: float, se: float, entropy: float | None, seconds: float) -> None:
    gap = "–" if entropy is None else f"{nats - entropy:+.3f}"
    flag = " **below entropy**" if entropy is not None and nats < entropy - 3 * se else ""
    nll = f"{nats:.3f} ± {se:.3f}{flag}"
    print(f"| {name} | {data} | {steps} | {nll} | {entropy} | {gap} | {seconds:.1f} |", flush=True)


# -- speed ------------------------------------------------------------------------------------------------------------
def median_ms(fn: Callable[[], Any], min_run_time: float, clock: Callable[[], float] = time.perf_counter) -> float:
    """The median ms of ``fn()`` by ``torch.utils.benchmark`` (``clock``: wall time by default)."""
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads(), timer=clock)
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def train_step(model: Model, x: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.module.parameters(), lr=1e-4)

    def step() -> None:
        loss = -model.log_prob(x).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def speed(args: argparse.Namespace) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); median ms (lower is better)\n")
    print("| dim | model | parameters | log_prob 4096 | sample 4096 | train step 512 |")
    print("|---|---|---|---|---|---|")
    for dim in (2, 16):
        torch.manual_seed(0)
        ours = [flowlab_stacked(dim), flowlab_stacked(dim, validate=False)]
        models = [*ours, *peers(dim, ours[0].parameters)]
        x_eval, x_train = torch.randn(4096, dim), torch.randn(512, dim)
        steps = {model.name: train_step(model, x_train) for model in models}
        times: dict[str, list[float]] = {model.name: [math.inf] * 3 for model in models}
        for _ in range(args.rounds):  # interleaved rounds, best median kept: robust to other load on shared cores
            for model in models:
                with torch.no_grad():
                    lp = median_ms(lambda m=model, x=x_eval: m.log_prob(x), args.min_run_time)
                    sm = median_ms(lambda m=model: m.sample(4096), args.min_run_time)
                tr = median_ms(steps[model.name], args.min_run_time)
                times[model.name] = [min(a, b) for a, b in zip(times[model.name], (lp, sm, tr), strict=True)]
        for model in models:
            lp, sm, tr = times[model.name]
            print(f"| {dim} | {model.name} | {model.parameters} | {lp:.2f} | {sm:.2f} | {tr:.2f} |", flush=True)
        peer_times = [t for name, t in times.items() if not name.startswith("flowlab")]
        if peer_times:
            best = [min(t[i] for t in peer_times) for i in range(3)]
            for model in ours:
                ratios = " | ".join(f"{times[model.name][i] / best[i]:.2f}" for i in range(3))
                print(f"| {dim} | ratio {model.name} / fastest peer | | {ratios} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--flows", nargs="+", default=["stacked"])
    q.add_argument("--datasets", nargs="+", default=["8gaussians", "moons", "checkerboard", "2spirals"])
    q.add_argument("--steps", type=int, default=2000, help="steps for stacked (and zuko)")
    q.add_argument("--ode-steps", type=int, default=2000, help="steps for continuous flows")
    q.add_argument(
        "--block-options", type=json.loads, default={}, help="more options of stacked's coupling blocks, as JSON"
    )
    q.add_argument("--ode-lr", type=float, default=1e-3, help="Adam learning rate for continuous flows")
    q.add_argument(
        "--ode-options", type=json.loads, default={}, help="options of continuous flows, as JSON: '{\"hidden\": 64}'"
    )
    q.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds of the data stream and initialisation")
    q.add_argument("--no-zuko", dest="zuko", action="store_false")
    s = sub.add_parser("speed")
    s.add_argument("--min-run-time", type=float, default=0.3, help="seconds of timing per measurement")
    s.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best median of each is kept")
    args = parser.parse_args()
    quality(args) if args.what == "quality" else speed(args)


if __name__ == "__main__":
    main()
