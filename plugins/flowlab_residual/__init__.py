"""flowlab plugin ``residual``: invertible residual flows (i-ResNet, Residual Flows).

Two flows share one bijector: ``residual`` (the Russian-roulette log-det estimate while training, declared
``logdet="stochastic"``) and ``residual_exact`` (``slogdet(I + J_g)`` in both modes, for small ``d``, checking and
teaching). The plugin's own checks (``flowlab_residual.checks``) cover what the kit's exactness properties cannot:
the estimator's unbiasedness, and the Lipschitz bound.
"""

from __future__ import annotations

from typing import Any

from flowlab import Compose, FlowSpec, Option, OptionError, hookimpl
from flowlab.nn import LIPSCHITZ_CHOICES
from flowlab_residual.bijector import PROBES, ElementwiseAffine, ResidualBlock
from flowlab_residual.checks import CHECKS

COMMON = r"""
**Transform.** `x = a ⊙ (f_K ∘ … ∘ f_1)(z) + b` with residual blocks `f(z) = z + g(z)` (and the elementwise affine
`a = exp(s)`, `b`, with `affine=True`). `g` is an MLP of `depth + 1` linear layers and 1-Lipschitz activations
(`lipswish`: `a·sigmoid(βa)/1.1`, β learnt; `elu`); each weight is used as `W̃ = W · c / max(σ(W), c)`
(spectral normalisation, `c = coeff < 1`, `σ(W) = ‖W‖₂` exactly, by an SVD on each call), so
`Lip(g) ≤ c^(depth+1) < 1`: a deterministic function of the weights in both modes (no power-iteration state, whose
estimate `σ̂ ≤ σ` would also only approach the bound from the wrong side). With `spectral_norm=False` the weights
are used as given, and one with `‖W‖₂ > c` is a `LipschitzError` (on loading a state dict and on every call).

**Inverse.** `z = x − g(z)` is a contraction (rate `Lip(g)`): fixed-point iteration from `z = x`, each row until
`Lip/(1 − Lip) · |Δz|_∞ ≤ inverse_tol · (1 + |x|_∞)` (a bound on its error; `inverse_tol` is in float64 terms,
raised to `64·eps` in float32), at most `inverse_max_iter` times, else `ConvergenceError` naming the rows. Cost:
one `g` evaluation per iteration, about `log(tol)/log(Lip)` of them; forward is one evaluation. Gradients of the
inverse: the implicit function theorem, `∂z/∂x = (I + J_g)^{-1}`, by the same iteration in the backward pass.

**Log-determinant.** `∂x/∂z = I + J_g` with `‖J_g‖₂ < 1`, so `det > 0` and

    log det(I + J_g) = Σ_{k≥1} (−1)^{k+1} tr(J_g^k) / k

**Sign convention.** `forward(z) -> (x, Σ_k log det(I + J_{g_k}) + Σ s)`, `inverse(x) -> (z, −the same at the
recovered z)`; `log p(x) = log p_z(z) − Σ_k log det(I + J_{g_k}(z_k)) − Σ s`.
"""

ROULETTE = r"""
**Estimate (training mode).** The series with a Hutchinson probe `v` (`E[v vᵀ] = I`, `probe`) and a random
truncation (*Russian roulette*, Chen et al. 2019): `n = n_exact_terms + M`, `M ~ Geometric(roulette_p)`, term `k`
divided by `P(n ≥ k)`:

    Σ_{k=1}^{n} (−1)^{k+1} vᵀ J_g^k v / (k · P(n ≥ k))

**unbiased** (a fixed truncation is not), with finite variance when `Lip(g)² ≤ 1 − p`: the options must satisfy
`coeff^(2·(depth+1)) ≤ 1 − roulette_p`. `vᵀ J_g^k` is one vector-Jacobian product (O(d·hidden) per layer, no `d`
backward passes), so a call costs `n_exact_terms + max M` of them. `v` and `M` are drawn per row, once per call,
from each block's CPU `torch.Generator` seeded by `seed` (each row an independent estimate; a seed gives the same
draws on every device). **Eval mode**: `eval_logdet="exact"` (default: `slogdet(I + J_g)`, a deterministic
`log_prob`, O(d³)) or `"roulette"` (the same estimate).
"""

EXACT = r"""
**Exact (both modes).** `slogdet(I + J_g)`, with `J_g = W̃_L D_{L−1} … D_1 W̃_1` (`D_l = diag φ'(a_l)`) in closed
form: `d` vector-Jacobian products and an O(d³) determinant per row. For small `d`, checking and teaching; `residual`
estimates the same quantity without the `d³`.
"""

REFERENCES = (
    "Behrmann, Grathwohl, Chen, Duvenaud & Jacobsen (2019). Invertible Residual Networks. "
    "https://arxiv.org/abs/1811.00995",
    "Chen, Behrmann, Duvenaud & Jacobsen (2019). Residual Flows for Invertible Generative Modeling. "
    "https://arxiv.org/abs/1906.02735",
    "Miyato, Kataoka, Koyama & Yoshida (2018). Spectral Normalization for Generative Adversarial Networks. "
    "https://arxiv.org/abs/1802.05957",
)

OPTIONS = {
    "blocks": Option(4, "number of residual blocks K", low=1, high=256),
    "hidden": Option(64, "width of g's hidden layers", low=1),
    "depth": Option(2, "hidden layers of g (g has depth + 1 linear layers)", low=1),
    "activation": Option("lipswish", "1-Lipschitz activation of g", choices=LIPSCHITZ_CHOICES),
    "coeff": Option(0.9, "c: every weight's spectral norm is at most c, a number in (0, 1)", check=lambda c: 0 < c < 1),
    "spectral_norm": Option(True, "rescale weights on each call (False: use them as given, check ‖W‖₂ ≤ coeff)"),
    "affine": Option(True, "an elementwise affine layer after the blocks", choices=(True, False)),
    "inverse_tol": Option(1e-10, "bound on the inverse's error, × (1 + |x|_∞), float64 terms", check=lambda t: t > 0),
    "inverse_max_iter": Option(500, "most fixed-point iterations of the inverse (and of its gradient)", low=1),
}

ESTIMATOR_OPTIONS = {
    "n_exact_terms": Option(2, "series terms always computed before the roulette", low=0, high=1000),
    "roulette_p": Option(0.4, "p of M ~ Geometric(p): expected extra terms (1 − p)/p", check=lambda p: 0 < p < 1),
    "probe": Option("rademacher", "Hutchinson probe distribution", choices=PROBES),
    "eval_logdet": Option("exact", "log-det in eval mode", choices=("exact", "roulette")),
    "seed": Option(0, "seed of the blocks' probe and roulette torch.Generators", low=0),
}


def build(dim: int, *, blocks: int, affine: bool, **options: Any) -> Compose:
    """``K`` residual blocks (then an elementwise affine layer with ``affine``); ``options`` go to every block."""
    layers: list[Any] = [ResidualBlock(dim, index=k, **options) for k in range(blocks)]
    if affine:
        layers.append(ElementwiseAffine(dim))
    return Compose(layers)


def build_roulette(dim: int, *, coeff: float, depth: int, roulette_p: float, **options: Any) -> Compose:
    lipschitz = coeff ** (depth + 1)
    if lipschitz**2 > 1 - roulette_p:
        raise OptionError(
            f"residual: the Russian-roulette estimate has a finite variance only if Lip(g)² ≤ 1 − roulette_p, with "
            f"Lip(g) ≤ coeff^(depth + 1) = {lipschitz:.4g}; got coeff={coeff:g}, depth={depth}, "
            f"roulette_p={roulette_p:g} ({lipschitz**2:.4g} > {1 - roulette_p:.4g}): lower roulette_p (at most "
            f"{1 - lipschitz**2:.4g}) or coeff"
        )
    return build(dim, coeff=coeff, depth=depth, roulette_p=roulette_p, logdet="roulette", **options)


def build_exact(dim: int, **options: Any) -> Compose:
    return build(dim, logdet="exact", eval_logdet="exact", **options)


# the kit builds every flow many times per property (and up to d=32 in `stress`): two blocks of width 16 cover every
# code path (block composition, the affine layer, the fixed point, both activations) at a fraction of the cost
CHECK_SIZE = {"blocks": 2, "hidden": 16}

SPEC = FlowSpec(
    name="residual",
    summary="residual flow x = z + g(z), Lip(g) < 1 (spectral norm), fixed-point inverse, roulette log-det estimate",
    build=build_roulette,
    kind="discrete",
    logdet="stochastic",
    options={**OPTIONS, **ESTIMATOR_OPTIONS},
    references=(
        *REFERENCES,
        "Hutchinson (1989). A stochastic estimator of the trace of the influence matrix for Laplacian smoothing "
        "splines.",
    ),
    explanation=COMMON + ROULETTE,
    mixes=True,
    # the kit's exactness properties (log-dets that cancel, batch independence, sample consistency) cannot hold for a
    # random estimate: they run with the exact log-det in eval mode; the roulette is checked by
    # residual_roulette_unbiased, in training mode, where it is used
    check_options={**CHECK_SIZE, "eval_logdet": "exact"},
)

SPEC_EXACT = FlowSpec(
    name="residual_exact",
    summary="residual flow x = z + g(z) with the exact log-det slogdet(I + J_g) (small d; checking, teaching)",
    build=build_exact,
    kind="discrete",
    logdet="exact",
    options=OPTIONS,
    references=REFERENCES,
    explanation=COMMON + EXACT,
    mixes=True,
    check_options=CHECK_SIZE,  # as for residual
)


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    register(SPEC)
    register(SPEC_EXACT)


@hookimpl
def flowlab_register_checks(register: Any) -> None:
    for check in CHECKS:
        register(check)
