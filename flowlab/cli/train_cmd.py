"""``flowlab train``: fit a flow to a dataset with a live progress bar, checkpointing atomically as it goes."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from flowlab.cli import EXIT_INTERRUPTED
from flowlab.cli.console import console, error_console
from flowlab.cli.options import parse_options
from flowlab.cli.plugin_files import add_plugin_argument, load_plugin_files

if TYPE_CHECKING:
    from flowlab.training import StepReport, Trainer


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fit a flow to a dataset",
        description="Fit a registered flow to a registered dataset (Adam) by a registered objective: maximum "
        "likelihood (mle, the default) or, for ODE flows, simulation-free flow matching (cfm, otcfm, rectified; "
        "'flowlab explain cfm'). On a finite dataset (digits, a data file) it scores the validation split every "
        "--eval-every steps and keeps DIR/last.pt and DIR/best.pt (the lowest validation NLL), both written "
        "atomically; --early-stop P stops once that NLL has not improved for P evaluations; the test split is "
        "left to 'flowlab eval DIR'. On a stream (the 2D toys) it scores held-out draws and keeps DIR/checkpoint.pt. "
        "Ctrl-C stops after the current step and saves; --resume continues exactly where a run stopped (it may "
        "change --steps, the solver limits -o max_nfe/max_seconds/rtol/atol/compile and the path of a data file "
        "that moved). A diverging run (loss NaN/inf or exploding) stops with exit 1 and names the last good "
        "checkpoint.",
    )
    parser.add_argument("--flow", help="registered flow (see 'flowlab list'); taken from the checkpoint with --resume")
    parser.add_argument(
        "--data",
        help="registered dataset (e.g. moons, 8gaussians, digits) or a .npy/.npz/.csv/.txt file of rows "
        "(docs/data.md); with --resume, where a data file that moved is now",
    )
    parser.add_argument("--key", metavar="NAME", help="the array of an .npz file that holds several")
    parser.add_argument(
        "--option",
        "-o",
        action="append",
        metavar="KEY=VALUE",
        help="a flow option, repeatable; VALUE is JSON or a string, e.g. -o blocks=4 "
        "-o 'block_options={\"hidden\": 32}'",
    )
    parser.add_argument(
        "--objective", help="registered training objective: mle (default), cfm, otcfm, rectified ('flowlab list')"
    )
    parser.add_argument(
        "--objective-option",
        "-O",
        action="append",
        metavar="KEY=VALUE",
        help="an objective option, repeatable, e.g. -O sigma=0.01 (see 'flowlab explain OBJECTIVE')",
    )
    parser.add_argument(
        "--reflow-from",
        metavar="CKPT",
        help="rectified flow's reflow: start from this checkpoint and retrain on its couplings (z, T(z)); "
        "the same as -O reflow_from=CKPT",
    )
    parser.add_argument("--steps", type=int, help="total optimizer steps (default 2000; with --resume: extend to this)")
    parser.add_argument("--batch-size", type=int, help="points per step (default 256)")
    parser.add_argument(
        "--lr", type=float, help="Adam learning rate (default: the objective's, 1e-3 for mle, 1e-2 for flow matching)"
    )
    parser.add_argument(
        "--lr-schedule",
        help="learning rate over the steps: constant (default) or cosine (decays to 0 at --steps)",
    )
    parser.add_argument("--warmup", type=int, metavar="STEPS", help="steps of linear warm-up to --lr (default 0)")
    parser.add_argument(
        "--clip-grad-norm", type=float, metavar="NORM", help="clip each step's gradient to this global norm"
    )
    parser.add_argument("--seed", type=int, help="seed of the data stream and the flow's randomness (default 0)")
    parser.add_argument(
        "--eval-every", type=int, help="steps between held-out (validation) evaluations and checkpoints (default 200)"
    )
    parser.add_argument("--eval-size", type=int, help="held-out points of a stream (default 4096)")
    parser.add_argument(
        "--early-stop",
        type=int,
        metavar="PATIENCE",
        help="stop when the validation NLL has not improved for PATIENCE evaluations (finite datasets)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument(
        "--nproc",
        type=int,
        help="train on N local processes (torch.distributed, DDP: gloo on CPU, nccl on CUDA), the global batch split "
        "across them; see docs/distributed.md for several machines",
    )
    parser.add_argument("--out", default=None, help="run folder (default runs/FLOW-DATA)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out DIR from its last checkpoint")
    add_plugin_argument(parser)
    parser.set_defaults(func=run)


class SpeedColumn(ProgressColumn):
    """Steps per second."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f} it/s" if task.speed else "– it/s")


class StopFlag:
    """The first Ctrl-C asks the run to stop after the current step (and save); a second one aborts at once
    (``KeyboardInterrupt``, and Ctrl-C is ignored from then on, so the abort itself cannot be interrupted)."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: Any = None

    def __enter__(self) -> StopFlag:
        try:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not in the main thread: no handler, Ctrl-C aborts as usual
            self.previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            raise KeyboardInterrupt
        self.requested = True
        error_console().print("[yellow]stopping after this step and saving (Ctrl-C again to abort)[/]")

    def __call__(self) -> bool:
        return self.requested


class Heartbeat:
    """Where the live bar is not drawn (output piped or redirected), a plain progress line on stderr every
    :attr:`every` seconds, so that a long run is never silent."""

    every = 10.0

    def __init__(self, start: int, total: int, *, live: bool) -> None:
        self.total, self.live = total, live
        self.last, self.step = time.monotonic(), start

    def __call__(self, report: StepReport) -> None:
        now = time.monotonic()
        if self.live or now - self.last < self.every:
            return
        speed = (report.step - self.step) / (now - self.last)
        nfe = f", NFE {report.nfe}" if report.nfe is not None else ""
        error_console().print(f"step {report.step}/{self.total}: loss {report.loss:.3f}{nfe}, {speed:.1f} it/s")
        self.last, self.step = now, report.step


#: TrainConfig fields set by options of the same name; with --resume they come from the checkpoint
CONFIG_ARGS = (
    "flow",
    "data",
    "objective",
    "steps",
    "batch_size",
    "lr",
    "lr_schedule",
    "warmup",
    "clip_grad_norm",
    "seed",
    "eval_every",
    "eval_size",
    "early_stop",
)


def run(args: argparse.Namespace) -> int:
    from flowlab.checkpoint import BEST, CHECKPOINT, LAST, latest_checkpoint
    from flowlab.datafiles import canonical, short_name
    from flowlab.errors import CheckpointError, OptionError
    from flowlab.training import TrainConfig

    load_plugin_files(args.plugins)
    from flowlab.distributed import launch, launched, trainer_class

    if args.nproc is not None and not launched():
        return launch(args.argv, args.nproc)  # the same command line in N workers (torch's elastic launcher)
    given = {name: getattr(args, name) for name in CONFIG_ARGS if getattr(args, name) is not None}
    if args.option:
        given["options"] = parse_options(args.option)
    objective_options = parse_options(args.objective_option) if args.objective_option else {}
    if args.reflow_from is not None:
        objective_options["reflow_from"] = args.reflow_from
        given.setdefault("objective", "rectified")
    if objective_options:
        given["objective_options"] = objective_options
    if args.out is None and (args.flow is None or args.data is None):
        raise OptionError("train: expected --flow NAME and --data NAME (or --resume with --out DIR)")
    if "data" in given:  # a data file is recorded by absolute path (and array) and content hash
        given["data"] = canonical(given["data"], args.key)
    out = Path(args.out or f"runs/{args.flow}-{Path(short_name(given.get('data', ''))).stem}")
    if args.resume:
        return fit(trainer_class().resume(str(latest_checkpoint(out)), args.device, given), out)
    if "flow" not in given or "data" not in given:
        raise OptionError("train: expected --flow NAME and --data NAME (or --resume with --out DIR)")
    existing = [out / name for name in (LAST, BEST, CHECKPOINT) if (out / name).exists()]
    if existing:
        raise CheckpointError(
            f"{existing[0]} already exists; continue the run with --resume, or choose another --out (nothing was "
            "overwritten)"
        )
    return fit(trainer_class()(TrainConfig(**given), args.device), out)


def _conditioning(trainer: Trainer) -> str:
    """`` conditional on its labels (context_dim k)`` for a conditional flow, else nothing."""
    k = trainer.flow.context_dim
    return f" conditional on its labels (context_dim {k})" if k else ""


def fit(trainer: Trainer, out: Path) -> int:
    """Run the trainer under a progress bar, checkpointing into the run folder ``out``; print the final held-out
    NLL (and, on a finite dataset, the best checkpoint), or why the run stopped."""
    from flowlab.datafiles import short_name
    from flowlab.errors import SolverError
    from flowlab.training import Outcome

    config, console_out = trainer.config, console()
    entropy = trainer.dataset.entropy
    params = sum(p.numel() for p in trainer.flow.parameters())
    console_out.print(
        f"training [bold]{config.flow}[/] ({params} parameters) on [bold]{short_name(config.data)}[/]"
        f"{_conditioning(trainer)} by [bold]{config.objective}[/]{_objective_options(trainer)} "
        f"(entropy {_fmt(entropy)} nats): steps {trainer.step}→{config.steps}, batch {config.batch_size}, "
        f"lr {config.lr}{_schedule(trainer)}, seed {config.seed}{_held_out(trainer)}"
    )
    part = "validation" if trainer.held_out_part == "validation" else "held-out"  # a stream: held-out draws
    columns = [
        TextColumn("step"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn(f"loss {{task.fields[loss]}}  {part} NLL {{task.fields[nll]}}{{task.fields[nfe]}}"),
        SpeedColumn(),
        TimeRemainingColumn(),
    ]
    heartbeat = Heartbeat(trainer.step, config.steps, live=console_out.is_terminal)
    with Progress(*columns, console=console_out, transient=False) as progress, StopFlag() as stop:
        task = progress.add_task("train", total=config.steps, completed=trainer.step, loss="–", nll="–", nfe="")

        def on_step(report: StepReport) -> None:
            fields: dict[str, Any] = {"loss": f"{report.loss:.3f}"}
            if report.nfe is not None:
                fields["nfe"] = f"  NFE {report.nfe}" + (
                    f"/{report.nfe_backward}" if report.nfe_backward is not None else ""
                )
            if report.held_out_nll is not None:
                fields["nll"] = f"{report.held_out_nll.nats:.3f}"
                train = "" if report.train_nll is None else f", train NLL {report.train_nll.nats:.3f}"
                progress.console.print(
                    f"step {report.step}: loss {report.loss:.3f}{train}, {part} NLL {report.held_out_nll.nats:.3f} "
                    f"± {report.held_out_nll.se:.3f}"
                    + (f", NFE {report.nfe}" if report.nfe is not None else "")
                    + (" (best so far)" if report.best else "")
                )
            progress.update(task, completed=report.step, **fields)
            heartbeat(report)

        try:
            outcome = trainer.fit(on_step=on_step, should_stop=stop, save=lambda t: t.save_run(out))
        except SolverError as exc:
            raise SolverError(f"{exc}; {_resume_hint(trainer, out)}", solver=exc.solver, time=exc.time) from None
        except KeyboardInterrupt:
            kept = (
                f"{trainer.saved[0]} (step {trainer.saved[1]}) is unchanged" if trainer.saved else "nothing was saved"
            )
            error_console().print(f"[yellow]aborted during step {trainer.step + 1}; {kept}[/]", soft_wrap=True)
            return EXIT_INTERRUPTED
    if outcome is Outcome.INTERRUPTED:
        trainer.save_run(out)
        error_console().print(
            f"[yellow]stopped at step {trainer.step}; saved in {out}; continue with --resume[/]", soft_wrap=True
        )
        return EXIT_INTERRUPTED
    if outcome is Outcome.STOPPED_EARLY:
        console_out.print(
            f"stopped early at step {trainer.step}: the validation NLL has not improved for "
            f"{trainer.evaluations_since_best} evaluations (--early-stop {config.early_stop})"
        )
    nll = trainer.evaluate()
    if trainer.best is None:  # a stream: held-out draws, one checkpoint
        gap = nll.gap(entropy)
        console_out.print(
            f"held-out NLL {nll.nats:.3f} ± {nll.se:.3f} nats ({nll.bits_per_dim:.3f} bits/dim) on {nll.n} points; "
            f"entropy {_fmt(entropy)}, gap {_fmt(gap)} nats"
        )
        console_out.print(f"checkpoint: {trainer.saved[0] if trainer.saved else out}")
        return 0
    best = trainer.best
    console_out.print(
        f"validation NLL {nll.nats:.3f} ± {nll.se:.3f} nats ({nll.bits_per_dim:.3f} bits/dim) on {nll.n} rows at "
        f"step {trainer.step}; best {best['validation_nll']:.3f} at step {best['step']}"
    )
    console_out.print(
        f"checkpoints: {out / 'best.pt'} (step {best['step']}), {out / 'last.pt'} (step {trainer.step}); "
        f"the test NLL: flowlab eval {out}"
    )
    return 0


def _schedule(trainer: Trainer) -> str:
    """`` (cosine, warm-up 100), clip 1`` as configured, else nothing."""
    config = trainer.config
    parts = [config.lr_schedule] if config.lr_schedule != "constant" else []
    parts += [f"warm-up {config.warmup}"] if config.warmup else []
    schedule = f" ({', '.join(parts)})" if parts else ""
    return schedule + (f", clip {config.clip_grad_norm:g}" if config.clip_grad_norm is not None else "")


def _held_out(trainer: Trainer) -> str:
    """What the run scores: `` validating on its 180 validation rows every 200 steps`` (a finite dataset)."""
    if trainer.held_out_part != "validation":
        return ""
    early = f", early stop after {trainer.config.early_stop}" if trainer.config.early_stop else ""
    return (
        f"; validating on {len(trainer.held_out.points)} rows every {trainer.config.eval_every} steps{early} "
        "(the test split is for flowlab eval)"
    )


def _resume_hint(trainer: Trainer, out: Path) -> str:
    """How to go on after a failed solve: higher solver limits (with --resume where a checkpoint exists), or a
    smaller learning rate where the flow diverged."""
    from flowlab.registry import flow_spec

    options = flow_spec(trainer.config.flow).resolve_options(trainer.config.options)
    limits = f"-o max_nfe={2 * options['max_nfe']} -o max_seconds={2 * options['max_seconds']:g}"
    diverged = (
        f"if the loss was rising, the run diverged instead: start again with a smaller --lr (now {trainer.config.lr:g})"
    )
    if trainer.saved is None:
        return f"no checkpoint was written yet: rerun with higher limits, e.g. {limits}; {diverged}"
    return (
        f"to continue from the last checkpoint (step {trainer.saved[1]}) with higher solver limits: flowlab train "
        f"--resume --out {out} {limits}; {diverged}"
    )


def _objective_options(trainer: Trainer) -> str:
    options = trainer.context.options
    return f" ({', '.join(f'{k}={v!r}' for k, v in options.items())})" if options else ""


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.3f}"
