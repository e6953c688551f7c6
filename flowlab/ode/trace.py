"""Trace estimators: ``tr(∂f/∂z)`` (and ``‖∂f/∂z‖²_F`` for RNODE) per batch row, as objects.

An estimator is used in two steps, so that stochastic probes are **drawn once per solve and held fixed through it**
(redrawing them at every function evaluation makes the dynamics non-smooth in t, and adaptive solvers then take
tiny steps: the number of function evaluations explodes):

1. ``probe = estimator.draw(z, generator)`` at the start of a solve (``None`` for the exact trace);
2. ``estimator(f, z, probe, create_graph)`` at every evaluation, where ``f = field(t, z)`` was computed from ``z``
   with autograd enabled; it returns ``(trace, frobenius²)``, each of shape ``[batch]``.

Exact: ``d`` vector-Jacobian products with the unit vectors (batched into one ``autograd.grad`` call), O(d) backward
passes. Hutchinson: one product ``vᵀ(∂f/∂z)`` with a probe ``v`` with ``E[v vᵀ] = I``; ``vᵀ J v`` is an unbiased
estimate of ``tr J`` and ``‖vᵀ J‖²`` of ``‖J‖²_F``. Its variance for a fixed matrix ``A``:
Gaussian ``‖A‖²_F + tr(A²)``; Rademacher ``‖A‖²_F + tr(A²) − 2 Σ A_ii²`` (smaller: no noise from the diagonal).
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from flowlab.errors import OptionError


class TraceEstimator(abc.ABC):
    """Computes ``(tr ∂f/∂z, ‖∂f/∂z‖²_F)`` per row; see the module docstring for the two-step protocol."""

    #: whether the estimate is random (an unbiased estimate) rather than exact
    stochastic: bool = False

    def draw(self, z: Tensor, generator: torch.Generator | None) -> Tensor | None:
        """The probe for one solve starting at ``z`` (``None``: this estimator needs none)."""
        return None

    @abc.abstractmethod
    def __call__(self, f: Tensor, z: Tensor, probe: Tensor | None, create_graph: bool) -> tuple[Tensor, Tensor]:
        """``(trace, frobenius²)`` of ``∂f/∂z`` per row, shapes ``[batch]``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ExactTrace(TraceEstimator):
    """The exact trace from the full Jacobian, built row by row with ``d`` batched vector-Jacobian products.

    ``rows[i] = e_iᵀ ∂f/∂z`` for all ``i`` in one ``autograd.grad(..., is_grads_batched=True)`` call (vmap over the
    backward pass); ``tr = Σ_i rows[i, :, i]`` and ``‖J‖²_F = Σ rows²``. Cost O(d) backward passes per evaluation.
    """

    def __call__(self, f: Tensor, z: Tensor, probe: Tensor | None, create_graph: bool) -> tuple[Tensor, Tensor]:
        batch, dim = z.shape
        eye = torch.eye(dim, dtype=z.dtype, device=z.device).unsqueeze(1).expand(dim, batch, dim)
        (rows,) = torch.autograd.grad(f, z, eye, is_grads_batched=True, create_graph=create_graph)
        trace = rows.diagonal(dim1=0, dim2=2).sum(-1)  # rows[i, b, i] summed over i
        return trace, rows.pow(2).sum(dim=(0, 2))


class Hutchinson(TraceEstimator):
    """Hutchinson's estimator ``vᵀ (∂f/∂z) v`` with one probe ``v`` per row, ``E[v vᵀ] = I``.

    ``distribution`` is ``"gaussian"`` (``v ~ N(0, I)``) or ``"rademacher"`` (entries ±1 with probability ½).
    Probes come from a CPU ``torch.Generator`` and are then moved to ``z``'s device and dtype, so a seed gives the
    same probes on every device. One vector-Jacobian product per evaluation, whatever ``d``.
    """

    stochastic = True
    DISTRIBUTIONS = ("gaussian", "rademacher")

    def __init__(self, distribution: str = "rademacher") -> None:
        if distribution not in self.DISTRIBUTIONS:
            raise OptionError(f"Hutchinson: expected distribution in {self.DISTRIBUTIONS}, got {distribution!r}")
        self.distribution = distribution

    def draw(self, z: Tensor, generator: torch.Generator | None) -> Tensor:
        shape = tuple(z.shape)
        if self.distribution == "gaussian":
            probe = torch.randn(shape, generator=generator, dtype=torch.float64)
        else:
            probe = torch.randint(0, 2, shape, generator=generator, dtype=torch.int64) * 2 - 1
        return probe.to(device=z.device, dtype=z.dtype)

    def __call__(self, f: Tensor, z: Tensor, probe: Tensor | None, create_graph: bool) -> tuple[Tensor, Tensor]:
        if probe is None:
            raise ValueError("Hutchinson: expected a probe drawn with draw() at the start of the solve, got None")
        (vjp,) = torch.autograd.grad(f, z, probe, create_graph=create_graph)
        return (vjp * probe).sum(-1), vjp.pow(2).sum(-1)

    def __repr__(self) -> str:
        return f"Hutchinson({self.distribution!r})"
