"""Planted-bug flows that only a flow with a history shows (``flowlab.checks.lives``): each must fail the property
named in ``EXPECTED``, and passes it on a freshly built instance called once.

- ``mutant_stale_inverse_cache``: ``x = W z`` whose inverse uses ``W⁻¹`` computed on the first ``inverse`` call and
  kept (a solve per call saved): right until the parameters move (an optimizer step, ``load_state_dict``).
- ``mutant_running_stats_logdet``: batch normalisation (batch statistics in training mode, running ones in eval
  mode) whose eval-mode log-det leaves out ``−Σ log σ`` of the running statistics: exactly 0 at their initial
  variance 1, wrong once training has moved them.
- ``mutant_transform_cache``: Householder reflections whose inverse applies them in the forward's order (right
  only for one reflection), behind a ``torch.distributions``-style ``(x, y)`` cache that answers a call given the
  very tensor the last call returned (or was given): the round trip of the kit's old ``invertibility`` came back
  from the cache (Pyro's ``Householder`` passed it that way).
- ``mutant_train_only_logdet``: a coupling whose training-mode branch sums the scales before their soft clamp
  ``B·tanh(ŝ/B)``, which the map applies: eval mode is right.
- ``mutant_unsaved_statistics``: a standardising layer whose running mean and log-scale, updated in training mode,
  are buffers registered with ``persistent=False`` ("recomputed from data anyway"): a checkpoint loses them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowlab import Bijector, FlowSpec, hookimpl


class CachedInverseLinear(Bijector):
    """``x = W z``, ``log|det ∂x/∂z| = log|det W|``; the inverse multiplies by a ``W⁻¹`` cached on first use."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.weight = nn.Parameter(torch.eye(dim))
        self.cached_inverse: Tensor | None = None

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z @ self.weight.T, torch.linalg.slogdet(self.weight).logabsdet.expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.cached_inverse is None or self.cached_inverse.dtype != x.dtype:
            self.cached_inverse = torch.linalg.inv(self.weight).detach()
        return x @ self.cached_inverse.T, -torch.linalg.slogdet(self.weight).logabsdet.expand(x.shape[0])


class RunningBatchNorm(Bijector):
    """``z = (x − μ)/σ·exp(γ) + β`` (data to noise): ``μ, σ`` of the batch in training mode (updating the running
    ones, momentum 0.1), the running ones in eval mode; ``forward`` inverts the eval-mode map; log-det
    ``Σ γ − log σ``. With ``forget=True`` (the mutant) the eval-mode log-dets leave out ``∓Σ log σ``."""

    running_mean: Tensor
    running_log_std: Tensor

    def __init__(self, dim: int, forget: bool = True) -> None:
        super().__init__()
        self.dim, self.forget = dim, forget
        self.log_gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_log_std", torch.zeros(dim))

    def _counted(self, log_std: Tensor) -> Tensor:
        """The ``log σ`` the log-dets count: none in eval mode for the mutant (0 while σ = 1)."""
        return torch.zeros_like(log_std) if self.forget and not self.training else log_std

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training:
            mean, log_std = x.mean(dim=0), 0.5 * x.var(dim=0, correction=0).clamp_min(1e-12).log()
            with torch.no_grad():
                self.running_mean.lerp_(mean, 0.1)
                self.running_log_std.lerp_(log_std, 0.1)
        else:
            mean, log_std = self.running_mean, self.running_log_std
        z = (x - mean) * (self.log_gamma - log_std).exp() + self.beta
        return z, (self.log_gamma - self._counted(log_std)).sum().expand(x.shape[0])

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = (z - self.beta) * (self.running_log_std - self.log_gamma).exp() + self.running_mean
        return x, (self._counted(self.running_log_std) - self.log_gamma).sum().expand(z.shape[0])


class CachedHouseholder(Bijector):
    """``x = H_k ⋯ H_1 z`` with ``H_i = I − 2 v_i v_iᵀ/|v_i|²`` (log-det 0); the inverse applies ``H_1`` first, as
    the forward does (wrong for two reflections or more); both answer from an ``(input, output)`` cache when
    given the very tensor of the last call."""

    def __init__(self, dim: int, reflections: int = 2) -> None:
        super().__init__()
        self.dim = dim
        self.vectors = nn.Parameter(torch.randn(reflections, dim))
        self._cached: tuple[Tensor, Tensor] | None = None

    def _reflect(self, points: Tensor) -> Tensor:
        for v in self.vectors:
            points = points - 2 * (points @ v).unsqueeze(-1) * v / v.square().sum()
        return points

    def _call(self, points: Tensor) -> tuple[Tensor, Tensor]:
        cached = self._cached
        if cached is not None and points is cached[1]:
            return cached[0], points.new_zeros(points.shape[0])
        out = self._reflect(points)
        self._cached = (points, out)
        return out, points.new_zeros(points.shape[0])

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._call(z)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._call(x)


class TrainOnlyLogdetCoupling(Bijector):
    """Affine coupling ``x_b = z_b·exp(s) + t``, ``s = B·tanh(ŝ/B)``, ``(ŝ, t)`` from the even coordinates; in
    training mode its log-det sums ``ŝ`` instead of ``s``."""

    def __init__(self, dim: int, bound: float = 3.0) -> None:
        super().__init__()
        self.dim, self.bound = dim, bound
        self.kept, self.moved = list(range(0, dim, 2)), list(range(1, dim, 2))
        self.net = nn.Sequential(nn.Linear(len(self.kept), 16), nn.Tanh(), nn.Linear(16, 2 * len(self.moved)))

    def _scale_shift(self, kept: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        raw, shift = self.net(kept).chunk(2, dim=-1)
        return self.bound * torch.tanh(raw / self.bound), shift, raw

    def _join(self, kept: Tensor, moved: Tensor) -> Tensor:
        out = torch.empty(kept.shape[0], self.dim, dtype=kept.dtype, device=kept.device)
        out[:, self.kept], out[:, self.moved] = kept, moved
        return out

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        s, t, raw = self._scale_shift(z[:, self.kept])
        return self._join(z[:, self.kept], z[:, self.moved] * s.exp() + t), (raw if self.training else s).sum(-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s, t, raw = self._scale_shift(x[:, self.kept])
        z = self._join(x[:, self.kept], (x[:, self.moved] - t) * (-s).exp())
        return z, -(raw if self.training else s).sum(-1)


class UnsavedStandardize(Bijector):
    """``z = (x − m)·exp(−ℓ)`` with running estimates ``m, ℓ`` of the data's mean and log-std, updated (momentum 0.1)
    after each training-mode ``inverse`` from its batch; they are buffers with ``persistent=False``."""

    running_mean: Tensor
    running_log_std: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim), persistent=False)
        self.register_buffer("running_log_std", torch.zeros(dim), persistent=False)

    def _log_scale(self) -> Tensor:
        return self.scale - self.running_log_std

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = self._log_scale()
        z, ladj = (x - self.running_mean) * log_scale.exp(), log_scale.sum().expand(x.shape[0])
        if self.training and x.shape[0] > 1:  # the statistics this batch adds serve the next calls
            with torch.no_grad():
                self.running_mean.lerp_(x.mean(dim=0), 0.1)
                self.running_log_std.lerp_(0.5 * x.var(dim=0).clamp_min(1e-12).log(), 0.1)
        return z, ladj

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = self._log_scale()
        return z * (-log_scale).exp() + self.running_mean, (-log_scale.sum()).expand(z.shape[0])


BUILDERS: dict[str, tuple[str, Any]] = {
    "mutant_stale_inverse_cache": ("invertibility", CachedInverseLinear),
    "mutant_running_stats_logdet": ("logdet", RunningBatchNorm),
    "mutant_transform_cache": ("invertibility", CachedHouseholder),
    "mutant_train_only_logdet": ("logdet", TrainOnlyLogdetCoupling),
    "mutant_unsaved_statistics": ("state", UnsavedStandardize),
}

EXPECTED: dict[str, str] = {name: prop for name, (prop, _) in BUILDERS.items()}

#: the fields each mutant's spec declares (what the flow is: a batch-statistics layer needs two rows to train)
FIELDS: dict[str, dict[str, Any]] = {
    "mutant_running_stats_logdet": {"min_train_batch": 2},
    "mutant_transform_cache": {"min_dim": 2},
    "mutant_train_only_logdet": {"min_dim": 2},
}


def _spec(name: str, build: Any) -> FlowSpec:
    return FlowSpec(
        name=name,
        summary=f"mutant: must fail {EXPECTED[name]}",
        build=build,
        explanation=f"A planted bug (see tests/mutants/lives.py); must fail {EXPECTED[name]}.",
        **FIELDS.get(name, {}),
    )


SPECS: dict[str, FlowSpec] = {name: _spec(name, build) for name, (_, build) in BUILDERS.items()}


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    for spec in SPECS.values():
        register(spec)
