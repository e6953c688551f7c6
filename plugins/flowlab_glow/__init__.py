"""flowlab plugin ``glow``: K Glow steps (ActNorm, an invertible LU-parametrised linear map, affine coupling)."""

from __future__ import annotations

from typing import Any

from flowlab import CONTEXT_OPTION, Compose, FlowSpec, Option, hookimpl
from flowlab.layers import MIN_STD
from flowlab.nn import CONDITIONER_CHOICES
from flowlab_glow.bijector import glow_step

EXPLANATION = rf"""
**One step** (Kingma & Dhariwal 2018), in the data direction `inverse` (`x → z`, as `log_prob` runs it):

    h = (x − b) ⊙ exp(−σ)       ActNorm
    g = W⁻¹ h                   invertible linear map (Glow's 1×1 convolution)
    z = c⁻¹(g)                  affine coupling, as in `coupling`

with `c⁻¹(g)_a = g_a`, `c⁻¹(g)_b = (g_b − t(g_a)) ⊙ exp(−s(g_a))`. `forward` (`z → x`, sampling) runs the three
inverses in the opposite order: `x = b + exp(σ) ⊙ W c(z)` with `c(z)_b = z_b ⊙ exp(s(z_a)) + t(z_a)`.
`K` steps (`steps`) are composed, the coupling's kept half alternating (even, odd, ...).

**ActNorm.** A per-coordinate affine map whose parameters are *initialised from data*: the first `inverse` call in
training mode sets `b` and `σ` to the mean and log std of its batch, so that its output is zero-mean and
unit-variance per coordinate (each step's ActNorm sees the previous step's output). The std is the population std
(divisor n: 0, not NaN, for one row); a coordinate whose std is at most {MIN_STD:g} (every coordinate of a batch
of one row, a constant coordinate) keeps scale 1 and is only centred. The flag is a buffer, saved in checkpoints.
After that first call, and always in eval mode, ActNorm is a fixed elementwise map: no batch statistics ever.

**Invertible linear map.** `W = P L (U + diag(sign · exp(log|s|)))`: `P` a fixed permutation, `L` unit lower
triangular, `U` strictly upper triangular, `sign` fixed ±1, `log|s|` trained. `det W = ±Π |s_i|` is never 0, so
`W` is invertible whatever the parameters, and

    log|det W| = Σ_i log|s_i|           O(d), no determinant computed

Each direction forms its matrix once per call, O(d³) shared by the batch (`W = P L U`; `W⁻¹ = U⁻¹ L⁻¹ Pᵀ` by
two triangular solves against the identity: no pivoting, never singular), and applies it, O(d²) per point. With
`lu=False`, `W` is a plain matrix: `log|det W|` by `torch.linalg.slogdet` and the inverse by `torch.linalg.solve`,
a pivoted O(d³) factorisation on every call (and `W⁻ᵀ` in the backward pass), and nothing keeps `W` invertible (a
singular one raises `SingularMatrixError`). Both start at a random rotation (`|det W| = 1`).

**Log-determinant of a step.** `log|det ∂x/∂z| = Σ_j s_j(z_a) + log|det W| + Σ_j σ_j`: coupling + linear +
ActNorm, O(d) with `lu=True` besides the coupling network's cost. The linear map mixes every coordinate, so one
step already has a dense Jacobian (`flowlab explain glow --jacobian`).

**Conditioning** (`context_dim=k`, `docs/conditioning.md`). Each step's coupling conditioner reads the context
`c ∈ R^k` appended to `g_a` (as in `coupling`); ActNorm and `W` do not depend on `c`. The log-det at fixed `c` is
the same sum.

**Sign convention.** `forward(z) -> (x, +Σ_k log|det J_k|)`, `inverse(x) -> (z, −Σ_k log|det J_k|)`;
`log p(x) = log p_z(z) + log|det ∂z/∂x|`.
"""


def build(
    dim: int,
    *,
    steps: int,
    hidden: int,
    depth: int,
    activation: str,
    scale_bound: float,
    lu: bool,
    context_dim: int = 0,
) -> Compose:
    coupling = {
        "hidden": hidden,
        "depth": depth,
        "activation": activation,
        "scale_bound": scale_bound,
        "context_dim": context_dim,
    }
    return Compose(glow_step(dim, ("even", "odd")[k % 2], lu=lu, **coupling) for k in range(steps))


SPEC = FlowSpec(
    name="glow",
    summary="K Glow steps: ActNorm (data-initialised), W = P L (U + diag s) with O(d) log-det, affine coupling",
    build=build,
    kind="discrete",
    logdet="exact",
    min_dim=2,  # the affine coupling needs a kept and a moved part
    options={
        "steps": Option(4, "number of Glow steps K", low=1, high=256),
        "hidden": Option(64, "coupling conditioner width", low=1),
        "depth": Option(2, "coupling conditioner hidden layers", low=1),
        "activation": Option("relu", "coupling conditioner activation", choices=CONDITIONER_CHOICES),
        "scale_bound": Option(3.0, "B in the coupling's s = B·tanh(ŝ/B)", low=1e-3),
        "lu": Option(
            True, "LU-parametrised W, O(d) log-det; False: a plain W with slogdet, O(d³)", choices=(True, False)
        ),
        "context_dim": CONTEXT_OPTION,
    },
    # a small conditioner and two steps keep `flowlab check glow` within a few seconds of CPU per property; the
    # kit still draws `lu` and `activation`, and two steps already alternate the coupling's parity
    check_options={"steps": 2, "hidden": 8, "depth": 1},
    references=(
        "Kingma & Dhariwal (2018). Glow: Generative Flow with Invertible 1x1 Convolutions. "
        "https://arxiv.org/abs/1807.03039",
        "Dinh, Sohl-Dickstein & Bengio (2017). Density estimation using Real NVP. https://arxiv.org/abs/1605.08803",
    ),
    explanation=EXPLANATION,
    mixes=True,  # W is dense: every output of a step depends on every input
)


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    register(SPEC)
