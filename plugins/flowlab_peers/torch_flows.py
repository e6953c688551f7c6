"""``torch.affine``: torch.distributions' ``AffineTransform`` around an elementwise ``log ∘ softplus``."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import transforms

from flowlab.adapters import Adapted, adapted_spec, from_torch

EXPLANATION = r"""
**Transform** (elementwise, so the Jacobian is diagonal):

    x = a₂ + b₂ ⊙ log(softplus(a₁ + b₁ ⊙ z))

built from torch.distributions' `AffineTransform` (twice), `SoftplusTransform` and `ExpTransform().inv`, composed
with `ComposeTransform`. `log ∘ softplus` maps R onto R monotonically (≈ `u` for `u → −∞`, ≈ `log u` for
`u → ∞`), so the whole map is a bijection of R^d. `a₁, b₁` are `nn.Parameter`s (trained, perturbed and checked by
the kit); `a₂, b₂` are plain tensors drawn at build time (scales of both signs), which the adapter holds as buffers
so they follow `.to(dtype/device)`.

**Log-det**: `Σ_j [log|b₁ⱼ| + log σ(u_j) − log softplus(u_j) + log|b₂ⱼ|]` with `u = a₁ + b₁ ⊙ z`, summed by torch's
`ComposeTransform.log_abs_det_jacobian`.
"""


def build(dim: int) -> Adapted:
    signs = torch.where(torch.rand(dim) < 0.5, -1.0, 1.0)
    chain = transforms.ComposeTransform(
        [
            transforms.AffineTransform(nn.Parameter(torch.randn(dim)), nn.Parameter(1 + 0.1 * torch.rand(dim)), 1),
            transforms.SoftplusTransform(),
            transforms.ExpTransform().inv,
            transforms.AffineTransform(torch.randn(dim), signs * torch.exp(0.3 * torch.randn(dim)), 1),
        ]
    )
    return from_torch(chain, dim)


SPECS = [
    adapted_spec(
        "torch.affine",
        "torch.distributions: AffineTransform ∘ log∘softplus ∘ AffineTransform (trainable and plain-tensor loc/scale)",
        build,
        library="torch",
        explanation=EXPLANATION,
    )
]
