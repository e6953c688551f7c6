"""A :class:`~flowlab.flow.Flow` seen as a ``torch.distributions.Distribution``, for code written against torch's
distributions (Pyro, zuko, ``torch.distributions.kl``-style helpers): ``Flow.as_distribution()``.

Shapes follow torch's conventions: ``batch_shape == ()``, ``event_shape == (dim,)``; ``sample(sample_shape)`` and
``rsample(sample_shape)`` return ``sample_shape + (dim,)``; ``log_prob(value)`` takes any ``(..., dim)`` and returns
``(...)``. The view shares the flow's parameters: gradients of ``rsample`` and ``log_prob`` reach them.
A conditional flow is viewed at one context: ``flow.as_distribution(context=c)`` with ``c`` of shape
``[context_dim]`` is the distribution ``p(x | c)`` (``docs/conditioning.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from flowlab.errors import ShapeError

if TYPE_CHECKING:
    from flowlab.flow import Flow


class FlowDistribution(Distribution):
    """``x = bijector.forward(z)``, ``z ~ flow.base``, as a ``Distribution`` over ``R^dim``.

    ``validate_args`` as in torch (default: ``Distribution``'s global setting): when on, ``log_prob`` checks that
    values are in the support (no NaN); the event shape is checked always, since a wrong one cannot be reshaped.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.real_vector

    def __init__(self, flow: Flow, validate_args: bool | None = None, context: Tensor | None = None) -> None:
        self.flow = flow
        if context is not None and flow.context_dim and (not isinstance(context, Tensor) or context.dim() != 1):
            given = list(context.shape) if isinstance(context, Tensor) else type(context).__name__
            raise ShapeError(
                f"FlowDistribution: expected one context of shape [{flow.context_dim}] (the distribution at that "
                f"context), got {given}"
            )
        flow.context_for(context, 1, "FlowDistribution")  # presence, shape, dtype and device, before any draw
        self.context = context
        super().__init__(torch.Size(), torch.Size([flow.dim]), validate_args=validate_args)

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        """Reparametrised samples exist when the base distribution has them (the standard normal does)."""
        return bool(self.flow.base.has_rsample)

    def rsample(self, sample_shape: Any = ()) -> Tensor:
        """Samples of shape ``sample_shape + (dim,)``, differentiable with respect to the flow's parameters."""
        shape = torch.Size(sample_shape)
        n = shape.numel()
        z = self.flow.base.rsample(torch.Size([n]))
        context = self.flow.context_for(self.context, n, "FlowDistribution.rsample")
        x = (self.flow.bijector(z) if context is None else self.flow.bijector(z, context=context))[0] if n else z
        return x.reshape(*shape, self.flow.dim)

    def sample(self, sample_shape: Any = ()) -> Tensor:
        """Like :meth:`rsample`, without a graph (``torch.no_grad``; ODE flows still integrate)."""
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        """``log p(value)`` for ``value`` of shape ``(..., dim)``; returns ``(...)``."""
        if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[-1] != self.flow.dim:
            given = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ShapeError(
                f"FlowDistribution.log_prob: expected a value of shape (..., {self.flow.dim}) (event_shape "
                f"({self.flow.dim},)), got {given}"
            )
        if self._validate_args:
            self._validate_sample(value)
        flat = value.reshape(-1, self.flow.dim)
        return self.flow.log_prob(flat, self.context).reshape(value.shape[:-1])

    def __repr__(self) -> str:
        return f"FlowDistribution(dim={self.flow.dim}, bijector={type(self.flow.bijector).__name__})"
