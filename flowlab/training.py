"""Fit a flow to a registered dataset by a registered objective (maximum likelihood by default), with exact resume.

Each step draws a fresh batch ``x_1..x_B ~ p`` and takes an Adam step on the objective's loss
(:mod:`flowlab.objectives`; ``TrainConfig.objective``). The default ``mle`` is
``loss = −(1/B) Σ_i log q(x_i) + R``, where ``R = bijector.regularization()`` for flows that have one (the
weighted kinetic-energy / Jacobian terms of continuous flows), else 0. Minimising the expected NLL
``E_p[−log q] = H(p) + KL(p‖q)`` minimises ``KL(p‖q)``. The flow-matching objectives (``cfm``, ``otcfm``,
``rectified``) regress an ODE flow's vector field instead, without solving the ODE; evaluation is the same
held-out NLL either way.

Conditional flows (``context_dim = k > 0``, ``docs/conditioning.md``): the dataset must declare a context of ``k``
features (digits: the one-hot of its 10 labels, :meth:`~flowlab.data.DatasetSpec.encode_context`,
:func:`check_dataset_context`); each batch is drawn with its rows' labels and the loss is
``−(1/B) Σ_i log q(x_i | c_i)``, the held-out NLL ``−mean log q(x | c)`` over the test split at its rows' labels.

Reproducibility: the initial parameters come from the global RNG seeded with ``(seed, "init")``, the batch of
step ``k`` from ``seeding.generator(seed, "batch", k)``, and any randomness inside the flow (Hutchinson probes)
from the global RNG seeded with ``(seed, "step", k)``; parameters, optimizer state and step are checkpointed, so a
resumed run takes exactly the steps the uninterrupted one would have.

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

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from flowlab.checkpoint import (
    config_from,
    generator_states,
    installed,
    load_state,
    read_checkpoint,
    save_checkpoint,
    set_generator_states,
)
from flowlab.checkpoint import load_flow as load_flow  # re-exported: docs/tutorial loads runs from here
from flowlab.data import DatasetSpec
from flowlab.datafiles import resolve_dataset
from flowlab.errors import CheckpointError, DivergenceError, NonFiniteError, OptionError
from flowlab.evaluation import NLL, held_out
from flowlab.flow import Flow
from flowlab.objectives import ObjectiveContext, ObjectiveSpec
from flowlab.ode import continuous_flow
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
    """What the trainer reports after a step: ``test_nll`` only at evaluation steps, ``nfe`` for ODE flows."""

    step: int
    loss: float
    test_nll: NLL | None = None
    nfe: int | None = None
    nfe_backward: int | None = None


class Trainer:
    """A flow, its optimizer and its data stream; :meth:`fit` trains, :meth:`save` checkpoints."""

    def __init__(self, config: TrainConfig, device: str | torch.device = "cpu") -> None:
        self.config = config
        self.dataset: DatasetSpec = resolve_dataset(config.data)  # a registered name or a data file
        self.device = resolve_device(device)
        self.objective: ObjectiveSpec = objective_spec(config.objective)
        objective_options = self.objective.resolve_options(config.objective_options)
        with global_rng(config.seed, "init"):  # initial parameters are a function of the seed too
            self.flow = build_flow(config.flow, self.dataset.dim, config.options, self.dataset.preprocessing())
            self.flow = self.flow.to(self.device)
        self.objective.check_flow(flow_spec(config.flow), self.flow.bijector)
        #: the objective's context; its generator is replaced by the step's before every loss
        self.context = ObjectiveContext(
            generator(config.seed, "objective"), objective_options, self.device, config.seed
        )
        if self.objective.prepare is not None:
            self.objective.prepare(self.flow, self.context)
        #: the objective's loss on a batch as a module (what data-parallel training wraps in DDP)
        self.objective_loss: nn.Module = ObjectiveLoss(self.flow, self.objective, self.context)
        assert config.lr is not None  # TrainConfig resolves None to the objective's default
        self.optimizer = torch.optim.Adam(self.flow.parameters(), lr=config.lr)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        #: the held-out set: the test split of a finite dataset, else eval_size points of the stream (seed, "test");
        #: with the test rows' contexts for a conditional flow
        self.held_out = held_out(
            self.dataset,
            config.eval_size,
            generator(config.seed, "test"),
            context_dim=self.flow.context_dim,
            device=self.device,
        )
        #: where and at which step the last checkpoint was written (or read, for a resumed run)
        self.saved: tuple[str, int] | None = None

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
        """One Adam step on a fresh batch; returns the objective's loss (for ``mle``: NLL + regularization)."""
        x, condition = self.batch()
        self.flow.train()
        self.context.generator = generator(self.config.seed, "objective", self.step)
        with global_rng(self.config.seed, "step", self.step), self._diverges_on_non_finite("the loss", self.step + 1):
            loss = self.objective_loss(x, condition)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def evaluate(self) -> NLL:
        """The held-out NLL on the run's fixed held-out set (:attr:`held_out`)."""
        diverges = self._diverges_on_non_finite("the held-out NLL", self.step)
        with global_rng(self.config.seed, "eval", self.step), diverges:
            return self.held_out.nll(self.flow)

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
    ) -> bool:
        """Train until ``steps`` (default ``config.steps``) steps in total have been taken.

        Evaluates every ``eval_every`` steps and at the end, and calls ``save(self)`` after each evaluation.
        ``should_stop()`` is checked between steps; returns ``False`` if it stopped the run early, ``True`` if the
        run reached its budget. A diverged run raises :class:`DivergenceError` before saving anything.
        """
        target = self.config.steps if steps is None else steps
        first: float | None = None
        while self.step < target:
            if should_stop is not None and should_stop():
                return False
            loss = self.train_step()
            first = loss if first is None and math.isfinite(loss) else first
            self._check("the loss", loss, loss if first is None else first)
            test_nll = None
            if self.step % self.config.eval_every == 0 or self.step == target:
                test_nll = self.evaluate()
                self._check("the held-out NLL", test_nll.nats, loss if first is None else first)
                self.history.append({"step": self.step, "loss": loss, "test_nll": test_nll.nats, "nfe": self.nfe})
            report = StepReport(self.step, loss, test_nll, self.nfe, self.nfe_backward)
            if on_step is not None:
                on_step(report)
            if test_nll is not None and save is not None:
                save(self)
        return True

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
            },
        )
        self.saved = (path, self.step)

    @classmethod
    def resume(cls, path: str, device: str | torch.device = "cpu", changes: Mapping[str, Any] | None = None) -> Trainer:
        """The trainer saved at ``path``, ready to continue with the configuration it was made with, and the
        ``changes`` (fields of :class:`~flowlab.runconfig.TrainConfig`) a resumed run may make
        (:func:`resumed_config`: an :class:`OptionError` for any other)."""
        checkpoint = read_checkpoint(path)
        config = resumed_config(config_from(checkpoint, path), changes or {}, path)
        with installed(path):
            trainer = cls(config, device)
        load_state(trainer.flow, checkpoint, path)
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


def resumed_config(saved: TrainConfig, changes: Mapping[str, Any], path: str) -> TrainConfig:
    """The configuration a run saved at ``path`` with ``saved`` continues with, given ``changes`` (fields of
    :class:`~flowlab.runconfig.TrainConfig`, e.g. what the command line gave): a new total of ``steps`` and new
    values of the :data:`RESUMABLE_OPTIONS` (solver limits and tolerances, which do not change the parameters) are
    taken; a field given with the value it has is fine; any other change is an :class:`OptionError` naming the
    saved value (:func:`refuse_changes`)."""
    config = saved
    if changes.get("steps") is not None:
        config = replace(config, steps=changes["steps"])
    if changes.get("options"):
        config = with_option_changes(config, changes["options"])
    others = {name: value for name, value in changes.items() if name not in ("steps", "options")}
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
