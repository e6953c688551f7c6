"""flowlab plugin ``ffjord``: a CNF whose log-det uses Hutchinson's trace estimator while training."""

from __future__ import annotations

from typing import Any

from flowlab import FlowSpec, Option, hookimpl
from flowlab.ode import (
    ODE_CHECK_OPTIONS,
    ODE_CONVENTION,
    ODE_NOTES,
    ODE_REFERENCES,
    ExactTrace,
    Hutchinson,
    ODEBijector,
    build_ode_bijector,
    ode_options,
    ode_tolerances,
)

EXPLANATION = (
    r"""
**Transform and inverse**: as `cnf`: `x = z(1)` for `dz/dt = f(t, z)`, inverted by integrating backwards.

**Log-determinant** `∫₀¹ tr ∂f/∂z dt`, with the trace *estimated* (Grathwohl et al. 2019) in training mode:
`tr J = E[vᵀ J v]` for any probe with `E[v vᵀ] = I`. `vᵀ J` is one vector-Jacobian product, so each evaluation
costs O(1) backward passes instead of the exact trace's O(d): this is what makes CNFs scale with `d`. The log-det
(and so the loss) is then an unbiased estimate, not the exact value.

- `probe`: `rademacher` (entries ±1; variance `‖J‖²_F + tr(J²) − 2 Σ J_ii²`, the smaller) or `gaussian`
  (variance `‖J‖²_F + tr(J²)`).
- The probe is **drawn once per solve and held fixed through it** (also through the adjoint solve), from a
  `torch.Generator` seeded by `seed` on the CPU, so a seed gives the same probes on every device. Redrawing it at
  every function evaluation makes the integrand non-smooth in t and the adaptive solver's NFE explode (the
  `hutchinson_fixed_probe` check catches this).
- `eval_trace`: in eval mode (`bijector.eval()`), `exact` (default: a deterministic `log_prob` for evaluation) or
  `hutchinson`.
"""
    + ODE_CONVENTION
    + ODE_NOTES
)


def build(dim: int, *, probe: str, eval_trace: str, seed: int, **options: Any) -> ODEBijector:
    train = Hutchinson(probe)
    evaluation = ExactTrace() if eval_trace == "exact" else train
    return build_ode_bijector(dim, options, trace=train, eval_trace=evaluation, seed=seed)


SPEC = FlowSpec(
    name="ffjord",
    summary="FFJORD: CNF with Hutchinson's trace estimator while training (O(1) per evaluation), exact at eval",
    build=build,
    kind="continuous",
    logdet="stochastic",
    options={
        **ode_options(),
        "probe": Option("rademacher", "Hutchinson probe distribution", choices=Hutchinson.DISTRIBUTIONS),
        "eval_trace": Option("exact", "trace in eval mode", choices=("exact", "hutchinson")),
        "seed": Option(0, "seed of the probes' torch.Generator", low=0),
    },
    references=(
        "Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud (2019). FFJORD: Free-form Continuous Dynamics for "
        "Scalable Reversible Generative Models. https://arxiv.org/abs/1810.01367",
        "Hutchinson (1989). A stochastic estimator of the trace of the influence matrix for Laplacian smoothing "
        "splines.",
        *ODE_REFERENCES,
    ),
    explanation=EXPLANATION,
    tolerances=ode_tolerances(),
    mixes=True,
    # the kit's exactness properties (log-dets that cancel, batch independence) do not hold for a random estimate
    # at evaluation; the Hutchinson checks cover that mode
    check_options={**ODE_CHECK_OPTIONS, "eval_trace": "exact"},
)


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    register(SPEC)
