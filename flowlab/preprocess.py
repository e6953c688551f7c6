"""Preprocessing bijectors: fixed maps between a dataset's own units (data space) and the space a flow learns in
(model space), with their log-determinants counted, so that a flow trained in model space is a density of the
original data.

Direction, as everywhere in flowlab (:mod:`flowlab.bijector`): ``forward`` goes towards the data. A preprocessing
bijector's ``forward(y) -> (x, log|det ∂x/∂y|)`` maps model space to data space and ``inverse(x) -> (y,
log|det ∂y/∂x|)`` maps data to model space. :class:`Preprocessed` puts one after a learned bijector, so
``Flow(Preprocessed(learned, transform)).log_prob(x) = log p_z(z) + log|det ∂z/∂y| + log|det ∂y/∂x|``: the change
of variables through both, a density in data units.

- :class:`Standardize`: ``x = mean + std ⊙ y`` (per column), ``log|det ∂y/∂x| = −Σ_j log std_j``.
- :class:`Logit`: ``x = levels · (σ(y) − α) / (1 − 2α)`` for dequantised pixels ``x ∈ [0, levels)``; its inverse
  ``y = logit(α + (1 − 2α) x / levels)`` (RealNVP's logit trick: ``α`` keeps the logit finite at 0 and ``levels``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowlab.bijector import Bijector, context_dim_of
from flowlab.errors import OptionError, ShapeError


class Standardize(Bijector):
    """``x = mean + std ⊙ y`` per coordinate: ``forward`` log-det ``Σ_j log std_j``, ``inverse`` its negative.

    ``mean`` and ``std`` (shape ``[dim]``, every ``std_j > 0``) are buffers: saved with the flow, they follow
    ``.to(device, dtype)``.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        if mean.dim() != 1 or mean.shape != std.shape:
            raise ShapeError(
                f"Standardize: expected mean and std of one shape [dim], got {tuple(mean.shape)} and {tuple(std.shape)}"
            )
        if not bool(torch.isfinite(mean).all()) or not bool((std > 0).all()) or not bool(torch.isfinite(std).all()):
            raise OptionError("Standardize: expected a finite mean and finite positive standard deviations")
        self.dim = int(mean.numel())
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    @classmethod
    def fit(cls, points: Tensor) -> Standardize:
        """The standardisation of ``points`` (``[n, dim]``, ``n >= 2``): column means and sample standard
        deviations."""
        return cls(points.mean(dim=0), points.std(dim=0))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.mean + self.std * z, self.std.log().sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return (x - self.mean) / self.std, -self.std.log().sum().expand(x.shape[0])


class Logit(Bijector):
    """Dequantised pixels ``x ∈ [0, levels)^dim`` <-> logits ``y ∈ R^dim``.

    ``inverse``: ``p = α + (1 − 2α) x / levels``, ``y = log p − log(1 − p)``, and
    ``log|det ∂y/∂x| = Σ_j [log(1 − 2α) − log levels − log p_j − log(1 − p_j)]`` (the Jacobian is diagonal).
    ``forward``: ``x = levels (σ(y) − α) / (1 − 2α)``, ``log|det ∂x/∂y| = Σ_j [log σ(y_j) + log σ(−y_j) +
    log levels − log(1 − 2α)]``, the negative of the former at corresponding points. Samples of a flow lie in
    ``(−α·levels/(1−2α), levels(1−α)/(1−2α))``, a little wider than ``[0, levels)``; ``floor`` and clamp them to
    get pixel values.
    """

    def __init__(self, dim: int, levels: int, alpha: float = 0.05) -> None:
        super().__init__()
        if not 0 < alpha < 0.5:
            raise OptionError(f"Logit: expected 0 < alpha < 0.5, got {alpha!r}")
        if levels < 2:
            raise OptionError(f"Logit: expected at least 2 levels, got {levels!r}")
        self.dim, self.levels, self.alpha = int(dim), int(levels), float(alpha)
        self._scale = math.log(1 - 2 * alpha) - math.log(levels)  # log ∂p/∂x

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = self.levels * (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)
        ladj = (torch.nn.functional.logsigmoid(z) + torch.nn.functional.logsigmoid(-z) - self._scale).sum(dim=-1)
        return x, ladj

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p = self.alpha + (1 - 2 * self.alpha) * x / self.levels
        log_p, log_q = torch.log(p), torch.log1p(-p)
        return log_p - log_q, (self._scale - log_p - log_q).sum(dim=-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, levels={self.levels}, alpha={self.alpha}"


class Preprocessed(Bijector):
    """``x = transform(learned(z))``: a learned bijector followed by a fixed preprocessing map into data space.

    The log-dets add (chain rule): ``log|det ∂x/∂z| = log|det ∂y/∂z| + log|det ∂x/∂y|`` with ``y = learned(z)``.
    What the trainer and the CLI read of a continuous learned bijector (its regulariser, NFE counts, vector field:
    :func:`flowlab.ode.continuous_flow`) is read of ``learned`` (:meth:`unwrapped`); those describe model space.
    Its parameters are those of ``learned`` (the transform has buffers only), under the ``learned.`` prefix of the
    state dict. A conditional ``learned`` (``context_dim > 0``, ``docs/conditioning.md``) makes this one
    conditional: the context goes to ``learned``; the fixed transform does not depend on it.
    """

    def __init__(self, learned: Bijector, transform: Bijector) -> None:
        super().__init__()
        if int(learned.dim) != int(transform.dim):
            raise ShapeError(f"Preprocessed: the flow is {learned.dim}-d, the transform {transform.dim}-d")
        self.dim = int(learned.dim)
        self.context_dim = context_dim_of(learned)
        self.learned = learned
        self.transform = transform

    def unwrapped(self) -> Bijector:
        return self.learned.unwrapped()

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, inner = self.learned(z) if context is None else self.learned(z, context=context)
        x, outer = self.transform(y)
        return x, inner + outer

    def inverse(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, outer = self.transform.inverse(x)
        z, inner = self.learned.inverse(y) if context is None else self.learned.inverse(y, context=context)
        return z, inner + outer
