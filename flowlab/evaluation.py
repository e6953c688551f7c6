"""Held-out negative log-likelihood with its standard error, in nats and bits per dimension, and the held-out set
it is measured on (:func:`held_out`: the one place that says which points, and which contexts, a run and
``flowlab eval`` score)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flowlab.data import DatasetSpec
from flowlab.errors import ShapeError
from flowlab.flow import Flow
from flowlab.ode import continuous_flow
from flowlab.runconfig import check_dataset_context, dataset_context
from flowlab.seeding import generator, global_rng


@dataclass(frozen=True)
class NLL:
    """The mean of ``−log q(x_i)`` over ``n`` held-out points and its standard error ``s / √n`` (``s``: the sample
    standard deviation of ``−log q(x_i)``; by the CLT the mean is within ±2 SE of the expected NLL ~95% of the time).

    Bits per dimension: ``nats / (dim · ln 2)``. ``E_p[−log q] = H(p) + KL(p‖q) ≥ H(p)``, so a mean NLL
    significantly below the data's entropy ``H(p)`` means a density that does not integrate to 1.
    """

    nats: float
    se: float
    n: int
    dim: int

    @property
    def bits_per_dim(self) -> float:
        return self.nats / (self.dim * math.log(2))

    @property
    def se_bits_per_dim(self) -> float:
        return self.se / (self.dim * math.log(2))

    def gap(self, entropy: float | None) -> float | None:
        """``NLL − H(p)`` in nats (an estimate of ``KL(p‖q)``), or ``None`` when the entropy is unknown."""
        return None if entropy is None else self.nats - entropy


def uses_autograd(flow: Flow) -> bool:
    """Whether the flow's log-density needs autograd even without training: ODE flows compute their log-det from
    vector-Jacobian products of their vector field (:func:`flowlab.ode.continuous_flow`)."""
    return continuous_flow(flow.bijector) is not None


def log_probs(flow: Flow, points: Tensor, batch_size: int = 4096, context: Tensor | None = None) -> Tensor:
    """``log q(x)`` for every row of ``points`` (in eval mode, in batches), detached, on the CPU in float64; for a
    conditional flow ``log q(x_i | c_i)`` with ``context`` ``[n, context_dim]`` (one per row, on the flow's
    device)."""
    was_training = flow.training
    flow.eval()
    out = []
    try:
        with torch.set_grad_enabled(uses_autograd(flow)):
            batches = points.split(batch_size)
            contexts = [None] * len(batches) if context is None else context.split(batch_size)
            if context is not None and len(context) != len(points):
                raise ShapeError(f"log_probs: expected one context per point ({len(points)}), got {len(context)}")
            for batch, at in zip(batches, contexts, strict=True):
                out.append(flow.log_prob(batch, context=at).detach().to("cpu", torch.float64))
    finally:
        flow.train(was_training)
    return torch.cat(out)


def held_out_nll(flow: Flow, points: Tensor, batch_size: int = 4096, context: Tensor | None = None) -> NLL:
    """The held-out NLL of ``flow`` on ``points`` (``[n, dim]``, already on the flow's device and dtype); of a
    conditional flow at the rows' ``context`` (``[n, context_dim]``)."""
    nll = -log_probs(flow, points, batch_size, context)
    n = len(nll)
    se = float(nll.std() / math.sqrt(n)) if n > 1 else math.nan
    return NLL(nats=float(nll.mean()), se=se, n=n, dim=points.shape[-1])


@dataclass(frozen=True)
class HeldOut:
    """Points to score a flow on (``[n, dim]``, on the flow's device) and, for a conditional flow, their rows'
    contexts (``[n, context_dim]``; ``None`` for an unconditional one)."""

    points: Tensor
    context: Tensor | None = None

    def nll(self, flow: Flow) -> NLL:
        """The held-out NLL of ``flow`` on these points (at their contexts)."""
        return held_out_nll(flow, self.points, context=self.context)


def test_nll(flow: Flow, dataset: DatasetSpec, *, n: int, seed: int, device: torch.device | str) -> NLL:
    """What ``flowlab eval`` reports: the NLL of ``flow`` on the test set of ``dataset`` (a finite dataset's whole
    test split, dequantised by the stream ``(seed, "eval")``; a stream's ``n`` draws of it), a conditional flow at
    the rows' labels, any randomness of the flow from ``(seed, "eval-flow")``."""
    test = held_out(dataset, n, generator(seed, "eval"), context_dim=flow.context_dim, device=device)
    with global_rng(seed, "eval-flow"):
        return test.nll(flow)


def held_out(
    dataset: DatasetSpec,
    n: int,
    generator: torch.Generator,
    *,
    context_dim: int,
    device: torch.device | str,
    part: str = "test",
    first: int | None = None,
) -> HeldOut:
    """The points of ``dataset`` a flow with ``context_dim`` context features is scored on: a finite dataset's whole
    ``part`` of the split (``"test"``, ``"validation"``, or ``"train"``; ``n`` ignored; dequantised by
    ``generator`` where the data are integers), or only its ``first`` rows (a fixed random subset: the split is a
    permutation); a stream's ``n`` fresh points drawn by ``generator``. A conditional flow's contexts are the
    encoded labels of those rows (:func:`~flowlab.runconfig.check_dataset_context` first: an ``OptionError`` if
    the dataset has none of that size)."""
    points = dataset.held_out_points(part, n, generator)[:first].to(device)
    if not context_dim:
        return HeldOut(points)
    check_dataset_context(dataset, context_dim)
    return HeldOut(points, dataset_context(dataset, dataset.labels(part)[:first], device))
