"""What defines a training run (:class:`TrainConfig`) and what is built from it: the flow with its dataset's
preprocessing (:func:`build_flow`), the contexts of a conditional flow (:func:`dataset_context`,
:func:`check_dataset_context`) and the device (:func:`resolve_device`).

Shared by the trainer (:mod:`flowlab.training`), the checkpoint reader (:mod:`flowlab.checkpoint`) and the commands
that load a trained flow, so that a saved run is rebuilt exactly as it was trained.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch

from flowlab.bijector import Bijector
from flowlab.data import DatasetSpec
from flowlab.errors import DeviceError, OptionError
from flowlab.flow import Flow
from flowlab.preprocess import Preprocessed
from flowlab.registry import build, datasets, objective_spec


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


#: the learning-rate schedules of :meth:`TrainConfig.lr_at`
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """What defines a run: the flow (name and options), the dataset, the objective (name and options; checkpoints
    written before objectives existed have none and load as ``mle``), the optimisation (budget, batch, learning
    rate and its schedule, gradient clipping) and when to evaluate and stop. Fields added later take their
    defaults when an older checkpoint is read."""

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
    #: the learning rate over the steps (:meth:`lr_at`): ``constant``, or ``cosine`` decay to 0 at ``steps``
    lr_schedule: str = "constant"
    #: steps of linear warm-up from ``lr / warmup`` to ``lr`` before the schedule (0: none)
    warmup: int = 0
    #: the largest global gradient norm a step takes (``torch.nn.utils.clip_grad_norm_``); ``None``: no clipping
    clip_grad_norm: float | None = None
    #: stop when the validation NLL has not improved for this many evaluations (finite datasets); ``None``: never
    early_stop: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionError(f"train: expected a positive integer {name}, got {value!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise OptionError(f"train: expected a non-negative integer number of warm-up steps, got {self.warmup!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise OptionError(f"train: expected --lr-schedule {' or '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.clip_grad_norm is not None and not (
            isinstance(self.clip_grad_norm, (int, float))
            and math.isfinite(self.clip_grad_norm)
            and self.clip_grad_norm > 0
        ):
            raise OptionError(f"train: expected a positive finite --clip-grad-norm, got {self.clip_grad_norm!r}")
        early = self.early_stop
        if early is not None and (isinstance(early, bool) or not isinstance(early, int) or early < 1):
            raise OptionError(f"train: expected --early-stop PATIENCE >= 1 (evaluations), got {early!r}")
        if self.lr is None:
            object.__setattr__(self, "lr", objective_spec(self.objective).lr)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise OptionError(f"train: expected a positive finite learning rate, got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise OptionError(f"train: expected a non-negative integer seed, got {self.seed!r}")

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based), a function of the configuration only (so a resumed run
        takes the uninterrupted one's rates): ``lr · (step + 1) / warmup`` during the warm-up, then ``lr``
        (``constant``) or ``lr · (1 + cos(π · (step − warmup) / (steps − warmup))) / 2`` (``cosine``, from ``lr``
        to 0 at ``steps``; a run resumed with more ``--steps`` continues on the longer curve)."""
        assert self.lr is not None  # resolved in __post_init__
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.lr_schedule == "constant":
            return self.lr
        progress = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return self.lr * 0.5 * (1 + math.cos(math.pi * progress))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})
