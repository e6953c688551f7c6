"""flowlab plugin ``affine``: ``x = A z + b``, learned (LU) or a given fixed matrix."""

from __future__ import annotations

from typing import Any

from flowlab import Bijector, FlowSpec, Option, OptionError, hookimpl
from flowlab_affine.bijector import FixedAffine, LUAffine

EXPLANATION = r"""
**Transform.** `x = A z + b` with `A ∈ R^{d×d}` invertible; **inverse** `z = A⁻¹ (x − b)`.

**Log-determinant.** The Jacobian `∂x/∂z = A` is the same at every point, so
`log|det ∂x/∂z| = log|det A|` and the inverse direction gives `−log|det A|`.

- *Learned* (`matrix=None`): `A = L U` with `L` unit lower-triangular and `U` upper-triangular with a positive
  diagonal `exp(s)`. Then `det A = Π exp(s_i)` > 0 for every parameter value: invertible by construction, and
  `log|det A| = Σ s_i` costs O(d) instead of the O(d³) of a dense determinant. The inverse solves two triangular
  systems, O(d²) per point.
- *Fixed* (`matrix=[[...]]`): `log|det A|` is computed once with `slogdet`; a numerically singular `A` is refused.

Example: `A = [[2, 0.5], [0, 1.5]]`, `b = [1, −0.5]` has `det A = 3`, so every point's log-det is `log 3 ≈ 1.0986`:
the map stretches area threefold and the density drops by the same factor.

An affine flow of a Gaussian is Gaussian (`N(b, A Aᵀ)`): it cannot model multi-modal data on its own, but it is the
mixing layer that makes stacks of coupling layers expressive.

**Sign convention.** `forward(z) -> (x, log|det ∂x/∂z|)`; `log p(x) = log p_z(A⁻¹(x − b)) − log|det A|`.
"""


def build(dim: int, *, matrix: Any = None, shift: Any = None, identity_init: bool = True) -> Bijector:
    if matrix is not None:
        return FixedAffine(dim, matrix, shift)
    if shift is not None:
        raise OptionError("affine: option shift is only used with a fixed matrix; a learned affine learns its shift")
    return LUAffine(dim, identity_init=identity_init)


SPEC = FlowSpec(
    name="affine",
    summary="x = A z + b; A = LU with a positive diagonal (learned) or a given invertible matrix",
    build=build,
    kind="discrete",
    logdet="exact",
    options={
        "matrix": Option(None, "a fixed d×d invertible matrix (nested lists); None learns A = LU"),
        "shift": Option(None, "the fixed shift b (length d), with matrix; None means 0"),
        "identity_init": Option(True, "start the learned A at the identity and b at 0", choices=(True, False)),
    },
    references=(
        "Kingma & Dhariwal (2018). Glow: Generative Flow with Invertible 1x1 Convolutions (LU parametrisation). "
        "https://arxiv.org/abs/1807.03039",
        "Papamakarios et al. (2021). Normalizing Flows for Probabilistic Modeling and Inference. "
        "https://arxiv.org/abs/1912.02762",
    ),
    explanation=EXPLANATION,
    mixes=lambda options: options["matrix"] is None,  # a learned A = LU is dense; a given matrix may not be
)


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    register(SPEC)
