"""flowlab plugin ``coupling``: the RealNVP affine coupling layer (:class:`flowlab.layers.AffineCoupling`) as a flow."""

from __future__ import annotations

from typing import Any

from flowlab import CONTEXT_OPTION, FlowSpec, Option, hookimpl
from flowlab.layers import AffineCoupling
from flowlab.nn import CONDITIONER_CHOICES

EXPLANATION = r"""
**Transform.** Split the coordinates by a mask into a kept part `z_a` (even indices with `parity="even"`, odd
with `"odd"`; odd `d` works, the kept part is then the larger or smaller half) and a moved part `z_b`:

    x_a = z_a
    x_b = z_b ⊙ exp(s(z_a)) + t(z_a)

where one MLP (the *conditioner*) outputs both the log-scale `ŝ` and the shift `t`.
**Inverse** (exact, no iteration): `z_a = x_a`, `z_b = (x_b − t(x_a)) ⊙ exp(−s(x_a))`.

**Bounded scale.** `s = B · tanh(ŝ / B)` (a *soft clamp*, `B = scale_bound`, default 3): close to `ŝ` when small,
never beyond `±B`, so `exp(s)` can neither overflow nor vanish however large the input. An unbounded `exp(ŝ)`
(as in many tutorials) overflows to `inf` for large inputs and makes training diverge.

**Jacobian.** Ordering the coordinates as `(a, b)`,

    ∂x/∂z = [ I            0          ]
            [ ∂x_b/∂z_a    diag(exp s) ]

is block lower-triangular, so `log|det ∂x/∂z| = Σ_j s_j(z_a)`: O(d), no determinant to compute, whatever the
conditioner. The price: a layer leaves `z_a` unchanged. Stack layers with a permutation (or alternating parity)
between them (see `stacked`) so every coordinate is transformed.

**Initialisation.** With `identity_init=True` the conditioner's last layer is zero, so the layer starts as the
identity (`s = 0`, `t = 0`): a deep stack starts as a well-conditioned map.

**Conditioning** (`context_dim=k`, `docs/conditioning.md`). The conditioner reads the context `c ∈ R^k`
appended to `z_a`: `s(z_a, c)`, `t(z_a, c)`. For each `c` the layer is a bijection of `z` with the same
triangular Jacobian, so `log|det ∂x/∂z| = Σ_j s_j(z_a, c)`.

**Sign convention.** `forward(z) -> (x, +Σ s)`, `inverse(x) -> (z, −Σ s)`; `log p(x) = log p_z(z) − Σ s`.
"""


def build(dim: int, **options: Any) -> AffineCoupling:
    return AffineCoupling(dim, **options)


SPEC = FlowSpec(
    name="coupling",
    summary="RealNVP affine coupling: x_b = z_b·exp(s(z_a)) + t(z_a), soft-clamped scale, O(d) log-det",
    build=build,
    kind="discrete",
    logdet="exact",
    min_dim=2,
    options={
        "parity": Option("even", "which coordinates pass unchanged", choices=("even", "odd")),
        "hidden": Option(64, "conditioner width", low=1),
        "depth": Option(2, "conditioner hidden layers", low=1),
        "activation": Option("relu", "conditioner activation", choices=CONDITIONER_CHOICES),
        "scale_bound": Option(3.0, "B in s = B·tanh(ŝ/B)", low=1e-3),
        "identity_init": Option(True, "zero the conditioner's last layer", choices=(True, False)),
        "context_dim": CONTEXT_OPTION,
    },
    references=(
        "Dinh, Sohl-Dickstein & Bengio (2017). Density estimation using Real NVP. https://arxiv.org/abs/1605.08803",
    ),
    explanation=EXPLANATION,
)


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    register(SPEC)
