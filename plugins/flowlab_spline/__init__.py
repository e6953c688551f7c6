"""flowlab plugin ``spline``: ``nsf``, rational-quadratic neural spline coupling layers (Durkan et al. 2019)."""

from __future__ import annotations

from typing import Any

from flowlab import CONTEXT_OPTION, Compose, FlowSpec, Option, hookimpl
from flowlab.nn import CONDITIONER_CHOICES
from flowlab_spline.bijector import neural_spline_flow
from flowlab_spline.spline import MIN_DERIVATIVE, MIN_HEIGHT, MIN_WIDTH

EXPLANATION = rf"""
**Transform.** `K` coupling layers with a fixed permutation between them. Each layer keeps the first `⌊d/2⌋`
coordinates `a` and moves each other coordinate `b` by its own monotone **rational-quadratic spline** `S`, whose
parameters an MLP computes from the kept part. In the density direction (data to noise):

    z_a = x_a
    z_b = S(x_b; θ(x_a))

A spline of `bins` bins lives on `[-B, B]` (`B = bound`): knots `(x_k, y_k)` from `-B` to `B`, positive derivatives
`δ_k` at them, and in bin `k` (width `w_k`, height `h_k`, slope `s_k = h_k/w_k`, `ξ = (x − x_k)/w_k`)

    S(x) = y_k + h_k [s_k ξ² + δ_k ξ(1−ξ)] / [s_k + (δ_(k+1) + δ_k − 2 s_k) ξ(1−ξ)]

It is strictly increasing, passes through every knot with slope `δ_k` there, and is far more flexible per layer than
an affine map. **Tails**: outside `[-B, B]` the map is the identity, and the boundary derivatives are fixed to
`δ_0 = δ_K = 1`, so the tails join the spline with matching value and slope (linear continuation). An input far
outside the bound is passed through unchanged, with log-det 0: not an error.

**Constraints.** The MLP's `3K − 1` outputs per moved coordinate become widths and heights by a softmax
(widths at least {MIN_WIDTH:g}·2B, heights at least {MIN_HEIGHT:g}·2B) and interior derivatives by a softplus (at
least {MIN_DERIVATIVE:g}), so every parameter value gives a valid, invertible spline. With `identity_init=True` the
MLP's last layer is zero: equal bins and derivatives 1, the identity.

**Inverse (sampling, noise to data).** `x_a = z_a`; `x_b = S⁻¹(z_b)` in closed form: find the bin among the `y_k`,
then `ξ` is the root in `[0, 1]` of a quadratic `a ξ² + b ξ + c = 0`, taken as `ξ = 2c / (−b − √(b² − 4ac))`, the
form without cancellation. One pass, like the density direction: no iteration.

**Log-determinant.** The layer's Jacobian is block triangular with `diag(S'(x_b))` on the moved block, so
`log|det ∂z/∂x| = Σ_b log S'(x_b)`, with

    S'(x) = s_k² [δ_(k+1) ξ² + 2 s_k ξ(1−ξ) + δ_k (1−ξ)²] / [s_k + (δ_(k+1) + δ_k − 2 s_k) ξ(1−ξ)]²

O(d) per layer on top of the MLP, and the same in both directions.

**Mixing.** Between layers the coordinates are rolled by `⌊d/2⌋`, so the part just moved is kept (and conditions)
next. From 4 layers on (3 for even `d`) every output depends on every input; a reversal would not do for odd `d`
(the middle coordinate would never condition anything).

**Cost per layer.** One MLP pass (O(hidden · (d + hidden · depth + d · 3K))) plus O(d log K) for the bin search and
O(d) for the spline, in either direction.

**Conditioning** (`context_dim=k`, `docs/conditioning.md`). Each layer's MLP reads the context `c ∈ R^k`
appended to the kept part: `θ(x_a, c)`. At fixed `c` every layer is the same kind of monotone spline coupling, so
the log-det is the same sum of `log S'`.

**Sign convention.** `forward(z) -> (x, log|det ∂x/∂z|)` is sampling and uses `S⁻¹`; `inverse(x) -> (z, Σ log
S'(x_b))` is the density direction; `log p(x) = log p_z(z) + Σ_layers Σ_b log S'(x_b)`.
"""


def build(dim: int, **options: Any) -> Compose:
    return neural_spline_flow(dim, **options)


SPEC = FlowSpec(
    name="nsf",
    summary="neural spline flow: rational-quadratic spline coupling, identity tails outside [-B, B], rolls between",
    build=build,
    kind="discrete",
    logdet="exact",
    min_dim=2,
    # with a roll by d//2 between layers every output depends on every input from 4 layers on (tests/test_spline.py)
    mixes=lambda options: options["layers"] >= 4,
    options={
        "layers": Option(4, "number of coupling layers K", low=1, high=256),
        "bins": Option(8, "spline bins per coordinate", low=2, high=256),
        "bound": Option(5.0, "B: the splines live on [-B, B], identity outside", low=1e-2),
        "hidden": Option(64, "conditioner width", low=1),
        "depth": Option(2, "conditioner hidden layers", low=1),
        "activation": Option("relu", "conditioner activation", choices=CONDITIONER_CHOICES),
        "identity_init": Option(
            True, "zero the conditioner's last layer (each layer starts as the identity)", choices=(True, False)
        ),
        "context_dim": CONTEXT_OPTION,
    },
    # a small conditioner keeps `flowlab check nsf` cheap (the kit's cost is the MLP's; the spline is O(d))
    check_options={"hidden": 16, "depth": 1},
    references=(
        "Durkan, Bekasov, Murray & Papamakarios (2019). Neural Spline Flows. https://arxiv.org/abs/1906.04032",
        "Gregory & Delbourgo (1982). Piecewise rational quadratic interpolation to monotonic data. "
        "IMA Journal of Numerical Analysis 2(2), 123-130. https://doi.org/10.1093/imanum/2.2.123",
    ),
    explanation=EXPLANATION,
)


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    register(SPEC)
