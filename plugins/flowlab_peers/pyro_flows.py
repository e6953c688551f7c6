"""Pyro's flows (``pyro.distributions.transforms``): ``pyro.spline``, ``pyro.householder``, ``pyro.sylvester``,
``pyro.naf`` and ``pyro.conditional_spline``, adapted with :func:`flowlab.adapters.from_pyro`.

Pyro implements no inverse for ``Sylvester`` and ``NeuralAutoregressive`` (it answers from the cache of the last
forward call only): they are inverted by :class:`flowlab.adapters.NumericInverse`, which the kit checks as part of
the flow. Pyro is imported when a flow is built, not when the plugin registers them.
"""

from __future__ import annotations

from typing import Any

from flowlab import Bijector, Option
from flowlab.adapters import adapted_spec, from_pyro

LIBRARY = "pyro-ppl"
REFERENCE = (
    "Bingham et al. (2019). Pyro: Deep Universal Probabilistic Programming. JMLR 20(28). "
    "https://jmlr.org/papers/v20/18-403.html"
)
SPLINES = "Durkan et al. (2019). Neural Spline Flows. https://arxiv.org/abs/1906.04032"
SPLINE_OPTIONS = {
    "bins": Option(8, "spline bins", low=2, high=64),
    "bound": Option(3.0, "the splines act on [-B, B], identity outside", low=1e-3),
    "order": Option("linear", "the spline's segments", choices=("linear", "quadratic")),
}


def _transforms() -> Any:
    import pyro.distributions.transforms

    return pyro.distributions.transforms


def spline(dim: int, *, bins: int, bound: float, order: str) -> Bijector:
    return from_pyro(_transforms().Spline(dim, count_bins=bins, bound=bound, order=order), dim)


def householder(dim: int, *, reflections: int) -> Bijector:
    return from_pyro(_transforms().Householder(dim, count_transforms=reflections), dim)


def sylvester(dim: int, *, reflections: int) -> Bijector:
    return from_pyro(_transforms().Sylvester(dim, count_transforms=reflections), dim, solve_inverse=True)


def neural_autoregressive(dim: int, *, hidden: int, width: int) -> Bijector:
    # Pyro's AutoRegressiveNN needs at least dim hidden units: hidden per coordinate, as Pyro's default 3·dim + 1
    transform = _transforms().neural_autoregressive(dim, hidden_dims=[hidden * dim + 1], width=width)
    return from_pyro(transform, dim, solve_inverse=True)


def conditional_spline(dim: int, *, bins: int, bound: float, order: str, hidden: int, context_dim: int) -> Bijector:
    transform = _transforms().conditional_spline(
        dim, context_dim, hidden_dims=[hidden], count_bins=bins, bound=bound, order=order
    )
    return from_pyro(transform, dim, context_dim=context_dim)


SPECS = [
    adapted_spec(
        "pyro.spline",
        "Pyro Spline: elementwise monotonic rational splines on [-B, B], identity outside",
        spline,
        library=LIBRARY,
        explanation="**Transform.** Pyro's `Spline`: every coordinate through its own monotonic rational spline "
        "(`order='linear'`: rational-linear, `'quadratic'`: rational-quadratic) on `[-B, B]` with `bins` bins of "
        "learnable widths, heights and derivatives; identity outside. Elementwise: the Jacobian is diagonal, log-det "
        "`Σ log spline'(z_i)`.",
        options=SPLINE_OPTIONS,
        references=(REFERENCE, SPLINES),
    ),
    adapted_spec(
        "pyro.householder",
        "Pyro Householder: x = H_K ... H_1 z, reflections H = I − 2uuᵀ/‖u‖² (volume preserving)",
        householder,
        library=LIBRARY,
        explanation="**Transform.** Pyro's `Householder`: `K` reflections `H_k = I − 2 u_k u_kᵀ / ‖u_k‖²` applied in "
        "order; an orthogonal map, so log-det 0. Its inverse applies the reflections in reverse order (each is "
        "its own inverse).",
        options={"reflections": Option(2, "number of Householder reflections", low=1, high=64)},
        min_dim=2,
        mixes=True,
        references=(
            REFERENCE,
            "Tomczak & Welling (2016). Improving Variational Auto-Encoders using Householder Flow. "
            "https://arxiv.org/abs/1611.09630",
        ),
    ),
    adapted_spec(
        "pyro.sylvester",
        "Pyro Sylvester: x = z + QR tanh(SQᵀz + b) (Householder Q), inverted numerically",
        sylvester,
        library=LIBRARY,
        explanation="**Transform.** Pyro's `Sylvester` (Householder type): `x = z + A tanh(B z + b)` with "
        "`A = Q R`, `B = S Qᵀ` in the paper, `R`, `S` upper triangular (diagonals through tanh), `Q` a product of "
        "Householder reflections. Log-det by Sylvester's determinant identity, "
        "`Σ log|1 + tanh'(·)_i R_ii S_ii|`. Pyro has no inverse: `NumericInverse`.",
        options={"reflections": Option(1, "Householder reflections in Q", low=1, high=64)},
        min_dim=2,
        mixes=True,
        references=(
            REFERENCE,
            "van den Berg, Hasenclever, Tomczak & Welling (2018). Sylvester Normalizing Flows for Variational "
            "Inference. https://arxiv.org/abs/1803.05649",
        ),
    ),
    adapted_spec(
        "pyro.naf",
        "Pyro NeuralAutoregressive (NAF): autoregressive monotonic sigmoid networks, inverted numerically",
        neural_autoregressive,
        library=LIBRARY,
        explanation="**Transform.** Pyro's `NeuralAutoregressive`: each `x_i` is a deep-sigmoidal network of `z_i` "
        "(`width` sigmoid units) whose weights a MADE (`hidden·dim + 1` units) computes from `z_<i`, then a logit; the "
        "Jacobian is triangular, log-det `Σ log ∂x_i/∂z_i`. Pyro has no inverse: `NumericInverse`.",
        options={
            "hidden": Option(3, "MADE conditioner's hidden units per coordinate (hidden·dim + 1)", low=1, high=64),
            "width": Option(8, "sigmoid units of each coordinate's monotonic network", low=1, high=256),
        },
        references=(
            REFERENCE,
            "Huang, Krueger, Lacoste & Courville (2018). Neural Autoregressive Flows. https://arxiv.org/abs/1804.00779",
        ),
    ),
    adapted_spec(
        "pyro.conditional_spline",
        "Pyro ConditionalSpline: the splines of pyro.spline with parameters computed from a context",
        conditional_spline,
        library=LIBRARY,
        explanation="**Transform.** Pyro's `conditional_spline`: the elementwise splines of `pyro.spline`, their "
        "widths, heights and derivatives computed by a dense network (`hidden` units) of the context `c`; "
        "`T_c = module.condition(c)`, one context per row.",
        options={
            **SPLINE_OPTIONS,
            "hidden": Option(16, "width of the context network's hidden layer", low=1, high=1024),
            "context_dim": Option(2, "context features (Pyro's conditional transform needs one)", low=1),
        },
        # a conditional transform only: the kit checks it at a two-feature context (it would draw 0 too otherwise)
        check_options={"context_dim": 2},
        references=(REFERENCE, SPLINES),
    ),
]
