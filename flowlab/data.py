"""``DatasetSpec``: a dataset registered by a plugin through ``flowlab_register_datasets``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowlab.errors import OptionError
from flowlab.plugins import RECORD_TYPES


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
    """

    name: str
    summary: str
    sampler: Callable[[int, torch.Generator], Tensor]
    dim: int
    entropy: float | None = None
    entropy_source: str = ""
    log_prob: Callable[[Tensor], Tensor] | None = None
    description: str = ""

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` independent points, shape ``[n, dim]``, drawn with ``generator`` only (no global RNG state)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise OptionError(f"{self.name}: expected a positive integer number of points, got {n!r}")
        return self.sampler(n, generator)


RECORD_TYPES["datasets"] = DatasetSpec
