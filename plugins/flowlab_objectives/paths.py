"""The conditional path every flow-matching objective here regresses on, and the regression itself.

Convention (flowlab's ODE flows, :mod:`flowlab.ode.bijector`): t = 0 is the base, t = 1 the data. For a pair
``(x_0, x_1)`` of a base point and a data point, Lipman et al.'s (2023) Gaussian-to-point path with width
``σ = σ_min`` is::

    x_t = (1 − (1 − σ) t) x_0 + t x_1,        u_t = d x_t / dt = x_1 − (1 − σ) x_0

(at σ = 0 the straight line ``(1 − t) x_0 + t x_1`` with constant velocity ``x_1 − x_0``: rectified flow's
interpolation). The loss is ``E_{t ~ U[0,1], (x_0, x_1)} ‖f(t, x_t) − u_t‖²``.

The field lives in model space: for a flow with a dataset's preprocessing (``flowlab.preprocess.Preprocessed``,
``x = transform(learned(z))``) the data points are first mapped back, ``x_1 = transform⁻¹(x)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from flowlab import Flow
from flowlab.objectives import ObjectiveContext
from flowlab.ode import continuous_flow
from flowlab.preprocess import Preprocessed


def model_points(flow: Flow, x: Tensor) -> Tensor:
    """``x`` in the space of the learned field: ``transform⁻¹(x)`` behind a preprocessing map, else ``x``."""
    bijector = flow.bijector
    if isinstance(bijector, Preprocessed):
        with torch.no_grad():
            return bijector.transform.inverse(x)[0]
    return x


def conditional_path(x0: Tensor, x1: Tensor, t: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """``(x_t, u_t)`` of the path above for per-row times ``t`` (``[batch]``)."""
    s = t.unsqueeze(-1)
    return (1 - (1 - sigma) * s) * x0 + s * x1, x1 - (1 - sigma) * x0


def base_points(like: Tensor, context: ObjectiveContext) -> Tensor:
    """``x_0 ~ N(0, I)`` (the flows' standard-normal base) of ``like``'s shape, from the step's generator."""
    z = torch.randn(tuple(like.shape), generator=context.generator, dtype=torch.float64)
    return z.to(device=like.device, dtype=like.dtype)


def regression_loss(flow: Flow, x0: Tensor, x1: Tensor, context: ObjectiveContext, sigma: float) -> Tensor:
    """``mean_i ‖f(t_i, x_t,i) − u_t,i‖²`` with ``t_i ~ U[0, 1]`` drawn from the step's generator."""
    t = torch.rand(x0.shape[0], generator=context.generator, dtype=torch.float64).to(x0.device, x0.dtype)
    xt, ut = conditional_path(x0, x1, t, sigma)
    ode = continuous_flow(flow.bijector)
    assert ode is not None, "ObjectiveSpec.check_flow refuses a flow without a vector field"
    field: Any = ode.field
    return (field(t, xt) - ut).pow(2).sum(-1).mean()
