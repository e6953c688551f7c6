"""scikit-learn's ``load_digits``: 1797 handwritten digits, 8×8 pixels of 17 grey levels (integers 0..16), with
their class labels 0..9, as a finite dataset of dimension 64.

- Split: fixed (:meth:`flowlab.data.Split.of`: 1258 train rows, 180 validation rows, 359 test rows, independent of a
  run's seed).
- Dequantisation: a training batch is rows drawn with replacement plus ``u ~ U(0, 1)^64``, so the model sees
  ``v = k + u ∈ [0, 17)^64``; held-out points are the test rows dequantised once by the run's test generator.
- Transform (:class:`flowlab.preprocess.Logit`, ``α = 0.05``): the flow learns ``y = logit(α + (1 − 2α) v/17)``;
  its log-det is counted, so ``log q`` is the density of ``v`` in pixel units.
- Bits/dim, as papers report them: ``−log q(k + u) / (64 ln 2)``, the NLL of the dequantised pixels in their own
  units (0–17) divided by ``64 ln 2``. Its mean over ``u`` bounds the discrete code length:
  ``−log₂ P(k) ≤ E_u[−log₂ q(k + u)]`` (Theis et al. 2016). Uniform noise over 17 levels alone (no model) scores
  ``log₂ 17 = 4.09`` bits/dim.
- Context: the class labels (``DatasetSpec.sample_with_context``), for conditional flows: one-hot vectors of the
  10 classes (``DatasetSpec.encode_context``), so ``flowlab train --data digits -o context_dim=10``.

Needs scikit-learn (the ``data`` extra); it is imported when the data are first used, not when registered.
"""

from __future__ import annotations

from functools import cache

import torch

from flowlab import MissingDependencyError
from flowlab.data import DatasetSpec, Split, finite_dataset
from flowlab.errors import install_hint
from flowlab.preprocess import Logit

LEVELS = 17  # grey levels 0..16
DIM = 64
ALPHA = 0.05


@cache
def split() -> Split:
    """The digits' fixed train/test split with labels (loads scikit-learn on first use)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingDependencyError(
            f"the digits dataset needs scikit-learn, which is not installed: {install_hint('data')}"
        ) from None
    digits = load_digits()
    points = torch.as_tensor(digits.data, dtype=torch.float32)
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    return Split.of(points, labels, dequantize=True)


def transform() -> Logit:
    return Logit(DIM, LEVELS, ALPHA)


SPEC: DatasetSpec = finite_dataset(
    "digits",
    "scikit-learn's 8×8 handwritten digits (64-d, 17 grey levels), dequantised, logit-transformed; labels as context",
    DIM,
    split,
    transform=transform,
    discrete=True,
    num_classes=10,
    description=__doc__ or "",
)
