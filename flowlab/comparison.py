"""Compare flows on one dataset at an equal budget: one :class:`~flowlab.training.Trainer` run per (flow, seed),
the same data, batch size and learning rate for all, and the same budget (optimizer steps, or seconds of training
wall time per run).

Layout of the output directory (resumable: running the same comparison again skips finished runs and resumes
interrupted ones from their last checkpoint)::

    OUT/FLOW/seed-S/checkpoint.pt   the run's checkpoint (written atomically by the trainer)
    OUT/FLOW/seed-S/result.json     written once the run has reached its budget: held-out NLL, time, NFE
    OUT/compare.json                the table: every run and the per-flow summary
    OUT/compare.png                 densities (2D data) or samples (square images, e.g. digits) of each flow

Per flow the table shows the mean held-out NLL over the seeds with its standard error — across seeds
(``s/√k`` of the k runs' NLLs) when there are several, else the run's own held-out SE — bits/dim
(``nats / (dim ln 2)``), the number of parameters, the mean training time per run, the steps taken and, for ODE
flows, the NFE of the last held-out solve.

A seconds budget stops a run at the first step boundary past the budget; such a run checkpoints only at its end,
so an interrupted one starts again (a steps budget checkpoints :data:`SAVES` times along the way).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowlab.checkpoint import atomic_write
from flowlab.errors import OptionError
from flowlab.training import TrainConfig, Trainer, refuse_changes

#: checkpoints along a steps-budget run (each after a held-out evaluation)
SAVES = 3
#: the step cap of a seconds-budget run (the clock stops it first)
MAX_STEPS = 10**9
RESULT, CHECKPOINT, TABLE, PICTURE = "result.json", "checkpoint.pt", "compare.json", "compare.png"


@dataclass(frozen=True)
class Budget:
    """Exactly one of ``steps`` (optimizer steps per run) or ``seconds`` (training wall time per run)."""

    steps: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.seconds is None):
            raise OptionError("compare: expected one budget, --steps N or --seconds S")
        if self.steps is not None and (isinstance(self.steps, bool) or self.steps < 1):
            raise OptionError(f"compare: expected a positive number of steps, got {self.steps!r}")
        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise OptionError(f"compare: expected a positive number of seconds, got {self.seconds!r}")

    def describe(self) -> str:
        return f"{self.steps} steps" if self.steps is not None else f"{self.seconds:g} s"


@dataclass(frozen=True)
class RunResult:
    """One finished run: its held-out NLL (nats, with SE), bits/dim, size, time, steps and NFE."""

    flow: str
    seed: int
    nll: float
    se: float
    bits_per_dim: float
    n_test: int
    parameters: int
    seconds: float
    steps: int
    nfe: int | None


@dataclass(frozen=True)
class FlowSummary:
    """A flow over its seeds (see the module docstring for the standard error)."""

    flow: str
    seeds: int
    nll: float
    se: float
    bits_per_dim: float
    se_bits_per_dim: float
    parameters: int
    seconds: float
    steps: float
    nfe: float | None

    @classmethod
    def of(cls, runs: Sequence[RunResult], dim: int) -> FlowSummary:
        k = len(runs)
        nlls = [r.nll for r in runs]
        mean = sum(nlls) / k
        se = (
            math.sqrt(sum((v - mean) ** 2 for v in nlls) / (k - 1) / k) if k > 1 else runs[0].se
        )  # across seeds, else the held-out SE of the one run
        nfes = [r.nfe for r in runs if r.nfe is not None]
        per_bit = dim * math.log(2)
        return cls(
            flow=runs[0].flow,
            seeds=k,
            nll=mean,
            se=se,
            bits_per_dim=mean / per_bit,
            se_bits_per_dim=se / per_bit,
            parameters=runs[0].parameters,
            seconds=sum(r.seconds for r in runs) / k,
            steps=sum(r.steps for r in runs) / k,
            nfe=sum(nfes) / len(nfes) if nfes else None,
        )


@dataclass
class Comparison:
    """What :func:`compare` measured."""

    data: str
    dim: int
    budget: Budget
    seeds: list[int]
    batch_size: int
    lr: float
    runs: list[RunResult] = field(default_factory=list)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summaries(self) -> list[FlowSummary]:
        flows = list(dict.fromkeys(r.flow for r in self.runs))
        return [FlowSummary.of([r for r in self.runs if r.flow == f], self.dim) for f in flows]

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "dim": self.dim,
            "budget": asdict(self.budget),
            "seeds": self.seeds,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "options": self.options,
            "flows": [asdict(s) for s in self.summaries()],
            "runs": [asdict(r) for r in self.runs],
        }


def run_dir(out: Path, flow: str, seed: int) -> Path:
    return out / flow / f"seed-{seed}"


def run_one(
    config: TrainConfig,
    budget: Budget,
    directory: Path,
    device: str = "cpu",
    on_step: Callable[[Any], None] | None = None,
) -> RunResult:
    """Train (or resume, or read back) one run of the comparison in ``directory``."""
    result_path, checkpoint = directory / RESULT, directory / CHECKPOINT
    if result_path.exists():
        saved = json.loads(result_path.read_text())
        _same_run(TrainConfig.from_dict(saved["config"]), config, result_path)
        return RunResult(**saved["result"])
    directory.mkdir(parents=True, exist_ok=True)
    progress = directory / "seconds.json"  # training seconds spent before the last checkpoint
    spent = json.loads(progress.read_text())["seconds"] if progress.exists() and checkpoint.exists() else 0.0
    if checkpoint.exists():
        trainer = Trainer.resume(str(checkpoint), device)
        _same_run(trainer.config, config, checkpoint)
    else:
        trainer = Trainer(config, device)
    start = time.perf_counter()

    def save(t: Trainer) -> None:
        t.save(str(checkpoint))
        seconds = spent + time.perf_counter() - start
        atomic_write(progress, lambda tmp: Path(tmp).write_text(json.dumps({"seconds": seconds})))

    if budget.seconds is not None:
        deadline = start + budget.seconds
        trainer.fit(on_step=on_step, should_stop=lambda: time.perf_counter() >= deadline)
    else:
        trainer.fit(on_step=on_step, save=save)
    seconds = spent + time.perf_counter() - start
    trainer.save(str(checkpoint))
    nll = trainer.evaluate()
    result = RunResult(
        flow=config.flow,
        seed=config.seed,
        nll=nll.nats,
        se=nll.se,
        bits_per_dim=nll.bits_per_dim,
        n_test=nll.n,
        parameters=sum(p.numel() for p in trainer.flow.parameters()),
        seconds=seconds,
        steps=trainer.step,
        nfe=trainer.nfe,
    )
    text = json.dumps({"config": config.to_dict(), "result": asdict(result)}, indent=2) + "\n"
    atomic_write(result_path, lambda tmp: Path(tmp).write_text(text))
    return result


def _same_run(saved: TrainConfig, config: TrainConfig, path: Path) -> None:
    """A run found in the output directory must be the one asked for (an :class:`OptionError` naming what
    differs otherwise: the comparison would mix budgets or settings)."""
    advice = "a comparison resumes only the same runs: use another --out"
    refuse_changes(saved, config.to_dict(), f"compare: {path}", advice=advice)


def configs(
    flows: Sequence[str],
    data: str,
    seeds: Sequence[int],
    budget: Budget,
    *,
    batch_size: int,
    lr: float,
    options: dict[str, dict[str, Any]] | None = None,
) -> list[TrainConfig]:
    """The runs of a comparison, flow-major: every flow at every seed, the same data, batch, lr and budget;
    ``options[flow]`` are that flow's options (e.g. to give a peer library's flow the same architecture)."""
    options = options or {}
    if not flows:
        raise OptionError("compare: expected at least one flow")
    if len(set(flows)) != len(flows):
        raise OptionError(f"compare: each flow once, got {list(flows)}")
    stray = sorted(set(options) - set(flows))
    if stray:
        raise OptionError(f"compare: options for {', '.join(stray)}, which is not among the flows {list(flows)}")
    steps = budget.steps if budget.steps is not None else MAX_STEPS
    every = max(1, math.ceil(steps / SAVES)) if budget.steps is not None else MAX_STEPS
    return [
        TrainConfig(
            flow=f,
            data=data,
            options=dict(options.get(f, {})),
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=s,
            eval_every=every,
        )
        for f in flows
        for s in seeds
    ]


def compare(
    flows: Sequence[str],
    data: str,
    *,
    out: str | Path,
    budget: Budget,
    seeds: Sequence[int] = (0,),
    batch_size: int = 256,
    lr: float = 1e-3,
    device: str = "cpu",
    options: dict[str, dict[str, Any]] | None = None,
    on_run: Callable[[TrainConfig, RunResult], None] | None = None,
) -> Comparison:
    """Run (or resume) every (flow, seed) of the comparison under ``out`` and write ``OUT/compare.json``."""
    from flowlab.datafiles import canonical, resolve_dataset

    data = canonical(data)
    dataset = resolve_dataset(data)
    out = Path(out)
    comparison = Comparison(data, dataset.dim, budget, list(seeds), batch_size, lr, options=dict(options or {}))
    for config in configs(flows, data, seeds, budget, batch_size=batch_size, lr=lr, options=options):
        result = run_one(config, budget, run_dir(out, config.flow, config.seed), device)
        comparison.runs.append(result)
        if on_run is not None:
            on_run(config, result)
    text = json.dumps(comparison.to_dict(), indent=2) + "\n"
    atomic_write(out / TABLE, lambda tmp: Path(tmp).write_text(text))
    return comparison


def picture(comparison: Comparison, out: str | Path, *, seed: int = 0) -> Path:
    """``OUT/compare.png``: per flow (its first seed's run) the learned density (2D data) or 16 samples (square
    images), beside the data; else the first two coordinates of samples."""
    import torch

    from flowlab.checkpoint import load_flow
    from flowlab.datafiles import display_name, resolve_dataset
    from flowlab.evaluation import log_probs, uses_autograd
    from flowlab.plotting import grid, image_side, mosaic, pyplot, reference, square_limits
    from flowlab.runconfig import dataset_context
    from flowlab.seeding import generator, global_rng

    plt = pyplot()
    out = Path(out)
    dataset = resolve_dataset(comparison.data)
    flows = [s.flow for s in comparison.summaries()]
    side = image_side(dataset.dim) if dataset.dim != 2 else None
    data = dataset.test_points(2000, generator(seed, "plot-data"))[:2000]
    fig, axes = plt.subplots(1, len(flows) + 1, figsize=(3.2 * (len(flows) + 1), 3.4), layout="constrained")
    limits = square_limits(data[:, :2])
    low, high = float(data.min()), float(data.max())

    def show(ax: Any, points: torch.Tensor, title: str) -> None:
        if side is not None:
            ax.imshow(mosaic(points[:16].clamp(low, high), side, 4).numpy(), cmap="gray_r", vmin=low, vmax=high)
            ax.set_axis_off()
        else:
            ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4, linewidths=0)
            ax.set_xlim(*limits)
            ax.set_ylim(*limits)
        ax.set_title(title, fontsize=9)

    show(axes[0], data, f"data: {Path(display_name(comparison.data)).name}")
    summaries = {s.flow: s for s in comparison.summaries()}
    for ax, name in zip(axes[1:], flows, strict=True):
        flow, _, _ = load_flow(str(run_dir(out, name, comparison.seeds[0]) / CHECKPOINT))
        label = f"{name}: {summaries[name].nll:.3f} nats"
        if dataset.dim == 2:
            points = grid(limits, 120, reference(flow))
            density = log_probs(flow, points).exp().reshape(120, 120).numpy()
            ax.imshow(density, origin="lower", extent=(*limits, *limits), cmap="magma", aspect="equal")
            ax.set_title(label, fontsize=9)
            continue
        n = 16 if side else 2000
        # a flow conditioned on the dataset's labels: sample i at label i mod num_classes
        at = dataset_context(dataset, torch.arange(n) % dataset.num_classes, "cpu") if flow.context_dim else None
        with global_rng(seed, "plot-flow"), torch.set_grad_enabled(uses_autograd(flow)):
            show(ax, flow.sample(n, context=at).detach().cpu().float(), label)
    fig.suptitle(f"{display_name(comparison.data)}, {comparison.budget.describe()} per run")
    path = out / PICTURE
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=72, format="png"))
    plt.close(fig)
    return path
