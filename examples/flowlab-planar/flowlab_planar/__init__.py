"""flowlab plugin ``planar``: ``K`` planar layers (Rezende & Mohamed 2015)."""

from __future__ import annotations

from typing import Any

from flowlab import Compose, FlowSpec, Option, hookimpl
from flowlab_planar.bijector import PlanarLayer

EXPLANATION = r"""
**Transform.** One planar layer moves every point along a fixed direction `û` by an amount that depends on its
position along another direction `w`:

    x = z + û · tanh(wᵀz + b)

`K` layers are composed (`layers`). **Inverse**: with `α = wᵀz`, projecting on `w` gives the scalar equation
`wᵀx = α + wᵀû · tanh(α + b)`, strictly increasing in `α`; it is solved to machine precision by bisection on
`[wᵀx − |wᵀû|, wᵀx + |wᵀû|]`, then `z = x − û · tanh(α + b)`.

**Log-determinant.** `∂x/∂z = I + h'(wᵀz + b) û wᵀ` is a rank-one update of the identity, so the matrix
determinant lemma gives `det = 1 + h'(wᵀz + b) · wᵀû`: O(d) per layer instead of O(d³).

**Invertibility.** The layer is invertible iff `1 + h' · wᵀû > 0` everywhere; with `h' ∈ (0, 1]` it suffices that
`wᵀû > −1`. The plugin learns `u` and uses `û = u + (m(wᵀu) − wᵀu) · w / ‖w‖²` with `m(a) = −1 + softplus(a) > −1`.

**Sign convention.** `forward(z) -> (x, Σ_k log(1 + h'_k · w_kᵀû_k))`; `log p(x) = log p_z(z) − Σ_k log(...)`.
"""


def build(dim: int, *, layers: int) -> Compose:
    return Compose(PlanarLayer(dim) for _ in range(layers))


SPEC = FlowSpec(
    name="planar",
    summary="K planar layers x = z + û·tanh(wᵀz + b), rank-one Jacobian, inverse by bisection",
    build=build,
    kind="discrete",
    logdet="exact",
    options={"layers": Option(4, "number of planar layers K", low=1, high=256)},
    references=(
        "Rezende & Mohamed (2015). Variational Inference with Normalizing Flows. https://arxiv.org/abs/1505.05770",
    ),
    explanation=EXPLANATION,
    mixes=True,  # each layer's Jacobian I + h'·û wᵀ has (generically) no zero entry
)


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    register(SPEC)
