"""Fit a flow to a registered dataset by a registered objective (maximum likelihood by default), with exact resume.

Each step draws a fresh batch ``x_1..x_B ~ p`` and takes an Adam step on the objective's loss
(:mod:`flowlab.objectives`; ``TrainConfig.objective``). The default ``mle`` is
``loss = −(1/B) Σ_i log q(x_i) + R``, where ``R = bijector.regularization()`` for flows that have one (the
weighted kinetic-energy / Jacobian terms of continuous flows), else 0. Minimising the expected NLL
``E_p[−log q] = H(p) + KL(p‖q)`` minimises ``KL(p‖q)``. The flow-matching objectives (``cfm``, ``otcfm``,
``rectified``) regress an ODE flow's vector field instead, without solving the ODE; evaluation is the same
held-out NLL either way.

Held out, every ``eval_every`` steps and at the end (``docs/data.md``): on a finite dataset (digits, a file) the
validation split, with the NLL of as many training rows beside it (the curves of ``flowlab plot RUN --curves``);
the run folder keeps ``last.pt`` and ``best.pt`` (the lowest validation NLL so far), both written atomically, and
``early_stop = P`` stops the run once the validation NLL has not improved for ``P`` evaluations. The test split is
never touched: it is ``flowlab eval``'s. On a stream (the 2D toys) as before: ``eval_size`` held-out draws, one
``checkpoint.pt``.

Optimisation: Adam at the rate :meth:`~flowlab.runconfig.TrainConfig.lr_at` gives each step (constant or cosine,
after an optional linear warm-up), with the gradient's global norm clipped to ``clip_grad_norm`` where set.

Conditional flows (``context_dim = k > 0``, ``docs/conditioning.md``): the dataset must declare a context of ``k``
features (digits: the one-hot of its 10 labels, :meth:`~flowlab.data.DatasetSpec.encode_context`,
:func:`~flowlab.runconfig.check_dataset_context`); each batch is drawn with its rows' labels and the loss is
``−(1/B) Σ_i log q(x_i | c_i)``, the held-out NLL ``−mean log q(x | c)`` over the held-out rows at their labels.

Reproducibility: the initial parameters come from the global RNG seeded with ``(seed, "init")``, the batch of
step ``k`` from ``seeding.generator(seed, "batch", k)``, and any randomness inside the flow (Hutchinson probes)
from the global RNG seeded with ``(seed, "step", k)``; the learning rate of step ``k`` is a function of the
configuration; parameters, optimizer state, step and history (from which the best evaluation and the evaluations
since are read) are checkpointed, so a resumed run takes exactly the steps the uninterrupted one would have.

Data-parallel training (:mod:`flowlab.distributed`) wraps :attr:`Trainer.objective_loss`, a module whose
``forward`` is the objective's loss on a batch, in ``DistributedDataParallel``: everything the loss computes from
the flow runs inside DDP's forward, so its gradients are averaged across processes (nothing is patched).

Resuming (:meth:`Trainer.resume`) continues a run with the configuration it was made with; what may change, and the
one check of it, is :func:`resumed_config`.

Divergence: a loss or held-out NLL that is NaN/inf, or that exceeds the run's first loss by more than
``EXPLOSION_FACTOR × max(1, |first loss|)``, stops :meth:`Trainer.fit` with a :class:`DivergenceError` naming the
last good checkpoint; a diverged state is never saved.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowlab.checkpoint import (
    BEST,
    CHECKPOINT,
    LAST,
    config_from,
    generator_states,
    installed,
    load_state,
    plugin_files,
    read_checkpoint,
    recorded_plugin_files,
    save_checkpoint,
    set_generator_states,
)
from flowlab.checkpoint import load_flow as load_flow  # re-exported: docs/tutorial loads runs from here
from flowlab.data import DatasetSpec
from flowlab.datafiles import is_path, relocated, resolve_dataset
from flowlab.errors import CheckpointError, DivergenceError, NonFiniteError, OptionError
from flowlab.evaluation import NLL, HeldOut, held_out
from flowlab.flow import Flow
from flowlab.objectives import ObjectiveContext, ObjectiveSpec
from flowlab.ode import continuous_flow
from flowlab.plugins import get_registry
from flowlab.registry import flow_spec, objective_spec
from flowlab.runconfig import TrainConfig, build_flow, dataset_context, resolve_device
from flowlab.seeding import generator, global_rng

#: a loss above ``first + EXPLOSION_FACTOR * max(1, |first|)`` (first: the first loss of a fit) has exploded
EXPLOSION_FACTOR = 1e3
#: options ``--resume`` may change: limits and tolerances of ODE solves and torch.compile, which do not change the
#: parameters
RESUMABLE_OPTIONS = ("max_nfe", "max_seconds", "rtol", "atol", "compile")


@dataclass(frozen=True)
class StepReport:
    """What the trainer reports after a step; at evaluation steps the held-out NLL (of the validation split of a
    finite dataset, else of the stream's held-out draws: :attr:`Trainer.held_out_part`), the NLL of as many training
    rows (finite datasets) and whether this evaluation is the best so far; ``nfe`` for ODE flows."""

    step: int
    loss: float
    held_out_nll: NLL | None = None
    train_nll: NLL | None = None
    best: bool = False
    nfe: int | None = None
    nfe_backward: int | None = None


class Outcome(enum.Enum):
    """How :meth:`Trainer.fit` ended."""

    FINISHED = "finished"  # the run took its steps
    STOPPED_EARLY = "stopped early"  # the validation NLL stopped improving (TrainConfig.early_stop)
    INTERRUPTED = "interrupted"  # should_stop() asked


class Trainer:
    """A flow, its optimizer and its data stream; :meth:`fit` trains, :meth:`save` checkpoints."""

    def __init__(self, config: TrainConfig, device: str | torch.device = "cpu") -> None:
        self.config = config
        self.dataset: DatasetSpec = resolve_dataset(config.data)  # a registered name or a data file
        if config.early_stop is not None and not self.dataset.finite:
            raise OptionError(
                f"train --early-stop: stops on the validation split of a finite dataset (digits, a data file); "
                f"{self.dataset.name!r} is a stream, whose every batch is new data: train it without --early-stop"
            )
        self.device = resolve_device(device)
        self.objective: ObjectiveSpec = objective_spec(config.objective)
        objective_options = self.objective.resolve_options(config.objective_options)
        with global_rng(config.seed, "init"):  # initial parameters are a function of the seed too
            self.flow = build_flow(config.flow, self.dataset.dim, config.options, self.dataset.preprocessing())
            self.flow = self.flow.to(self.device)
        self.objective.check_flow(flow_spec(config.flow), self.flow.bijector)
        #: the --plugin files the flow, objective and dataset came from (recorded: eval without them says so)
        self.plugin_files = plugin_files(
            get_registry().get(category, name).plugin.name
            for category, name in (("flows", config.flow), ("objectives", config.objective), ("datasets", config.data))
            if category != "datasets" or not is_path(config.data)
        )
        #: the objective's context; its generator is replaced by the step's before every loss
        self.context = ObjectiveContext(
            generator(config.seed, "objective"), objective_options, self.device, config.seed
        )
        if self.objective.prepare is not None:
            self.objective.prepare(self.flow, self.context)
        #: the objective's loss on a batch as a module (what data-parallel training wraps in DDP)
        self.objective_loss: nn.Module = ObjectiveLoss(self.flow, self.objective, self.context)
        self.optimizer = self.new_optimizer()
        self.step = 0
        self.history: list[dict[str, Any]] = []
        #: what the run scores every eval_every steps: a finite dataset's validation split (the test split is for
        #: flowlab eval), a stream's eval_size draws (seed, "test"); the rows' contexts for a conditional flow
        self.held_out_part = "validation" if self.dataset.finite else "test"
        self.held_out = self._held_out(self.held_out_part, config.eval_size, "validation")
        #: as many training rows (finite datasets), scored beside the validation split: the learning curves
        self.train_rows: HeldOut | None = (
            self._held_out("train", len(self.held_out.points), "train-nll", first=len(self.held_out.points))
            if self.dataset.finite
            else None
        )
        #: where and at which step the last checkpoint was written (or read, for a resumed run)
        self.saved: tuple[str, int] | None = None

    def new_optimizer(self) -> torch.optim.Optimizer:
        """Adam at the run's learning rate over the flow's parameters as they are now."""
        assert self.config.lr is not None  # TrainConfig resolves None to the objective's default
        return torch.optim.Adam(self.flow.parameters(), lr=self.config.lr)

    def _held_out(self, part: str, n: int, key: str, first: int | None = None) -> HeldOut:
        """:func:`~flowlab.evaluation.held_out` of this run: dequantised (or, for a stream's test draws, drawn) by
        the stream ``(seed, key)``; a stream's held-out draws keep their historical key ``(seed, "test")``."""
        stream = generator(self.config.seed, key if self.dataset.finite else "test")
        return held_out(
            self.dataset, n, stream, context_dim=self.flow.context_dim, device=self.device, part=part, first=first
        )

    # -- data ----------------------------------------------------------------------------------------------------
    def draw(self, n: int, *keys: object) -> torch.Tensor:
        """``n`` points of the dataset from the stream ``(seed, *keys)``, on the flow's device."""
        return self.dataset.sample(n, generator(self.config.seed, *keys)).to(self.device)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The step's training batch from the stream ``(seed, "batch", step)`` and, for a conditional flow, its rows'
        contexts (their labels, encoded; the points are those of :meth:`draw`), else ``None``."""
        if not self.flow.context_dim:
            return self.draw(self.config.batch_size, "batch", self.step), None
        stream = generator(self.config.seed, "batch", self.step)
        x, labels = self.dataset.sample_with_context(self.config.batch_size, stream)
        return x.to(self.device), dataset_context(self.dataset, labels, self.device)

    # -- training ------------------------------------------------------------------------------------------------
    def train_step(self) -> float:
        """One Adam step on a fresh batch at the step's learning rate (the gradient clipped where the run says);
        returns the objective's loss (for ``mle``: NLL + regularization)."""
        x, condition = self.batch()
        self.flow.train()
        self.context.generator = generator(self.config.seed, "objective", self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr_at(self.step)
        with global_rng(self.config.seed, "step", self.step), self._diverges_on_non_finite("the loss", self.step + 1):
            loss = self.objective_loss(x, condition)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.flow.parameters(), self.config.clip_grad_norm)
            self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def evaluate(self, rows: HeldOut | None = None) -> NLL:
        """The NLL on the run's fixed held-out set (:attr:`held_out`: validation split or stream draws), or on
        ``rows``."""
        diverges = self._diverges_on_non_finite(f"the {self.held_out_part} NLL", self.step)
        with global_rng(self.config.seed, "eval", self.step), diverges:
            return (rows or self.held_out).nll(self.flow)

    @property
    def best(self) -> dict[str, Any] | None:
        """The history entry of the lowest validation NLL so far (the first of equal ones); ``None`` on a stream
        (no validation split) or before the first evaluation."""
        scored = [entry for entry in self.history if "validation_nll" in entry]
        return min(scored, key=lambda entry: entry["validation_nll"]) if scored else None

    @property
    def evaluations_since_best(self) -> int:
        """Evaluations after the best one (what ``early_stop`` counts); 0 without one."""
        best = self.best
        return 0 if best is None else sum(1 for entry in self.history if entry["step"] > best["step"])

    @property
    def patience_exhausted(self) -> bool:
        """Whether ``early_stop`` says to stop now."""
        return self.config.early_stop is not None and self.evaluations_since_best >= self.config.early_stop

    @contextmanager
    def _diverges_on_non_finite(self, what: str, step: int) -> Iterator[None]:
        """A :class:`NonFiniteError` from the flow (non-finite ``z`` or log-det) is a divergence of the run."""
        try:
            yield
        except NonFiniteError as exc:
            raise self._diverged(f"{what} could not be computed: {exc}", float("nan"), step) from None

    def _diverged(self, what: str, value: float, step: int) -> DivergenceError:
        saved = (
            f"the last good checkpoint is {self.saved[0]} (step {self.saved[1]})"
            if self.saved is not None
            else "no checkpoint was written before it"
        )
        return DivergenceError(
            f"train: diverged at step {step}: {what}; {saved}; start a new run with a smaller learning rate "
            f"(--lr, now {self.config.lr:g})",
            step=step,
            saved_step=None if self.saved is None else self.saved[1],
            value=value,
        )

    def _check(self, what: str, value: float, first: float) -> None:
        """Raise :class:`DivergenceError` if ``value`` is non-finite or has exploded relative to ``first``."""
        if not math.isfinite(value):
            raise self._diverged(f"{what} became {value}", value, self.step)
        if value > first + EXPLOSION_FACTOR * max(1.0, abs(first)):
            raise self._diverged(
                f"{what} exploded to {value:.3g} (it started at {first:.3g}; the limit is first + "
                f"{EXPLOSION_FACTOR:g} × max(1, |first|))",
                value,
                self.step,
            )

    def fit(
        self,
        steps: int | None = None,
        *,
        on_step: Callable[[StepReport], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        save: Callable[[Trainer], None] | None = None,
    ) -> Outcome:
        """Train until ``steps`` (default ``config.steps``) steps in total have been taken.

        Evaluates every ``eval_every`` steps and at the end (:meth:`record_evaluation`), and calls ``save(self)``
        after each evaluation (:meth:`save_run` keeps ``last.pt`` and ``best.pt``). ``should_stop()`` is checked
        between steps; after an evaluation, ``early_stop`` may end the run. A diverged run raises
        :class:`DivergenceError` before saving anything.
        """
        target = self.config.steps if steps is None else steps
        first: float | None = None
        while self.step < target and not self.patience_exhausted:
            if should_stop is not None and should_stop():
                return Outcome.INTERRUPTED
            loss = self.train_step()
            first = loss if first is None and math.isfinite(loss) else first
            self._check("the loss", loss, loss if first is None else first)
            report = StepReport(self.step, loss, nfe=self.nfe, nfe_backward=self.nfe_backward)
            if self.step % self.config.eval_every == 0 or self.step == target:
                report = self.record_evaluation(loss, loss if first is None else first)
            if on_step is not None:
                on_step(report)
            if report.held_out_nll is not None and save is not None:
                save(self)
        return Outcome.STOPPED_EARLY if self.patience_exhausted else Outcome.FINISHED

    def record_evaluation(self, loss: float, first: float) -> StepReport:
        """Score the held-out set (and the training rows), check for divergence against the run's ``first`` loss,
        append the history entry and report it."""
        nll = self.evaluate()
        self._check(f"the {self.held_out_part} NLL", nll.nats, first)
        train_nll = None if self.train_rows is None else self.evaluate(self.train_rows)
        entry: dict[str, Any] = {"step": self.step, "loss": loss, f"{self.held_out_part}_nll": nll.nats}
        if train_nll is not None:
            entry["train_nll"] = train_nll.nats
        entry.update(lr=self.config.lr_at(self.step - 1), nfe=self.nfe)
        self.history.append(entry)
        best = self.best is entry
        return StepReport(self.step, loss, nll, train_nll, best, self.nfe, self.nfe_backward)

    @property
    def nfe(self) -> int | None:
        """Vector-field evaluations of the last ODE solve (ODE flows only)."""
        ode = continuous_flow(self.flow.bijector)
        return None if ode is None else ode.nfe

    @property
    def nfe_backward(self) -> int | None:
        """Vector-field evaluations of the last adjoint solve (ODE flows only)."""
        ode = continuous_flow(self.flow.bijector)
        return None if ode is None else ode.nfe_backward

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def save_run(self, directory: str | Path) -> None:
        """Checkpoint the run into its folder (atomically): ``last.pt``, and ``best.pt`` too when the last
        evaluation is the best so far (a finite dataset); ``checkpoint.pt`` on a stream (no validation split)."""
        directory = Path(directory)
        if not self.dataset.finite:
            self.save(str(directory / CHECKPOINT))
            return
        best = self.best
        if best is not None and best["step"] == self.step:
            self.save(str(directory / BEST))
        self.save(str(directory / LAST))

    def save(self, path: str) -> None:
        """Checkpoint parameters, optimizer state, step, config and history to ``path`` (atomically)."""
        save_checkpoint(
            path,
            {
                "config": self.config.to_dict(),
                "dim": self.dataset.dim,
                "step": self.step,
                "model": self.flow.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "generators": generator_states(self.flow),
                "history": self.history,
                "plugin_files": self.plugin_files,
            },
        )
        self.saved = (path, self.step)

    @classmethod
    def resume(cls, path: str, device: str | torch.device = "cpu", changes: Mapping[str, Any] | None = None) -> Trainer:
        """The trainer saved at ``path``, ready to continue with the configuration it was made with, and the
        ``changes`` (fields of :class:`~flowlab.runconfig.TrainConfig`) a resumed run may make
        (:func:`resumed_config`: an :class:`OptionError` for any other)."""
        checkpoint = read_checkpoint(path)
        config = resumed_config(config_from(checkpoint, path), changes or {}, path, checkpoint["step"])
        with installed(path, recorded_plugin_files(checkpoint)):
            trainer = cls(config, device)
        load_state(trainer.flow, checkpoint, path)
        # over the parameters as loaded: a state may give the flow parameters its options did not (an old maf
        # checkpoint's MADE skip connections, flowlab_autoregressive.bijector.MADE._load_from_state_dict)
        trainer.optimizer = trainer.new_optimizer()
        try:
            trainer.optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: the optimizer state does not fit the flow: {exc}") from None
        set_generator_states(trainer.flow, checkpoint["generators"], path)
        trainer.step = checkpoint["step"]
        trainer.history = list(checkpoint["history"])
        trainer.saved = (path, trainer.step)
        return trainer


class ObjectiveLoss(nn.Module):
    """``forward(x, condition) = objective.loss(flow, x, context[, condition=condition])``: the objective's loss of
    the flow on a batch ``x`` (``condition``: the rows' conditioning contexts of a conditional flow, else ``None``),
    as a module, so that data-parallel training can wrap it in ``DistributedDataParallel`` (whose forward must
    compute everything the gradients flow through). Its parameters are the flow's."""

    def __init__(self, flow: Flow, objective: ObjectiveSpec, context: ObjectiveContext) -> None:
        super().__init__()
        self.flow = flow
        self.objective = objective
        self.context = context

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        if condition is None:
            return self.objective.loss(self.flow, x, self.context)
        return self.objective.loss(self.flow, x, self.context, condition=condition)


def resumed_config(saved: TrainConfig, changes: Mapping[str, Any], path: str, step: int) -> TrainConfig:
    """The configuration a run saved at ``path`` (at ``step``) with ``saved`` continues with, given ``changes``
    (fields of :class:`~flowlab.runconfig.TrainConfig`, e.g. what the command line gave): a new total of ``steps``
    (not below ``step``), new values of the :data:`RESUMABLE_OPTIONS` (solver limits and tolerances, which do not
    change the parameters) and the new path of a data file that moved (the same SHA-256,
    :func:`~flowlab.datafiles.relocated`) are taken; a field given with the value it has is fine; any other change
    is an :class:`OptionError` naming the saved value (:func:`refuse_changes`)."""
    config = saved
    if changes.get("steps") is not None:
        if changes["steps"] < step:
            raise OptionError(
                f"train --resume --steps {changes['steps']}: the run in {path} is already at step {step}; --steps is "
                f"the total to reach, so give more than {step} (or leave it out to finish its {saved.steps})"
            )
        config = replace(config, steps=changes["steps"])
    if changes.get("options"):
        config = with_option_changes(config, changes["options"])
    taken = {"steps", "options"}
    if changes.get("data") is not None and is_path(saved.data):
        config = replace(config, data=relocated(saved.data, changes["data"]))
        taken.add("data")
    others = {name: value for name, value in changes.items() if name not in taken}
    refuse_changes(
        saved,
        others,
        f"train --resume {path}",
        advice=f"a resumed run keeps its configuration (only --steps and -o {'/'.join(RESUMABLE_OPTIONS)} may change)",
    )
    return config


def refuse_changes(saved: TrainConfig, wanted: Mapping[str, Any], where: str, *, advice: str) -> None:
    """An :class:`OptionError` naming every field of ``wanted`` whose value differs from ``saved``'s (``where``
    says which run, ``advice`` what to do instead); the one check that a run found on disk is the one asked for
    (``train --resume``, ``flowlab compare``)."""
    recorded = saved.to_dict()
    differ = [name for name, value in wanted.items() if recorded.get(name) != value]
    if differ:
        shown = ", ".join(f"{name}={recorded.get(name)!r}, not {wanted[name]!r}" for name in differ)
        raise OptionError(f"{where}: the run was made with {shown}; {advice}")


def with_option_changes(config: TrainConfig, options: dict[str, Any]) -> TrainConfig:
    """``config`` with ``options`` applied, if every option that changes value is one of :data:`RESUMABLE_OPTIONS`
    (:class:`OptionError` otherwise, or if the flow does not have the option)."""
    spec = flow_spec(config.flow)
    before = spec.resolve_options(config.options)
    after = spec.resolve_options({**config.options, **options})
    changed = {name: after[name] for name in options if after[name] != before[name]}
    refused = sorted(set(changed) - set(RESUMABLE_OPTIONS))
    if refused:
        raise OptionError(
            f"train --resume: the checkpoint was trained with options={config.options!r}; changing "
            f"{', '.join(f'{name}={changed[name]!r}' for name in refused)} would change the model. A resumed run "
            f"keeps its configuration; only --steps and the solver limits {', '.join(RESUMABLE_OPTIONS)} may change"
        )
    return replace(config, options={**config.options, **changed})
