"""``DatasetSpec``: a dataset registered by a plugin through ``flowlab_register_datasets``.

Two kinds of dataset share the record:

- *streams* (the 2D toys): a sampler of i.i.d. points; a run's held-out set is drawn from the stream too.
- *finite* datasets (digits, a file of rows): a fixed :class:`Split` into train, validation and test rows, loaded
  lazily (``split``). Their sampler draws training rows uniformly **with replacement** (so a step's batch is i.i.d.
  from the empirical distribution of the train split, as for a stream), adding ``U(0, 1)`` noise per coordinate
  where the rows are integers to dequantise; :meth:`DatasetSpec.held_out_points` is the whole validation or test
  split (dequantised by the generator it is given), never rows seen in training. The trainer scores the validation
  split (to keep the best checkpoint and stop early); the test split is for ``flowlab eval`` (and ``compare``'s
  final score). The split is a function of the data alone, not of a run's seed.

A dataset may also bring a fixed ``transform`` (a :class:`~flowlab.bijector.Bijector` from model space to data
space, :mod:`flowlab.preprocess`): the trainer learns in model space and composes the transform after the flow, so
``log_prob``, ``eval``, ``sample`` and ``plot`` work in data units and the NLL counts the transform's log-det.

A finite dataset may declare a *context* for conditional flows (``docs/conditioning.md``): class labels
``0..num_classes-1`` per row, which :meth:`DatasetSpec.encode_context` turns into the flow's context, the one-hot
vector ``e_label ∈ R^num_classes``; so a flow conditioned on them is built with ``context_dim = num_classes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from flowlab.errors import ContextError, OptionError

if TYPE_CHECKING:
    from flowlab.bijector import Bijector

#: shares of the rows of a finite dataset held out for testing and for validation (at least MIN_HELD_OUT rows each)
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.1
#: the fewest rows of each part of a split (train, validation, test): a standard error needs two
MIN_HELD_OUT = 2
#: the parts of a finite dataset's split, in the order of :meth:`Split.of`'s permutation
PARTS = ("train", "validation", "test")
#: seed of the permutation that splits a finite dataset (fixed: the split belongs to the data, not to a run)
SPLIT_SEED = 0


@dataclass(frozen=True)
class Split:
    """A finite dataset's fixed train/validation/test split: float32 CPU rows ``[n, dim]``, optional per-row context
    (class labels, ``[n]`` int64) and whether the rows are integers to dequantise with ``U(0, 1)`` noise."""

    train: Tensor
    validation: Tensor
    test: Tensor
    train_context: Tensor | None = None
    validation_context: Tensor | None = None
    test_context: Tensor | None = None
    dequantize: bool = False

    @classmethod
    def of(cls, points: Tensor, context: Tensor | None = None, *, dequantize: bool = False) -> Split:
        """Split ``points`` by a fixed random permutation (seed :data:`SPLIT_SEED`): the last
        ``n_test = max(MIN_HELD_OUT, round(TEST_FRACTION · n))`` rows of the permuted order are the test rows, the
        ``n_validation = max(MIN_HELD_OUT, round(VALIDATION_FRACTION · n))`` before them the validation rows, the
        rest (at least ``MIN_HELD_OUT``) the training rows. digits (1797 rows): 1258 / 180 / 359."""
        parts = split_indices(len(points))
        points = points.to(torch.float32)
        train, validation, test = (points[part] for part in parts)
        if context is None:
            return cls(train, validation, test, dequantize=dequantize)
        labels = [context[part] for part in parts]
        return cls(train, validation, test, labels[0], labels[1], labels[2], dequantize=dequantize)

    def part(self, name: str) -> tuple[Tensor, Tensor | None]:
        """The rows of part ``name`` (one of :data:`PARTS`) and their labels (``None`` without a context)."""
        if name not in PARTS:
            raise OptionError(f"expected a part of the split ({', '.join(PARTS)}), got {name!r}")
        rows: Tensor = getattr(self, name)
        labels: Tensor | None = getattr(self, f"{name}_context")
        return rows, labels

    def rows(self, n: int, generator: torch.Generator) -> Tensor:
        """Indices of ``n`` training rows drawn uniformly with replacement."""
        return torch.randint(len(self.train), (n,), generator=generator)

    def noisy(self, points: Tensor, generator: torch.Generator) -> Tensor:
        """``points + U(0, 1)`` per coordinate where the split dequantises, else ``points``."""
        return points + torch.rand(points.shape, generator=generator) if self.dequantize else points


@dataclass(frozen=True)
class DatasetSpec:
    """A density to learn, known through a sampler (and, where known, its exact log-density and entropy).

    - ``name``: unique registry name, e.g. ``"8gaussians"``.
    - ``summary``: one line for listings.
    - ``sampler``: ``sampler(n, generator) -> Tensor[n, dim]`` (float32, CPU); all randomness from ``generator``.
    - ``dim``: the dimension of the points.
    - ``entropy``: the differential entropy ``H(p) = −E_p[log p(x)]`` in nats, or ``None`` where not known. No model
      can reach an expected test NLL below it (``E_p[−log q] = H(p) + KL(p‖q) ≥ H(p)``), so reports show the gap.
    - ``entropy_source``: how the entropy was obtained (closed form, quadrature, Monte Carlo), or why it is unknown.
    - ``log_prob``: the exact ``log p(x)`` for ``x`` of shape ``[n, dim]``, or ``None`` where not known.
    - ``description``: Markdown: how points are generated (centres, radii, noise, scale).
    - ``split``: for a finite dataset, a loader of its fixed :class:`Split` (cached by the plugin; may raise
      :class:`~flowlab.errors.MissingDependencyError`); ``None`` for a stream.
    - ``transform``: a factory of the fixed preprocessing bijector (model space -> data space), or ``None``.
    - ``discrete``: whether the data are integers dequantised by ``U(0, 1)`` noise, so that bits/dim of the
      dequantised points bound the discrete data's code length (``−log₂ P(k) ≤ E_u[−log₂ q(k + u)]``).
    - ``num_classes``: for a finite dataset whose split has per-row class labels ``0..num_classes-1``, their number
      (the ``context_dim`` of a flow conditioned on them, :meth:`encode_context`); 0: no context.
    """

    name: str
    summary: str
    sampler: Callable[[int, torch.Generator], Tensor]
    dim: int
    entropy: float | None = None
    entropy_source: str = ""
    log_prob: Callable[[Tensor], Tensor] | None = None
    description: str = ""
    split: Callable[[], Split] | None = None
    transform: Callable[[], Bijector] | None = None
    discrete: bool = False
    num_classes: int = 0

    @property
    def context_dim(self) -> int:
        """The context features a flow conditioned on this dataset takes: ``num_classes`` (0: no context)."""
        return self.num_classes

    def encode_context(self, labels: Tensor) -> Tensor:
        """The flows' context of class labels ``[n]`` (integers ``0..num_classes-1``): one-hot rows
        ``[n, num_classes]``, float32, on the labels' device. The one place labels become contexts (training,
        evaluation, ``sample --label``, plots); a :class:`~flowlab.errors.ContextError` where the dataset has no
        context or a label is out of range."""
        if not self.num_classes:
            raise ContextError(f"{self.name}: this dataset has no context (class labels)")
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise ContextError(f"{self.name}: expected integer class labels, got dtype {labels.dtype}")
        outside = labels[(labels < 0) | (labels >= self.num_classes)]
        if outside.numel():
            raise ContextError(f"{self.name}: expected labels 0..{self.num_classes - 1}, got {int(outside[0])}")
        return torch.nn.functional.one_hot(labels.long(), self.num_classes).to(torch.float32)

    def test_labels(self) -> Tensor:
        """The class labels of the test split, row for row with :meth:`test_points` (``[n]`` int64)."""
        return self.labels("test")

    def labels(self, part: str) -> Tensor:
        """The class labels of a part of the split (``"train"``, ``"validation"``, ``"test"``), row for row with
        :meth:`held_out_points` (``[n]`` int64); a :class:`~flowlab.errors.ContextError` without a context."""
        labels = self.split().part(part)[1] if self.split is not None else None
        if labels is None:
            raise ContextError(f"{self.name}: this dataset has no context (class labels)")
        return labels

    @property
    def finite(self) -> bool:
        """Whether the dataset is a fixed set of rows (with a train/test split) rather than a stream."""
        return self.split is not None

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` independent points, shape ``[n, dim]``, drawn with ``generator`` only (no global RNG state)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise OptionError(f"{self.name}: expected a positive integer number of points, got {n!r}")
        return self.sampler(n, generator)

    def test_points(self, n: int, generator: torch.Generator) -> Tensor:
        """The held-out points: a finite dataset's whole test split (``n`` is ignored; dequantised with
        ``generator`` where the data are integers), else ``n`` fresh points from the stream."""
        return self.held_out_points("test", n, generator)

    def held_out_points(self, part: str, n: int, generator: torch.Generator) -> Tensor:
        """A finite dataset's whole ``part`` of the split (``"train"``, ``"validation"`` or ``"test"``; ``n`` is
        ignored; dequantised with ``generator`` where the data are integers), else ``n`` fresh points from the
        stream (a stream has no parts: every draw is new)."""
        if self.split is None:
            return self.sample(n, generator)
        split = self.split()
        return split.noisy(split.part(part)[0], generator)

    def sample_with_context(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` training points and their context (class labels), for conditional flows; an
        :class:`~flowlab.errors.OptionError` where the dataset has none."""
        split = self.split() if self.split is not None else None
        if split is None or split.train_context is None:
            raise OptionError(f"{self.name}: this dataset has no context (class labels)")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise OptionError(f"{self.name}: expected a positive integer number of points, got {n!r}")
        rows = split.rows(n, generator)
        return split.noisy(split.train[rows], generator), split.train_context[rows]

    def preprocessing(self) -> Bijector | None:
        """A fresh instance of the dataset's preprocessing bijector, or ``None``."""
        return None if self.transform is None else self.transform()


def split_indices(n: int) -> tuple[Tensor, Tensor, Tensor]:
    """The row indices of the train, validation and test parts of ``n`` rows (see :meth:`Split.of`)."""
    n_test = max(MIN_HELD_OUT, round(TEST_FRACTION * n))
    n_validation = max(MIN_HELD_OUT, round(VALIDATION_FRACTION * n))
    n_train = n - n_test - n_validation
    if n_train < MIN_HELD_OUT:
        raise OptionError(f"expected at least {min_rows()} rows ({split_sizes_text()}), got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return order[:n_train], order[n_train : n_train + n_validation], order[n_train + n_validation :]


def min_rows() -> int:
    """The fewest rows a finite dataset can have: :data:`MIN_HELD_OUT` in each part of its split."""
    return MIN_HELD_OUT * len(PARTS)


def split_sizes_text() -> str:
    """How a finite dataset's rows are split, for messages."""
    return (
        f"{MIN_HELD_OUT} each to train on, validate and test at least; {TEST_FRACTION:.0%} test, "
        f"{VALIDATION_FRACTION:.0%} validation"
    )


def finite_dataset(
    name: str,
    summary: str,
    dim: int,
    split: Callable[[], Split],
    *,
    transform: Callable[[], Bijector] | None = None,
    discrete: bool = False,
    num_classes: int = 0,
    description: str = "",
) -> DatasetSpec:
    """A :class:`DatasetSpec` over a fixed split whose sampler draws training rows with replacement (and
    dequantises them where the split says so); entropy unknown."""

    def sampler(n: int, generator: torch.Generator) -> Tensor:
        loaded = split()
        return loaded.noisy(loaded.train[loaded.rows(n, generator)], generator)

    return DatasetSpec(
        name=name,
        summary=summary,
        sampler=sampler,
        dim=dim,
        entropy=None,
        entropy_source="not known: a finite sample of an unknown density",
        description=description,
        split=split,
        transform=transform,
        discrete=discrete,
        num_classes=num_classes,
    )
