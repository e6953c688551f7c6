"""Fit a flow to a registered dataset by maximum likelihood, with exact resume.

Each step draws a fresh batch ``x_1..x_B ~ p`` and takes an Adam step on
``loss = −(1/B) Σ_i log q(x_i) + R``, where ``R = bijector.regularization()`` for flows that have one (the
weighted kinetic-energy / Jacobian terms of continuous flows), else 0. Minimising the expected NLL
``E_p[−log q] = H(p) + KL(p‖q)`` minimises ``KL(p‖q)``.

Reproducibility: the initial parameters come from the global RNG seeded with ``(seed, "init")``, the batch of
step ``k`` from ``seeding.generator(seed, "batch", k)``, and any randomness inside the flow (Hutchinson probes)
from the global RNG seeded with ``(seed, "step", k)``; parameters, optimizer state and step are checkpointed, so a
resumed run takes exactly the steps the uninterrupted one would have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
from torch import nn

from flowlab.bijector import Bijector
from flowlab.checkpoint import read_checkpoint, save_checkpoint
from flowlab.data import DatasetSpec
from flowlab.errors import CheckpointError, OptionError, UnknownFlowError
from flowlab.evaluation import NLL, held_out_nll
from flowlab.flow import Flow
from flowlab.registry import build, dataset_spec
from flowlab.seeding import generator, global_rng


def build_flow(name: str, dim: int, options: dict[str, Any]) -> Flow:
    """``Flow(build(name, dim, **options))``: the registered flow with a standard-normal base."""
    return Flow(cast(Bijector, build(name, dim, **options)))


@dataclass(frozen=True)
class TrainConfig:
    """What defines a run: the flow (name and options), the dataset, and the optimisation budget."""

    flow: str
    data: str
    options: dict[str, Any] = field(default_factory=dict)
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    eval_every: int = 200
    eval_size: int = 4096

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionError(f"train: expected a positive integer {name}, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise OptionError(f"train: expected a positive finite learning rate, got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise OptionError(f"train: expected a non-negative integer seed, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


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
        self.dataset: DatasetSpec = dataset_spec(config.data)
        self.device = torch.device(device)
        with global_rng(config.seed, "init"):  # initial parameters are a function of the seed too
            self.flow = build_flow(config.flow, self.dataset.dim, config.options).to(self.device)
        self.optimizer = torch.optim.Adam(self.flow.parameters(), lr=config.lr)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.test_points = self.draw(config.eval_size, "test")

    # -- data ----------------------------------------------------------------------------------------------------
    def draw(self, n: int, *keys: object) -> torch.Tensor:
        """``n`` points of the dataset from the stream ``(seed, *keys)``, on the flow's device."""
        return self.dataset.sample(n, generator(self.config.seed, *keys)).to(self.device)

    # -- training ------------------------------------------------------------------------------------------------
    def train_step(self) -> float:
        """One Adam step on a fresh batch; returns the loss (NLL + regularization)."""
        x = self.draw(self.config.batch_size, "batch", self.step)
        self.flow.train()
        with global_rng(self.config.seed, "step", self.step):
            loss = -self.flow.log_prob(x).mean()
            regularization = getattr(self.flow.bijector, "regularization", None)
            if callable(regularization):
                loss = loss + regularization()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def evaluate(self) -> NLL:
        """The held-out NLL on the run's fixed test set (``eval_size`` points from the stream ``(seed, "test")``)."""
        with global_rng(self.config.seed, "eval", self.step):
            return held_out_nll(self.flow, self.test_points)

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
        run reached its budget.
        """
        target = self.config.steps if steps is None else steps
        while self.step < target:
            if should_stop is not None and should_stop():
                return False
            loss = self.train_step()
            if not math.isfinite(loss):
                raise OptionError(
                    f"train: the loss became {loss} at step {self.step}; try a smaller --lr (now {self.config.lr})"
                )
            test_nll = None
            if self.step % self.config.eval_every == 0 or self.step == target:
                test_nll = self.evaluate()
                self.history.append({"step": self.step, "loss": loss, "test_nll": test_nll.nats, "nfe": self.nfe})
            report = StepReport(self.step, loss, test_nll, self.nfe, getattr(self.flow.bijector, "nfe_backward", None))
            if on_step is not None:
                on_step(report)
            if test_nll is not None and save is not None:
                save(self)
        return True

    @property
    def nfe(self) -> int | None:
        """Vector-field evaluations of the last ODE solve (ODE flows only)."""
        return getattr(self.flow.bijector, "nfe", None)

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

    @classmethod
    def resume(cls, path: str, device: str | torch.device = "cpu", steps: int | None = None) -> Trainer:
        """The trainer saved at ``path``, ready to continue (optionally with a new total ``steps``)."""
        checkpoint = read_checkpoint(path)
        config = config_from(checkpoint, path)
        if steps is not None:
            config = TrainConfig.from_dict({**config.to_dict(), "steps": steps})
        with _installed(path):
            trainer = cls(config, device)
        load_state(trainer.flow, checkpoint, path)
        try:
            trainer.optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: the optimizer state does not fit the flow: {exc}") from None
        set_generator_states(trainer.flow, checkpoint["generators"], path)
        trainer.step = checkpoint["step"]
        trainer.history = list(checkpoint["history"])
        return trainer


def generator_states(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state of every ``torch.Generator`` a submodule holds as an attribute (e.g. the generator an ODE flow
    draws its Hutchinson probes from), keyed ``"submodule.attribute"``. Not part of ``state_dict``, yet needed for
    an exact resume."""
    return {
        f"{name}.{attribute}": value.get_state()
        for name, submodule in module.named_modules()
        for attribute, value in vars(submodule).items()
        if isinstance(value, torch.Generator)
    }


def set_generator_states(module: nn.Module, states: dict[str, torch.Tensor], path: str) -> None:
    """Restore what :func:`generator_states` saved (:class:`CheckpointError` if the generators do not match)."""
    current = generator_states(module)
    if set(current) != set(states):
        raise CheckpointError(
            f"{path}: the checkpoint has random generators {sorted(states)}, the installed flow {sorted(current)}"
        )
    submodules = dict(module.named_modules())
    for key, state in states.items():
        name, attribute = key.rsplit(".", 1)
        getattr(submodules[name], attribute).set_state(state)


def config_from(checkpoint: dict[str, Any], path: str) -> TrainConfig:
    """The :class:`TrainConfig` stored in a checkpoint (:class:`CheckpointError` if it is not a valid one)."""
    try:
        return TrainConfig.from_dict(checkpoint["config"])
    except (TypeError, OptionError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint config: {exc}") from None


@contextmanager
def _installed(path: str) -> Iterator[None]:
    """Turn a missing flow/dataset or an option the installed flow rejects into a :class:`CheckpointError`."""
    try:
        yield
    except UnknownFlowError as exc:
        raise CheckpointError(f"{path}: the checkpoint needs a flow or dataset that is not installed: {exc}") from None
    except OptionError as exc:
        raise CheckpointError(f"{path}: the checkpoint's options are not valid for the installed flow: {exc}") from None


def load_state(flow: Flow, checkpoint: dict[str, Any], path: str) -> None:
    """Load the checkpoint's parameters into ``flow`` (:class:`CheckpointError` if they do not fit)."""
    try:
        flow.load_state_dict(checkpoint["model"])
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: the saved parameters do not fit the installed flow ({first})") from None


def load_flow(path: str, device: str | torch.device = "cpu") -> tuple[Flow, TrainConfig, dict[str, Any]]:
    """The trained flow saved at ``path`` (in eval mode), its config and the raw checkpoint."""
    checkpoint = read_checkpoint(path)
    config = config_from(checkpoint, path)
    with _installed(path):
        flow = build_flow(config.flow, checkpoint["dim"], config.options)
    load_state(flow, checkpoint, path)
    return flow.to(device).eval(), config, checkpoint
