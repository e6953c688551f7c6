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

CHECKPOINT = "checkpoint.pt"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fit a flow to a dataset",
        description="Fit a registered flow to a registered dataset (Adam) by a registered objective: maximum "
        "likelihood (mle, the default) or, for ODE flows, simulation-free flow matching (cfm, otcfm, rectified; "
        "'flowlab explain cfm'). Writes "
        f"DIR/{CHECKPOINT} atomically at every evaluation; Ctrl-C stops after the current step and saves; "
        "--resume continues exactly where a run stopped (it may change --steps and the solver limits "
        "-o max_nfe/max_seconds/rtol/atol). A diverging run (loss NaN/inf or exploding) stops with exit 1 and names "
        "the last good checkpoint.",
    )
    parser.add_argument("--flow", help="registered flow (see 'flowlab list'); taken from the checkpoint with --resume")
    parser.add_argument(
        "--data",
        help="registered dataset (e.g. moons, 8gaussians, digits) or a .npy/.csv file of rows (docs/data.md)",
    )
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
    parser.add_argument("--seed", type=int, help="seed of the data stream and the flow's randomness (default 0)")
    parser.add_argument("--eval-every", type=int, help="steps between held-out evaluations (default 200)")
    parser.add_argument("--eval-size", type=int, help="held-out points (default 4096)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument(
        "--nproc",
        type=int,
        help="train on N local processes (torch.distributed, DDP: gloo on CPU, nccl on CUDA), the global batch split "
        "across them; see docs/distributed.md for several machines",
    )
    parser.add_argument("--out", default=None, help="run directory (default runs/FLOW-DATA)")
    parser.add_argument("--resume", action="store_true", help=f"continue from DIR/{CHECKPOINT}")
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
CONFIG_ARGS = ("flow", "data", "objective", "steps", "batch_size", "lr", "seed", "eval_every", "eval_size")


def run(args: argparse.Namespace) -> int:
    from flowlab.datafiles import canonical, display_name
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
    if "data" in given:  # a data file is recorded by absolute path and content hash
        given["data"] = canonical(given["data"])
    path = Path(args.out or f"runs/{args.flow}-{Path(display_name(args.data or '')).stem}") / CHECKPOINT
    if args.resume:
        return fit(trainer_class().resume(str(path), args.device, given), path)
    if "flow" not in given or "data" not in given:
        raise OptionError("train: expected --flow NAME and --data NAME (or --resume with --out DIR)")
    if path.exists():
        raise CheckpointError(
            f"{path} already exists; continue it with --resume, or choose another --out (nothing was overwritten)"
        )
    return fit(trainer_class()(TrainConfig(**given), args.device), path)


def _conditioning(trainer: Trainer) -> str:
    """`` conditional on its labels (context_dim k)`` for a conditional flow, else nothing."""
    k = trainer.flow.context_dim
    return f" conditional on its labels (context_dim {k})" if k else ""


def fit(trainer: Trainer, path: Path) -> int:
    """Run the trainer under a progress bar; print the final held-out NLL and its gap to the data's entropy."""
    from flowlab.errors import SolverError

    config, out = trainer.config, console()
    entropy = trainer.dataset.entropy
    params = sum(p.numel() for p in trainer.flow.parameters())
    out.print(
        f"training [bold]{config.flow}[/] ({params} parameters) on [bold]{config.data}[/]{_conditioning(trainer)} by "
        f"[bold]{config.objective}[/]{_objective_options(trainer)} "
        f"(entropy {_fmt(entropy)} nats): steps {trainer.step}→{config.steps}, batch {config.batch_size}, "
        f"lr {config.lr}, seed {config.seed}"
    )
    columns = [
        TextColumn("step"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("loss {task.fields[loss]}  held-out NLL {task.fields[nll]}{task.fields[nfe]}"),
        SpeedColumn(),
        TimeRemainingColumn(),
    ]
    heartbeat = Heartbeat(trainer.step, config.steps, live=out.is_terminal)
    with Progress(*columns, console=out, transient=False) as progress, StopFlag() as stop:
        task = progress.add_task("train", total=config.steps, completed=trainer.step, loss="–", nll="–", nfe="")

        def on_step(report: StepReport) -> None:
            fields: dict[str, Any] = {"loss": f"{report.loss:.3f}"}
            if report.nfe is not None:
                fields["nfe"] = f"  NFE {report.nfe}" + (
                    f"/{report.nfe_backward}" if report.nfe_backward is not None else ""
                )
            if report.test_nll is not None:
                fields["nll"] = f"{report.test_nll.nats:.3f}"
                progress.console.print(
                    f"step {report.step}: loss {report.loss:.3f}, held-out NLL {report.test_nll.nats:.3f} "
                    f"± {report.test_nll.se:.3f}" + (f", NFE {report.nfe}" if report.nfe is not None else "")
                )
            progress.update(task, completed=report.step, **fields)
            heartbeat(report)

        try:
            finished = trainer.fit(on_step=on_step, should_stop=stop, save=lambda t: t.save(str(path)))
        except SolverError as exc:
            raise SolverError(f"{exc}; {_resume_hint(trainer, path)}", solver=exc.solver, time=exc.time) from None
        except KeyboardInterrupt:
            kept = f"{path} (step {trainer.saved[1]}) is unchanged" if trainer.saved else "nothing was saved"
            error_console().print(f"[yellow]aborted during step {trainer.step + 1}; {kept}[/]")
            return EXIT_INTERRUPTED
    if not finished:
        trainer.save(str(path))
        error_console().print(f"[yellow]stopped at step {trainer.step}; saved {path}; continue with --resume[/]")
        return EXIT_INTERRUPTED
    nll = trainer.evaluate()
    gap = nll.gap(entropy)
    out.print(
        f"held-out NLL {nll.nats:.3f} ± {nll.se:.3f} nats ({nll.bits_per_dim:.3f} bits/dim) on {nll.n} points; "
        f"entropy {_fmt(entropy)}, gap {_fmt(gap)} nats"
    )
    out.print(f"checkpoint: {path}")
    return 0


def _resume_hint(trainer: Trainer, path: Path) -> str:
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
        f"--resume --out {path.parent} {limits}; {diverged}"
    )


def _objective_options(trainer: Trainer) -> str:
    options = trainer.context.options
    return f" ({', '.join(f'{k}={v!r}' for k, v in options.items())})" if options else ""


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.3f}"
