"""Planted-bug conditional flows (docs/conditioning.md): each must fail the property named in ``EXPECTED`` at the
contexts the kit draws (each pins ``context_dim=2``).

- ``mutant_context_ignored``: a conditional coupling whose network never reads its context: a correct bijection
  and log-det, the same density at every context.
- ``mutant_context_logdet``: the scale depends on the context but the log-det is computed at context 0: forward
  and inverse still cancel, only the Jacobian at a drawn context shows it.
- ``mutant_context_first_row``: every row is transformed at the first row's context (a broadcasting slip).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowlab import CONTEXT_OPTION, Bijector, FlowSpec, hookimpl


class ConditionalCoupling(Bijector):
    """``x_b = z_b·exp(s(z_a, c)) + t(z_a, c)`` (``z_a`` the even coordinates), correct unless a ``bug`` is named."""

    def __init__(self, dim: int, context_dim: int, bug: str) -> None:
        super().__init__()
        self.dim, self.context_dim, self.bug = dim, context_dim, bug
        self.kept, self.moved = list(range(0, dim, 2)), list(range(1, dim, 2))
        self.net = nn.Sequential(
            nn.Linear(len(self.kept) + context_dim, 16), nn.Tanh(), nn.Linear(16, 2 * len(self.moved))
        )

    def _scale_shift(self, kept: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        if context is not None and self.bug == "ignored":
            context = torch.zeros_like(context)
        if context is not None and self.bug == "first_row":
            context = context[:1].expand_as(context)
        raw, shift = self.net(self.conditioner_input(kept, context)).chunk(2, dim=-1)
        return 2 * torch.tanh(raw / 2), shift

    def _ladj(self, kept: Tensor, context: Tensor | None, s: Tensor) -> Tensor:
        if context is not None and self.bug == "logdet_at_zero":
            s = self._scale_shift(kept, torch.zeros_like(context))[0]
        return s.sum(dim=-1)

    def _join(self, kept: Tensor, moved: Tensor) -> Tensor:
        out = torch.empty(kept.shape[0], self.dim, dtype=kept.dtype, device=kept.device)
        out[:, self.kept], out[:, self.moved] = kept, moved
        return out

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        kept = z[:, self.kept]
        s, t = self._scale_shift(kept, context)
        return self._join(kept, z[:, self.moved] * s.exp() + t), self._ladj(kept, context, s)

    def inverse(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        kept = x[:, self.kept]
        s, t = self._scale_shift(kept, context)
        return self._join(kept, (x[:, self.moved] - t) * (-s).exp()), -self._ladj(kept, context, s)


BUGS = {
    "mutant_context_ignored": ("context_dependence", "ignored"),
    "mutant_context_logdet": ("logdet", "logdet_at_zero"),
    "mutant_context_first_row": ("batch_independence", "first_row"),
}

EXPECTED: dict[str, str] = {name: prop for name, (prop, _) in BUGS.items()}


def _spec(name: str, bug: str) -> FlowSpec:
    return FlowSpec(
        name=name,
        summary=f"mutant: must fail {EXPECTED[name]}",
        build=lambda dim, *, context_dim: ConditionalCoupling(dim, context_dim, bug),
        min_dim=2,
        options={"context_dim": CONTEXT_OPTION},
        check_options={"context_dim": 2},  # the bug is in the conditioning: every case has a context
        explanation=f"A planted bug (see tests/mutants/conditional.py); must fail {EXPECTED[name]}.",
    )


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    for name, (_, bug) in BUGS.items():
        register(_spec(name, bug))
