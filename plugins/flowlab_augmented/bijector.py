"""``AugmentedCNF``: a CNF on the joint space of data ``x ∈ R^d`` and augmentation ``u ∈ R^k``."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from flowlab import OptionError, ShapeError
from flowlab.ode import ODEBijector


class AugmentedCNF(ODEBijector):
    """An :class:`ODEBijector` on ``R^(d+k)`` whose last ``k = augment`` coordinates are the augmentation ``u``.

    With the base ``N(0, I_(d+k))`` it is an exact density model of the pair ``(x, u)``
    (``forward``/``inverse``/``Flow.log_prob`` act on the joint). :meth:`marginal_log_prob` estimates
    ``log p(x) = log ∫ p(x, u) du`` by importance weighting with ``K`` draws ``u_k ~ q(u | x)``::

        log p̂_K(x) = logsumexp_k [log p(x, u_k) − log q(u_k | x)] − log K

    ``E[log p̂_K(x)] ≤ log p(x)`` (Jensen), and the bound rises with ``K`` toward ``log p(x)`` (Burda et al. 2016).
    ``q`` is the base's marginal ``N(0, I_k)`` (``proposal="base"``) or a learned diagonal Gaussian whose mean and
    log-scale an MLP of ``x`` outputs (``proposal="learned"``, starting at ``N(0, I_k)``).
    """

    def __init__(self, field: nn.Module, *, augment: int, proposal: str, samples: int, **kwargs: Any) -> None:
        super().__init__(field, **kwargs)
        if not 1 <= augment < self.dim:
            raise OptionError(f"augmented: expected 1 <= augment < dim = {self.dim}, got augment={augment}")
        if proposal not in ("base", "learned"):
            raise OptionError(f"augmented: proposal must be 'base' or 'learned', got {proposal!r}")
        self.augment = augment
        self.data_dim = self.dim - augment
        self.samples = samples
        self.proposal: nn.Module | None = None
        if proposal == "learned":
            last = nn.Linear(32, 2 * augment)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.proposal = nn.Sequential(nn.Linear(self.data_dim, 32), nn.Tanh(), last)

    def proposal_params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-scale of ``q(u | x)``, each ``[batch, k]``."""
        if self.proposal is None:
            zeros = x.new_zeros(x.shape[0], self.augment)
            return zeros, zeros
        mean, log_scale = self.proposal(x).chunk(2, dim=-1)
        return mean, log_scale

    def marginal_log_prob(self, x: Tensor, samples: int | None = None) -> Tensor:
        """The importance-weighted lower bound ``log p̂_K(x)`` (see the class docstring), ``[batch]``.

        ``x`` is ``[batch, d]``; ``K = samples`` (default: the ``samples`` option). The draws of ``u`` come from the
        bijector's generator (reproducible from its seed); all ``K · batch`` joint points go through one solve.
        """
        if x.dim() != 2 or x.shape[-1] != self.data_dim:
            raise ShapeError(f"augmented: expected x of shape [batch, {self.data_dim}], got {list(x.shape)}")
        k = self.samples if samples is None else samples
        if k < 1:
            raise OptionError(f"augmented: expected samples >= 1, got {k}")
        batch = x.shape[0]
        mean, log_scale = self.proposal_params(x)
        noise = torch.randn((k, batch, self.augment), generator=self.generator, dtype=torch.float64)
        noise = noise.to(device=x.device, dtype=x.dtype)
        u = mean + log_scale.exp() * noise  # [K, batch, k]
        joint = torch.cat([x.expand(k, batch, self.data_dim), u], dim=-1).reshape(k * batch, self.dim)
        z, ladj = self.inverse(joint)
        log_joint = standard_normal_log_prob(z) + ladj
        log_q = standard_normal_log_prob(noise.reshape(k * batch, -1)) - log_scale.sum(-1).repeat(k)
        weights = (log_joint - log_q).reshape(k, batch)
        return torch.logsumexp(weights, dim=0) - math.log(k)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` per row."""
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * math.log(2 * math.pi))
