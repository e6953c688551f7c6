"""Planted bugs that only a flow called without autograd shows (``Case.autograd``: the kit runs each case with
autograd recording, as in training, or off, as under ``torch.no_grad()`` when sampling or evaluating): each must fail
the property named in ``EXPECTED``, and passes it where every call records.

- ``mutant_no_grad_inverse``: ``x = z + ½·tanh(w ⊙ z + b)`` (``|w| ≤ 1``: increasing, a contraction) whose inverse
  runs 40 fixed-point iterations when autograd records, and 2 when it is off ("sampling and evaluation need no
  gradient: take the fast path"), an error of up to ~0.1.
- ``mutant_no_grad_logdet``: the same map whose log-det, when autograd is off, takes ``log(1 + u) ≈ u`` ("only
  needed for evaluation"), off by up to ~0.03 per coordinate, alike in both directions (round trips agree).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowlab import Bijector, FlowSpec, hookimpl


class FastPathInverse(Bijector):
    """``x = z + ½·tanh(a)``, ``a = w ⊙ z + b`` with ``w = tanh(v)``; ``log|det ∂x/∂z| = Σ log(1 + ½ w sech²(a))``.
    The inverse iterates ``z ← x − ½·tanh(w ⊙ z + b)`` (a contraction: ``|∂/∂z| ≤ ½``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.v = nn.Parameter(torch.full((dim,), 0.5))
        self.b = nn.Parameter(torch.zeros(dim))

    def _shift(self, z: Tensor) -> tuple[Tensor, Tensor]:
        w = torch.tanh(self.v)
        a = w * z + self.b
        shift = 0.5 * torch.tanh(a)
        return shift, torch.log1p(0.5 * w / torch.cosh(a) ** 2).sum(-1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        shift, ladj = self._shift(z)
        return z + shift, ladj

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = x
        for _ in range(40 if torch.is_grad_enabled() else 2):  # the bug: a "fast path" when nothing records
            z = x - self._shift(z)[0]
        return z, -self._shift(z)[1]


class FastPathLogdet(FastPathInverse):
    """:class:`FastPathInverse` with 40 iterations always, and ``log(1 + u) ≈ u`` in the log-det without autograd."""

    def _shift(self, z: Tensor) -> tuple[Tensor, Tensor]:
        shift, ladj = super()._shift(z)
        if torch.is_grad_enabled():
            return shift, ladj
        w = torch.tanh(self.v)
        return shift, (0.5 * w / torch.cosh(w * z + self.b) ** 2).sum(-1)  # the bug: first order only

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = x
        for _ in range(40):
            z = x - self._shift(z)[0]
        return z, -self._shift(z)[1]


BUILDERS: dict[str, tuple[str, Any]] = {
    "mutant_no_grad_inverse": ("invertibility", FastPathInverse),
    "mutant_no_grad_logdet": ("logdet", FastPathLogdet),
}

EXPECTED: dict[str, str] = {name: prop for name, (prop, _) in BUILDERS.items()}

SPECS: dict[str, FlowSpec] = {
    name: FlowSpec(
        name=name,
        summary=f"mutant: must fail {EXPECTED[name]}",
        build=build,
        explanation=f"A planted bug (see tests/mutants/grad_mode.py); must fail {EXPECTED[name]}.",
    )
    for name, (_, build) in BUILDERS.items()
}


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    for spec in SPECS.values():
        register(spec)
