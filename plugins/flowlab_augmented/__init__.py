"""flowlab plugin ``augmented``: an augmented CNF over (x, u) with an importance-weighted marginal ``log p(x)``."""

from __future__ import annotations

from typing import Any, cast

from flowlab import FlowSpec, Option, hookimpl
from flowlab.ode import (
    ODE_CHECK_OPTIONS,
    ODE_CONVENTION,
    ODE_NOTES,
    ODE_REFERENCES,
    build_ode_bijector,
    ode_options,
    ode_tolerances,
)
from flowlab_augmented.bijector import AugmentedCNF
from flowlab_augmented.checks import CHECKS

EXPLANATION = (
    r"""
**Transform.** A CNF on the joint space `(x, u) ∈ R^(d+k)` (`dim` = `d + k`; the last `augment` = `k`
coordinates are `u`): `(x, u) = φ(z)`, `φ` the time-1 map of `d(z)/dt = f(t, z)` on `R^(d+k)`, with the base
`N(0, I_(d+k))`. The extra dimensions give the flow room to move mass around without trajectories crossing, which
an ODE in `R^d` cannot do (a flow map is a homeomorphism isotopic to the identity).
**Inverse**: integrate backwards, as `cnf`. The exact trace is used, so the **joint** density
`log p(x, u) = log N(φ⁻¹(x, u)) + log|det ∂φ⁻¹/∂(x, u)|` is exact (and the `Flow` of this bijector is a
normalized density on `R^(d+k)`).

**Marginal.** `p(x) = ∫ p(x, u) du` is intractable; `bijector.marginal_log_prob(x, samples=K)` returns the
importance-weighted estimate `log (1/K) Σ_k p(x, u_k) / q(u_k | x)` with `u_k ~ q` (the base `N(0, I_k)`, or a
learned Gaussian `q(u | x)` with `proposal="learned"`). By Jensen's inequality its expectation is a **lower bound**
on `log p(x)` that rises with `K` (Burda et al. 2016) and is tight when `q(u | x) = p(u | x)`. Cost: `K` solves'
worth of rows per point. Train on the bound (or the joint with `u ~ q`), report it as a bound.

**Why ANODE's zero-padding is not a density model.** ANODE (Dupont et al. 2019) appends `u = 0` to `x` and reads
off the first `d` outputs. Pushed through the flow, the padded points stay on a `d`-dimensional surface of
`R^(d+k)`, and a measure on a surface has no density in `R^(d+k)`; the instantaneous change of variables gives the
log-det of the `(d+k)`-dimensional map, not of `x ↦ first d coordinates of φ(x, 0)`, a map `R^d → R^d` that need
not even be injective. A density model needs `u` to be *random*, with its own density, and then `p(x)` is a
marginal: hence the joint base and the importance-weighted bound here.
"""
    + ODE_CONVENTION
    + ODE_NOTES
)


def build(dim: int, *, augment: int, proposal: str, samples: int, **options: Any) -> AugmentedCNF:
    bijector = build_ode_bijector(dim, options, cls=AugmentedCNF, augment=augment, proposal=proposal, samples=samples)
    return cast("AugmentedCNF", bijector)


SPEC = FlowSpec(
    name="augmented",
    summary="augmented CNF on (x, u): exact joint density, importance-weighted lower bound on log p(x)",
    build=build,
    kind="continuous",
    logdet="exact",
    min_dim=2,
    options={
        **ode_options(),
        "augment": Option(1, "k: the last k of the dim coordinates are the augmentation u (1 <= k < dim)", low=1),
        "proposal": Option("base", "q(u | x): the base N(0, I_k) or a learned Gaussian", choices=("base", "learned")),
        "samples": Option(16, "K, importance samples of marginal_log_prob", low=1),
    },
    references=(
        "Dupont, Doucet & Teh (2019). Augmented Neural ODEs. https://arxiv.org/abs/1904.01681",
        "Huang, Dinh & Courville (2020). Augmented Normalizing Flows: Bridging the Gap Between Generative Flows and "
        "Latent Variable Models. https://arxiv.org/abs/2002.07101",
        "Burda, Grosse & Salakhutdinov (2016). Importance Weighted Autoencoders. https://arxiv.org/abs/1509.00519",
        *ODE_REFERENCES,
    ),
    explanation=EXPLANATION,
    tolerances=ode_tolerances(),
    mixes=True,
    # a learned proposal is trained by the marginal bound only: the kit's ``gradients`` property (every parameter
    # gets a gradient from the joint log_prob) does not hold for it by design
    check_options={**ODE_CHECK_OPTIONS, "proposal": "base"},
)


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    register(SPEC)


@hookimpl
def flowlab_register_checks(register: Any) -> None:
    for check in CHECKS:
        register(check)
