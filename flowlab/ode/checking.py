"""Helpers for property checks of ODE flows: build a flow for a check case, with perturbed parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from flowlab.spec import FlowSpec


def build_for_check(
    spec: FlowSpec,
    dim: int,
    seed: int,
    options: Mapping[str, Any],
    *,
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
    scale: float = 0.3,
    **wanted: Any,
) -> Any:
    """``spec.build(dim, ...)`` with ``options``, then ``wanted`` where ``spec`` has such options (a check asks for
    e.g. tight tolerances or the exact trace), its parameters perturbed by ``N(0, scale²)`` noise from ``seed`` (so
    a small initial field does not make a wrong log-det look right), moved to ``dtype``/``device``.

    Typed ``Any``: checks read ODE attributes (``nfe``, ``trace_estimator``) that a third-party bijector may lack,
    and test for them first.
    """
    chosen = dict(options)
    chosen.update({name: value for name, value in wanted.items() if name in spec.options})
    torch.manual_seed(seed)
    module = spec.build(dim, **spec.resolve_options(chosen))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)
    return module.to(device=device, dtype=dtype)


def points(batch: int, dim: int, seed: int, scale: float, like: nn.Module | Tensor) -> Tensor:
    """``[batch, dim]`` standard normal points times ``scale`` from ``seed``, on the dtype/device of ``like``."""
    reference = like if isinstance(like, Tensor) else next(like.parameters())
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, dim, generator=generator, dtype=torch.float64) * scale
    return x.to(device=reference.device, dtype=reference.dtype)
