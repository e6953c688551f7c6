"""normflows' flows: ``normflows.realnvp`` (masked affine coupling), ``normflows.composite`` (the same layers in a
``normflows.flows.Composite``), ``normflows.planar``, ``normflows.radial`` and ``normflows.actnorm``, adapted layer by
layer; ``normflows.model``, the realnvp model through its own ``forward_and_log_det`` and ``log_prob``.

Each model is a ``normflows.NormalizingFlow`` with normflows' trainable ``DiagGaussian`` base, which
:func:`flowlab.adapters.from_normflows` folds into the bijector as a first affine layer (its parameters stay
trainable and checked). ``Planar`` with ``tanh`` and ``Radial`` have no analytic inverse in normflows: they are
inverted by :class:`flowlab.adapters.NumericInverse` (damped Newton), which the kit checks as part of the flow.
normflows is imported when a flow is built, not when the plugin registers them.
"""

from __future__ import annotations

from typing import Any

import torch

from flowlab import Bijector, Option
from flowlab.adapters import adapted_spec, from_normflows
from flowlab_peers.options import size_options, stacked

REFERENCE = (
    "Stimper et al. (2023). normflows: A PyTorch Package for Normalizing Flows. https://doi.org/10.21105/joss.05361"
)
PLANAR_PAPER = (
    "Rezende & Mohamed (2015). Variational Inference with Normalizing Flows. https://arxiv.org/abs/1505.05770"
)
BASE = (
    " normflows' trainable `DiagGaussian` base `z = loc + exp(log_scale)·ε` is folded in as the first layer on "
    "`ε ~ N(0, I)`."
)


def _library() -> Any:
    import normflows

    return normflows


def _model(dim: int, flows: list[Any], *, solve_inverse: bool = False, model: bool = False) -> Bijector:
    normflows = _library()
    whole = normflows.NormalizingFlow(normflows.distributions.DiagGaussian(dim), flows)
    return from_normflows(whole, dim, solve_inverse=solve_inverse, model=model)


def _coupling_layers(dim: int, transforms: int, hidden: int) -> list[Any]:
    """``MaskedAffineFlow`` layers with alternating binary masks (normflows' RealNVP recipe)."""
    normflows = _library()
    mask = (torch.arange(dim) % 2).float()
    layers: list[Any] = []
    for _ in range(transforms):
        scale = normflows.nets.MLP([dim, hidden, dim], init_zeros=True)
        shift = normflows.nets.MLP([dim, hidden, dim], init_zeros=True)
        layers.append(normflows.flows.MaskedAffineFlow(mask.clone(), shift, scale))
        mask = 1 - mask
    return layers


def realnvp(dim: int, *, transforms: int, hidden: int) -> Bijector:
    return _model(dim, _coupling_layers(dim, transforms, hidden))


def whole_model(dim: int, *, transforms: int, hidden: int) -> Bijector:
    return _model(dim, _coupling_layers(dim, transforms, hidden), model=True)


def composite(dim: int, *, transforms: int, hidden: int) -> Bijector:
    return _model(dim, [_library().flows.Composite(_coupling_layers(dim, transforms, hidden))])


def planar(dim: int, *, transforms: int, act: str) -> Bijector:
    layers = [_library().flows.Planar((dim,), act=act) for _ in range(transforms)]
    return _model(dim, layers, solve_inverse=act == "tanh")


def radial(dim: int, *, transforms: int) -> Bijector:
    return _model(dim, [_library().flows.Radial((dim,)) for _ in range(transforms)], solve_inverse=True)


def actnorm(dim: int) -> Bijector:
    return _model(dim, [_library().flows.ActNorm((dim,))])


LAYERS = {"transforms": Option(3, "number of layers", low=1, high=64)}
COUPLING = (
    "**Transform.** normflows' `MaskedAffineFlow` layers, `x = b⊙z + (1−b)⊙(z·exp(s(b⊙z)) + t(b⊙z))` with "
    "binary masks `b` alternating between odd and even coordinates and zero-initialised MLPs `s`, `t`. Log-det "
    "`Σ (1−b)⊙s`."
)

SPECS = [
    adapted_spec(
        "normflows.realnvp",
        "normflows MaskedAffineFlow coupling layers (RealNVP), DiagGaussian base folded in",
        realnvp,
        library="normflows",
        explanation=COUPLING + BASE,
        options=size_options(3),
        min_dim=2,
        mixes=stacked,
        references=(REFERENCE,),
    ),
    adapted_spec(
        "normflows.model",
        "normflows NormalizingFlow of the realnvp layers through its own forward_and_log_det and log_prob",
        whole_model,
        library="normflows",
        explanation=COUPLING + " **The whole model** (`NormalizingFlow`), called as users call it: sampling "
        "direction `model.forward_and_log_det(z)` (what `sample` and `reverse_kld` run), density "
        "`model.log_prob(x)` (the kit's `Flow.log_prob` is exactly it), with their own log-det accumulators." + BASE,
        options=size_options(3),
        min_dim=2,
        mixes=stacked,
        references=(REFERENCE,),
    ),
    adapted_spec(
        "normflows.composite",
        "normflows.flows.Composite of the realnvp layers (one normflows layer holding the stack)",
        composite,
        library="normflows",
        explanation=COUPLING + " The layers are wrapped in one `normflows.flows.Composite`, which sums their "
        "log-dets itself." + BASE,
        options=size_options(3),
        min_dim=2,
        mixes=stacked,
        references=(REFERENCE,),
    ),
    adapted_spec(
        "normflows.planar",
        "normflows Planar layers x = z + u·h(wᵀz + b), h = tanh (numeric inverse) or leaky_relu (analytic)",
        planar,
        library="normflows",
        explanation="**Transform.** normflows' `Planar`: `x = z + û·h(wᵀz + b)` with `û` reparametrised so that "
        "`wᵀû > −1` (invertible), log-det `log|1 + h'(wᵀz + b)·wᵀû|` (matrix determinant lemma). `act='leaky_relu'` "
        "has normflows' analytic inverse; `act='tanh'` has none, and is inverted by `NumericInverse`." + BASE,
        options={**LAYERS, "act": Option("tanh", "the nonlinearity h", choices=("tanh", "leaky_relu"))},
        mixes=True,
        references=(REFERENCE, PLANAR_PAPER),
    ),
    adapted_spec(
        "normflows.radial",
        "normflows Radial layers x = z + β·(z − z₀)/(α + r), inverted numerically",
        radial,
        library="normflows",
        explanation="**Transform.** normflows' `Radial`: `x = z + β h(α, r)(z − z₀)`, `h = 1/(α + r)`, "
        "`r = ‖z − z₀‖`, with `β ≥ −α` by reparametrisation (invertible); log-det "
        "`(d − 1) log(1 + βh) + log(1 + βh + βh'r)`. normflows has no inverse: `NumericInverse`." + BASE,
        options=LAYERS,
        mixes=True,
        references=(REFERENCE, PLANAR_PAPER),
    ),
    adapted_spec(
        "normflows.actnorm",
        "normflows ActNorm: x = z·exp(s) + t, s and t initialised from the first batch",
        actnorm,
        library="normflows",
        explanation="**Transform.** normflows' `ActNorm` (Glow): `x = z·exp(s) + t` per coordinate, log-det `Σ s` "
        "(a scalar, expanded to `[batch]`); on its first call (in either direction, in training or eval mode) it "
        "sets `s`, `t` from that batch's mean and standard deviation." + BASE,
        references=(
            REFERENCE,
            "Kingma & Dhariwal (2018). Glow: Generative Flow with Invertible 1x1 Convolutions. "
            "https://arxiv.org/abs/1807.03039",
        ),
    ),
]
