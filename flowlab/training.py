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

Divergence: a loss or held-out NLL that is NaN/inf, or that exceeds the run's first loss by more than
``EXPLOSION_FACTOR × max(1, |first loss|)``, stops :meth:`Trainer.fit` with a :class:`DivergenceError` naming the
last good checkpoint; a diverged state is never saved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

import torch
from torch import nn

from flowlab.bijector import Bijector
from flowlab.checkpoint import read_checkpoint, save_checkpoint
from flowlab.data import DatasetSpec
from flowlab.datafiles import DataFileError, resolve_dataset
from flowlab.errors import CheckpointError, DeviceError, DivergenceError, NonFiniteError, OptionError, UnknownFlowError
from flowlab.evaluation import NLL, held_out_nll
from flowlab.flow import Flow
from flowlab.objectives import ObjectiveContext, ObjectiveSpec
from flowlab.ode import continuous_flow
from flowlab.preprocess import Preprocessed
from flowlab.registry import build, datasets, flow_spec, objective_spec
from flowlab.seeding import generator, global_rng

#: a loss above ``first + EXPLOSION_FACTOR * max(1, |first|)`` (first: the first loss of a fit) has exploded
EXPLOSION_FACTOR = 1e3
#: options ``--resume`` may change: limits and tolerances of ODE solves and torch.compile, which do not change the
#: parameters
RESUMABLE_OPTIONS = ("max_nfe", "max_seconds", "rtol", "atol", "compile")


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)`` if this machine can allocate on it, else a :class:`DeviceError` saying why."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(
            f"device: expected cpu, cuda or cuda:N (or another torch device type), got {device!r}"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        why = "this torch was built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise DeviceError(f"device {str(device)!r}: CUDA is not available ({why}, torch {torch.__version__}); use cpu")
    try:
        torch.empty(0, device=resolved)
    except Exception as exc:  # an absent backend or device index fails in backend-specific ways
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DeviceError(f"device {str(device)!r}: not usable on this machine ({first})") from None
    return resolved


def build_flow(name: str, dim: int, options: dict[str, Any], transform: Bijector | None = None) -> Flow:
    """``Flow(build(name, dim, **options))``: the registered flow with a standard-normal base; with a dataset's
    preprocessing ``transform`` (model space -> data space, :mod:`flowlab.preprocess`) composed after it, so that
    the flow's density is one of the data in their own units."""
    learned = cast(Bijector, build(name, dim, **options))
    return Flow(learned if transform is None else Preprocessed(learned, transform))


def check_dataset_context(dataset: DatasetSpec, context_dim: int) -> None:
    """An :class:`OptionError` unless ``dataset`` supplies the contexts of a flow conditioned on ``context_dim``
    features: its declared context (:attr:`~flowlab.data.DatasetSpec.context_dim`, the one-hot of its class labels)
    has exactly that many. Nothing to check for an unconditional flow (``context_dim = 0``)."""
    if not context_dim or dataset.context_dim == context_dim:
        return
    if not dataset.context_dim:
        having = [f"{name} ({spec.context_dim} classes)" for name, spec in datasets().items() if spec.context_dim]
        raise OptionError(
            f"the flow is conditional (context_dim {context_dim}) but dataset {dataset.name!r} has no context (class "
            f"labels); datasets with one: {', '.join(having) or 'none installed'}. Train it without -o context_dim"
        )
    raise OptionError(
        f"dataset {dataset.name!r}'s context is the one-hot of its {dataset.context_dim} class labels: expected a "
        f"flow with -o context_dim={dataset.context_dim}, got context_dim {context_dim}"
    )


def dataset_context(dataset: DatasetSpec, labels: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """The conditioning contexts of ``labels`` (``[n]`` class labels of ``dataset``), on ``device``."""
    return dataset.encode_context(labels).to(device)


@dataclass(frozen=True)
class TrainConfig:
    """What defines a run: the flow (name and options), the dataset, the objective (name and options; checkpoints
    written before objectives existed have none and load as ``mle``), and the optimisation budget."""

    flow: str
    data: str
    options: dict[str, Any] = field(default_factory=dict)
    objective: str = "mle"
    objective_options: dict[str, Any] = field(default_factory=dict)
    steps: int = 2000
    batch_size: int = 256
    #: ``None``: the objective's own default (``ObjectiveSpec.lr``: 1e-3 for mle), resolved when the config is made
    lr: float | None = None
    seed: int = 0
    eval_every: int = 200
    eval_size: int = 4096

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionError(f"train: expected a positive integer {name}, got {value!r}")
        if self.lr is None:
            object.__setattr__(self, "lr", objective_spec(self.objective).lr)
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
        self.dataset: DatasetSpec = resolve_dataset(config.data)  # a registered name or a data file
        self.device = resolve_device(device)
        self.objective: ObjectiveSpec = objective_spec(config.objective)
        objective_options = self.objective.resolve_options(config.objective_options)
        with global_rng(config.seed, "init"):  # initial parameters are a function of the seed too
            self.flow = build_flow(config.flow, self.dataset.dim, config.options, self.dataset.preprocessing())
            self.flow = self.flow.to(self.device)
        self.objective.check_flow(flow_spec(config.flow), self.flow.bijector)
        check_dataset_context(self.dataset, self.flow.context_dim)
        #: the objective's context; its generator is replaced by the step's before every loss
        self.context = ObjectiveContext(
            generator(config.seed, "objective"), objective_options, self.device, config.seed
        )
        if self.objective.prepare is not None:
            self.objective.prepare(self.flow, self.context)
        assert config.lr is not None  # TrainConfig resolves None to the objective's default
        self.optimizer = torch.optim.Adam(self.flow.parameters(), lr=config.lr)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        #: the held-out set: the test split of a finite dataset, else eval_size points of the stream (seed, "test")
        self.test_points = self.dataset.test_points(config.eval_size, generator(config.seed, "test")).to(self.device)
        #: a conditional flow's contexts of the test points (their labels, encoded); None for an unconditional one
        self.test_context = (
            dataset_context(self.dataset, self.dataset.test_labels(), self.device) if self.flow.context_dim else None
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
            if condition is None:
                loss = self.objective.loss(self.flow, x, self.context)
            else:
                loss = self.objective.loss(self.flow, x, self.context, condition=condition)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def evaluate(self) -> NLL:
        """The held-out NLL on the run's fixed test set (``eval_size`` points from the stream ``(seed, "test")``)."""
        diverges = self._diverges_on_non_finite("the held-out NLL", self.step)
        with global_rng(self.config.seed, "eval", self.step), diverges:
            return held_out_nll(self.flow, self.test_points, context=self.test_context)

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
    def resume(
        cls,
        path: str,
        device: str | torch.device = "cpu",
        steps: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> Trainer:
        """The trainer saved at ``path``, ready to continue (optionally with a new total ``steps``).

        ``options`` may change the :data:`RESUMABLE_OPTIONS` (solver limits and tolerances); giving any other
        option a new value raises :class:`OptionError`.
        """
        checkpoint = read_checkpoint(path)
        config = config_from(checkpoint, path)
        if steps is not None:
            config = TrainConfig.from_dict({**config.to_dict(), "steps": steps})
        if options:
            config = with_option_changes(config, options)
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
        trainer.saved = (path, trainer.step)
        return trainer


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
    except DataFileError as exc:
        raise CheckpointError(f"{path}: the checkpoint's data file: {exc}") from None
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
    target = resolve_device(device)
    checkpoint = read_checkpoint(path)
    config = config_from(checkpoint, path)
    with _installed(path):
        flow = build_flow(config.flow, checkpoint["dim"], config.options, resolve_dataset(config.data).preprocessing())
    load_state(flow, checkpoint, path)
    return flow.to(target).eval(), config, checkpoint
