"""Planted-bug discrete flows: each must fail the property named in ``EXPECTED`` (the tutorial's bugs among them).

Each mutant is a small flow with one deliberate mistake:

- ``mutant_logdet_wrong_sign``: a coupling layer returning ``−Σ s`` as ``log|det ∂x/∂z|`` (and ``+Σ s`` back).
- ``mutant_logdet_offset``: a coupling layer whose log-det is off by a constant (``+0.1``).
- ``mutant_forgotten_term``: a coupling layer then a per-coordinate scale whose log-det is left out of the sum.
- ``mutant_forward_sign_only``: the forward log-det has the wrong sign, the inverse is right, so sampling and
  ``log_prob`` disagree.
- ``mutant_approximate_inverse``: the inverse uses ``exp(−s) ≈ 1 − s``.
- ``mutant_unbounded_exp``: the tutorial's coupling, ``exp(s)`` with no bound on ``s``, stacked: overflows.
- ``mutant_batch_statistics``: the forward pass adds the batch mean (batch statistics in a flow).
- ``mutant_no_permutation``: the tutorial's stack of coupling layers without permutations, claiming to mix.
- ``mutant_truncated_logdet``: ``x = (I + W) z`` with ``log det(I + W)`` estimated by the first term of its series,
  ``tr W``: the density does not integrate to 1.
- ``mutant_nan_gradient``: a shift ``where(z > 0, √z, 0)``: finite values, NaN gradients for negative inputs.
- ``mutant_default_dtype_logdet``: a log-det allocated with ``torch.zeros(batch)`` (default dtype, CPU).
- ``mutant_first_batch_init``: an ActNorm that initialises its shift from the first batch it sees, in eval mode too:
  every later call is consistent with that first one, so only a second fresh instance shows it.
- ``mutant_logdet_overflow``: ``x = z·exp(a)`` with ``a ≈ 3`` and the log-det computed as ``log ∏ exp(a_i)``: fine
  at the drawn dims, ``inf`` in float32 once ``Σ a > 88`` (d ≳ 30).
- ``mutant_in_place``: ``x = z + b`` written into ``z`` (``z.add_(b)``): the right values, the caller's tensor
  changed.
- ``mutant_detached_parameter``: a scale used through ``.detach()`` in training mode: it never learns.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowlab import Bijector, Compose, FlowSpec, hookimpl


class Coupling(Bijector):
    """RealNVP coupling ``x_b = z_b·exp(s(z_a)) + t(z_a)``, correct unless a ``bug`` is named."""

    def __init__(self, dim: int, parity: int = 0, bug: str | None = None, gain: float = 1.0) -> None:
        super().__init__()
        self.dim, self.bug, self.gain = dim, bug, gain
        keep = torch.arange(dim) % 2 == parity
        self.kept, self.moved = keep.nonzero().flatten().tolist(), (~keep).nonzero().flatten().tolist()
        self.net = nn.Sequential(nn.Linear(len(self.kept), 16), nn.Tanh(), nn.Linear(16, 2 * len(self.moved)))

    def _scale_shift(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        raw, shift = (self.net(kept) * self.gain).chunk(2, dim=-1)
        if self.bug == "nan_gradient":
            shift = shift + torch.where(kept[:, :1] > 0, kept[:, :1].sqrt(), torch.zeros_like(kept[:, :1]))
        scale = raw if self.bug == "unbounded" else 2 * torch.tanh(raw / 2)
        return scale, shift

    def _join(self, kept: Tensor, moved: Tensor) -> Tensor:
        out = torch.empty(kept.shape[0], self.dim, dtype=kept.dtype, device=kept.device)
        out[:, self.kept], out[:, self.moved] = kept, moved
        return out

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._scale_shift(z[:, self.kept])
        x = self._join(z[:, self.kept], z[:, self.moved] * s.exp() + t)
        ladj = s.sum(dim=-1)
        if self.bug in ("wrong_sign", "forward_sign"):
            ladj = -ladj
        if self.bug == "offset":
            ladj = ladj + 0.1
        return x, ladj

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._scale_shift(x[:, self.kept])
        factor = 1 - s if self.bug == "approximate_inverse" else (-s).exp()
        z = self._join(x[:, self.kept], (x[:, self.moved] - t) * factor)
        ladj = -s.sum(dim=-1)
        if self.bug == "wrong_sign":
            ladj = -ladj
        if self.bug == "offset":
            ladj = ladj - 0.1
        return z, ladj


class Scale(Bijector):
    """``x = z·exp(a)``; with ``forget=True`` its log-det ``Σ a`` is reported as 0 (a forgotten Jacobian term)."""

    def __init__(self, dim: int, forget: bool = False) -> None:
        super().__init__()
        self.dim, self.forget = dim, forget
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def _ladj(self, z: Tensor, sign: float) -> Tensor:
        return z.new_zeros(z.shape[0]) if self.forget else sign * self.log_scale.sum().expand(z.shape[0])

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z * self.log_scale.exp(), self._ladj(z, 1.0)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * (-self.log_scale).exp(), self._ladj(x, -1.0)


class BatchMean(Bijector):
    """``x = z·exp(a) + mean_batch(z)``: each row depends on the others. Its inverse is exact for the batch."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z * self.log_scale.exp() + z.mean(dim=0), self.log_scale.sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        scale = self.log_scale.exp()
        mean = x.mean(dim=0) / (scale + 1)
        return (x - mean) / scale, -self.log_scale.sum().expand(x.shape[0])


class TruncatedSeries(Bijector):
    """``x = (I + W) z``, ``W`` symmetric with spectral norm ½; log-det ``tr W`` instead of ``Σ log(1 + λ_i)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.raw = nn.Parameter(torch.eye(dim))

    def weight(self) -> Tensor:
        symmetric = (self.raw + self.raw.T) / 2
        return 0.5 * symmetric / torch.linalg.matrix_norm(symmetric, ord=2)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        w = self.weight()
        return z + z @ w.T, torch.trace(w).expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        w = self.weight()
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        return torch.linalg.solve(eye + w, x.T).T, (-torch.trace(w)).expand(x.shape[0])


class DefaultDtypeReverse(Bijector):
    """``x = reverse(z)·exp(a)`` whose log-det starts from ``torch.zeros(batch)``: float32 on the CPU, always."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        ladj = torch.zeros(z.shape[0])
        ladj += self.log_scale.sum()
        return z.flip(-1) * self.log_scale.exp(), ladj

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ladj = torch.zeros(x.shape[0])
        ladj -= self.log_scale.sum()
        return (x * (-self.log_scale).exp()).flip(-1), ladj


class FirstBatchInit(Bijector):
    """``x = z·exp(a) + b`` whose shift ``b`` is set to the mean of the first batch it is called on (either
    direction, any mode): the map depends on which batch came first."""

    initialized: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.shift = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))

    def _initialize(self, points: Tensor) -> None:
        if not bool(self.initialized):
            with torch.no_grad():
                self.shift.copy_(points.mean(dim=0))
                self.initialized.fill_(True)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        self._initialize(z)
        return z * self.log_scale.exp() + self.shift, self.log_scale.sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._initialize(x)
        return (x - self.shift) * (-self.log_scale).exp(), -self.log_scale.sum().expand(x.shape[0])


class ProductLogdet(Bijector):
    """``x = z·exp(a)``, ``a`` initialised at 3, with ``log|det| = log ∏ exp(a_i)`` (overflows for large d)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.log_scale = nn.Parameter(torch.full((dim,), 3.0))

    def _ladj(self, rows: int) -> Tensor:
        return torch.log(torch.prod(torch.exp(self.log_scale))).expand(rows)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z * self.log_scale.exp(), self._ladj(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * (-self.log_scale).exp(), -self._ladj(x.shape[0])


class InPlaceShift(Bijector):
    """``x = z + b`` computed as ``z.add_(b)``: it returns the caller's own tensor, changed."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            z.add_(self.shift)
        return z, z.new_zeros(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x - self.shift, x.new_zeros(x.shape[0])


class DetachedScale(Scale):
    """``x = z·exp(a)`` with ``a.detach()`` in training mode: the values are right, ``a`` never gets a gradient."""

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        a = self.log_scale.detach() if self.training else self.log_scale
        return z * a.exp(), a.sum().expand(z.shape[0])

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a = self.log_scale.detach() if self.training else self.log_scale
        return x * (-a).exp(), -a.sum().expand(x.shape[0])


def stack(dim: int, layers: int, bug: str | None = None, alternate: bool = True, gain: float = 1.0) -> Compose:
    return Compose([Coupling(dim, k % 2 if alternate else 0, bug, gain) for k in range(layers)])


BUILDERS: dict[str, tuple[str, Any]] = {
    "mutant_logdet_wrong_sign": ("logdet", lambda dim: Coupling(dim, bug="wrong_sign")),
    "mutant_logdet_offset": ("logdet", lambda dim: Coupling(dim, bug="offset")),
    "mutant_forgotten_term": ("logdet", lambda dim: Compose([Coupling(dim), Scale(dim, forget=True)])),
    "mutant_forward_sign_only": ("sample_consistency", lambda dim: Coupling(dim, bug="forward_sign")),
    "mutant_approximate_inverse": ("invertibility", lambda dim: Coupling(dim, bug="approximate_inverse")),
    "mutant_unbounded_exp": ("invertibility", lambda dim: stack(dim, 3, bug="unbounded", gain=10.0)),
    "mutant_batch_statistics": ("batch_independence", BatchMean),
    "mutant_no_permutation": ("mixing", lambda dim: stack(dim, 4, alternate=False)),
    "mutant_truncated_logdet": ("normalization", TruncatedSeries),
    "mutant_nan_gradient": ("gradients", lambda dim: Coupling(dim, bug="nan_gradient")),
    "mutant_default_dtype_logdet": ("dtype_device", DefaultDtypeReverse),
    "mutant_first_batch_init": ("batch_independence", FirstBatchInit),
    "mutant_logdet_overflow": ("stress", ProductLogdet),
    "mutant_in_place": ("invertibility", InPlaceShift),
    "mutant_detached_parameter": ("gradients", DetachedScale),
}

#: mutants defined on R^1 and up (the others need two coordinates for a coupling)
ONE_DIMENSIONAL = {
    "mutant_truncated_logdet",
    "mutant_batch_statistics",
    "mutant_default_dtype_logdet",
    "mutant_first_batch_init",
    "mutant_logdet_overflow",
    "mutant_in_place",
    "mutant_detached_parameter",
}

EXPECTED: dict[str, str] = {name: prop for name, (prop, _) in BUILDERS.items()}


def _spec(name: str, build: Any) -> FlowSpec:
    return FlowSpec(
        name=name,
        summary=f"mutant: must fail {EXPECTED[name]}",
        build=build,
        min_dim=1 if name in ONE_DIMENSIONAL else 2,
        logdet="stochastic" if name == "mutant_truncated_logdet" else "exact",
        mixes=name == "mutant_no_permutation",
        explanation=f"A planted bug (see tests/mutants/discrete.py); must fail {EXPECTED[name]}.",
    )


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    for name, (_, build) in BUILDERS.items():
        register(_spec(name, build))
