"""Compare flows on one dataset at an equal budget: one :class:`~flowlab.training.Trainer` run per (flow, seed),
the same data, batch size and learning rate for all, and the same budget (optimizer steps, or seconds of training
wall time per run).

Layout of the output directory (resumable: running the same comparison again skips finished runs and resumes
interrupted ones from their last checkpoint)::

    OUT/FLOW/seed-S/                the run folder (flowlab train's): last.pt and best.pt on a finite dataset,
                                    checkpoint.pt on a stream (written atomically by the trainer)
    OUT/FLOW/seed-S/result.json     written once the run has reached its budget: its score, time, NFE
    OUT/compare.json                the table: every run and the per-flow summary
    OUT/compare.png                 densities (2D data) or samples (square images, e.g. digits) of each flow

A run's score is what ``flowlab eval`` reports for it: on a finite dataset (digits, a file) the test NLL of its
**best checkpoint** (the lowest validation NLL of its evaluations; the test split plays no part in choosing it),
on a stream the held-out NLL of its last state. Per flow the table shows the mean over the seeds with its standard
error — across seeds (``s/√k`` of the k runs' NLLs) when there are several, else the run's own SE — bits/dim
(``nats / (dim ln 2)``), the number of parameters, the mean training time per run, the steps taken and, for ODE
flows, the NFE of the last held-out solve.

A steps budget evaluates (and checkpoints) :data:`EVALUATIONS` times along each run; a seconds budget stops a run
at the first step boundary past the budget and evaluates every :data:`SECONDS_EVAL_EVERY` steps on a finite
dataset (to choose the best checkpoint; the clock runs on), on a stream only at its end.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from flowlab.checkpoint import atomic_write, latest_checkpoint, resolve_run
from flowlab.errors import CheckpointError, OptionError
from flowlab.training import TrainConfig, Trainer, refuse_changes

#: evaluations (each followed by a checkpoint) along a steps-budget run
EVALUATIONS = 10
#: steps between the evaluations of a seconds-budget run on a finite dataset
SECONDS_EVAL_EVERY = 100
#: the step cap of a seconds-budget run (the clock stops it first)
MAX_STEPS = 10**9
RESULT, TABLE, PICTURE = "result.json", "compare.json", "compare.png"


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
    """One finished run: its score (nats, with SE: the test NLL of its best checkpoint on a finite dataset, else the
    held-out NLL), bits/dim, size, time, steps, NFE, and the step of the checkpoint scored."""

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
    scored_step: int | None = None


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
    #: what a run's score is (see the module docstring)
    score: str = "held-out NLL"

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
            "score": self.score,
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
    from flowlab.checkpoint import load_flow
    from flowlab.evaluation import test_nll

    result_path = directory / RESULT
    if result_path.exists():
        saved = json.loads(result_path.read_text())
        _same_run(TrainConfig.from_dict(saved["config"]), config, result_path)
        return RunResult(**saved["result"])
    directory.mkdir(parents=True, exist_ok=True)
    progress = directory / "seconds.json"  # training seconds spent before the last checkpoint
    try:
        checkpoint: Path | None = latest_checkpoint(directory)
    except CheckpointError:
        checkpoint = None
    spent = json.loads(progress.read_text())["seconds"] if progress.exists() and checkpoint else 0.0
    if checkpoint is not None:
        trainer = Trainer.resume(str(checkpoint), device)
        _same_run(trainer.config, config, checkpoint)
    else:
        trainer = Trainer(config, device)
    start = time.perf_counter()

    def save(t: Trainer) -> None:
        t.save_run(directory)
        seconds = spent + time.perf_counter() - start
        atomic_write(progress, lambda tmp: Path(tmp).write_text(json.dumps({"seconds": seconds})))

    stop = None if budget.seconds is None else partial(past, start + budget.seconds)
    trainer.fit(on_step=on_step, should_stop=stop, save=save)
    seconds = spent + time.perf_counter() - start
    trainer.save_run(directory)
    if trainer.dataset.finite:  # the best checkpoint's test NLL, as flowlab eval reports it
        file, _ = resolve_run(directory)
        flow, _, scored = load_flow(file, device)
        nll, step = test_nll(flow, trainer.dataset, n=config.eval_size, seed=1, device=device), scored["step"]
    else:
        nll, step = trainer.evaluate(), trainer.step
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
        scored_step=step,
    )
    text = json.dumps({"config": config.to_dict(), "result": asdict(result)}, indent=2) + "\n"
    atomic_write(result_path, lambda tmp: Path(tmp).write_text(text))
    return result


def past(deadline: float) -> bool:
    """Whether the clock (``time.perf_counter``) has passed ``deadline``."""
    return time.perf_counter() >= deadline


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
    from flowlab.datafiles import resolve_dataset

    steps = budget.steps if budget.steps is not None else MAX_STEPS
    if budget.steps is not None:
        every = max(1, math.ceil(steps / EVALUATIONS))
    else:
        every = SECONDS_EVAL_EVERY if resolve_dataset(data).finite else MAX_STEPS
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
    score = "test NLL of the best checkpoint" if dataset.finite else "held-out NLL"
    comparison = Comparison(
        data, dataset.dim, budget, list(seeds), batch_size, lr, options=dict(options or {}), score=score
    )
    for config in configs(flows, data, seeds, budget, batch_size=batch_size, lr=lr, options=options):
        result = run_one(config, budget, run_dir(out, config.flow, config.seed), device)
        comparison.runs.append(result)
        if on_run is not None:
            on_run(config, result)
    text = json.dumps(comparison.to_dict(), indent=2) + "\n"
    atomic_write(out / TABLE, lambda tmp: Path(tmp).write_text(text))
    return comparison


def picture(comparison: Comparison, out: str | Path, *, seed: int = 0) -> Path:
    """``OUT/compare.png``: per flow (the checkpoint its first seed's run was scored at) the learned density on one
    colour scale with its colour bar (2D data) or 16 samples (square images), beside the data (a stream's draws,
    or a finite dataset's test rows); else the first two coordinates of samples."""
    import torch

    from flowlab.checkpoint import load_flow
    from flowlab.datafiles import resolve_dataset, short_name
    from flowlab.evaluation import log_probs, uses_autograd
    from flowlab.plotting import grid, image_side, mosaic, pyplot, reference, square_limits
    from flowlab.runconfig import dataset_context
    from flowlab.seeding import generator, global_rng

    plt = pyplot()
    out = Path(out)
    dataset = resolve_dataset(comparison.data)
    name = short_name(comparison.data)
    flows = [s.flow for s in comparison.summaries()]
    side = image_side(dataset.dim) if dataset.dim != 2 else None
    data = dataset.test_points(2000, generator(seed, "plot-data"))[:2000]
    shown = f"16 of {len(data)}" if side is not None else f"{len(data)}"
    drawn = f"{shown} test rows" if dataset.finite else f"{shown} draws"
    fig, axes = plt.subplots(1, len(flows) + 1, figsize=(3.2 * (len(flows) + 1) + 0.8, 3.6), layout="constrained")
    limits = square_limits(data[:, :2])
    low, high = float(data.min()), float(data.max())

    def show(ax: Any, points: torch.Tensor, title: str) -> None:
        if side is not None:
            shown = mosaic(points[:16].clamp(low, high), side, 4).numpy()
            image = ax.imshow(shown, cmap="gray_r", vmin=low, vmax=high, interpolation="nearest")
            ax.set_axis_off()
            if ax is axes[-1]:
                fig.colorbar(image, ax=list(axes), label="pixel value", shrink=0.8)
        else:
            ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4, linewidths=0)
            ax.set_xlim(*limits)
            ax.set_ylim(*limits)
            ax.set_xlabel("x₁", fontsize=8)
            ax.set_ylabel("x₂", fontsize=8)
        ax.set_title(title, fontsize=9)

    show(axes[0], data, f"data: {name} ({drawn})")
    summaries = {s.flow: s for s in comparison.summaries()}
    densities = []
    for ax, flow_name in zip(axes[1:], flows, strict=True):
        flow, _, checkpoint = load_flow(resolve_run(run_dir(out, flow_name, comparison.seeds[0]))[0])
        label = f"{flow_name}: {summaries[flow_name].nll:.3f} nats"
        if dataset.dim == 2:
            points = grid(limits, 120, reference(flow))
            densities.append((ax, log_probs(flow, points).exp().reshape(120, 120).numpy()))
            ax.set_title(f"{label}\nlearned density (step {checkpoint['step']})", fontsize=9)
            continue
        n = 16 if side else 2000
        # a flow conditioned on the dataset's labels: sample i at label i mod num_classes
        at = dataset_context(dataset, torch.arange(n) % dataset.num_classes, "cpu") if flow.context_dim else None
        with global_rng(seed, "plot-flow"), torch.set_grad_enabled(uses_autograd(flow)):
            show(ax, flow.sample(n, context=at).detach().cpu().float(), f"{label}\nsamples (step {checkpoint['step']})")
    if densities:  # one colour scale for every flow's density, so they compare
        top = max(float(density.max()) for _, density in densities)
        for ax, density in densities:
            image = ax.imshow(density, origin="lower", extent=(*limits, *limits), cmap="magma", vmin=0, vmax=top)
            ax.set_xlabel("x₁", fontsize=8)
            ax.set_ylabel("x₂", fontsize=8)
        fig.colorbar(image, ax=[ax for ax, _ in densities], label="learned density q(x)", shrink=0.8)
    seeds = len(comparison.seeds)
    over = f" (mean of {seeds} seeds; pictures of seed {comparison.seeds[0]})" if seeds > 1 else ""
    fig.suptitle(f"{name}: {comparison.budget.describe()} per run; above each flow its {comparison.score}{over}")
    path = out / PICTURE
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=72, format="png"))
    plt.close(fig)
    return path
