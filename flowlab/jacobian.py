"""The Jacobian of a flow at a point, for teaching: its structure and its log-determinant two ways."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class JacobianView:
    """``∂x/∂z`` of a bijector at one point ``z``, with ``log|det|`` from the flow and from ``torch.linalg.slogdet``."""

    point: Tensor
    matrix: Tensor
    logdet_flow: float
    logdet_autograd: float
    condition: float

    @property
    def well_conditioned(self) -> bool:
        """Whether ``slogdet`` of the dense matrix can be trusted to ~1e-6 (condition number below 1e10)."""
        return self.condition < 1e10

    @property
    def zero_pattern(self) -> Tensor:
        """``True`` where the entry is exactly zero (structure, not an accident of rounding)."""
        return self.matrix == 0


def jacobian_view(bijector: nn.Module, point: Tensor, context: Tensor | None = None) -> JacobianView:
    """Evaluate the forward Jacobian ``∂x/∂z`` of ``bijector`` at ``point`` (shape ``[dim]``) in float64; a
    conditional bijector at ``context`` (shape ``[context_dim]``, held fixed: the Jacobian is in ``z`` only).

    The bijector and the point are moved to float64 on a copy, so the caller's module is not changed.
    """
    module = copy.deepcopy(bijector).double()
    z = point.detach().to(torch.float64)
    kwargs = {} if context is None else {"context": context.detach().to(torch.float64).reshape(1, -1)}
    matrix = torch.autograd.functional.jacobian(lambda v: module(v[None], **kwargs)[0][0], z)
    with torch.no_grad():
        _, ladj = module(z[None], **kwargs)
    return JacobianView(
        point=z,
        matrix=matrix.detach(),
        logdet_flow=float(ladj[0]),
        logdet_autograd=float(torch.linalg.slogdet(matrix).logabsdet),
        condition=float(torch.linalg.cond(matrix)),
    )
