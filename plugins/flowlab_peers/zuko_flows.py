"""zuko's flows: ``zuko.realnvp``, ``zuko.maf``, ``zuko.nsf`` (coupling and autoregressive) and ``zuko.cnf``, adapted
through their transforms; ``zuko.nsf_flow``, the whole ``NSF`` flow (with or without a context) as users call it.

zuko is imported when a flow is built, not when the plugin registers them (``flowlab list`` stays fast)."""

from __future__ import annotations

from typing import Any

from flowlab import CONTEXT_OPTION, Option, Tolerance
from flowlab.adapters import Adapted, adapted_spec, from_zuko
from flowlab_peers.options import size_options, stacked

REFERENCE = "Rozet et al. (2022). Zuko: normalizing flows in PyTorch. https://github.com/probabilists/zuko"


def _flows() -> Any:
    import zuko

    return zuko.flows


def realnvp(dim: int, *, transforms: int, hidden: int) -> Adapted:
    flow = _flows().RealNVP(dim, transforms=transforms, hidden_features=(hidden, hidden))
    return from_zuko(flow, dim, model=False)


def maf(dim: int, *, transforms: int, hidden: int) -> Adapted:
    return from_zuko(_flows().MAF(dim, transforms=transforms, hidden_features=(hidden, hidden)), dim, model=False)


def nsf(dim: int, *, transforms: int, hidden: int, bins: int) -> Adapted:
    flow = _flows().NSF(dim, transforms=transforms, bins=bins, hidden_features=(hidden, hidden))
    return from_zuko(flow, dim, model=False)


def nsf_flow(dim: int, *, transforms: int, hidden: int, bins: int, context_dim: int) -> Adapted:
    flow = _flows().NSF(dim, context_dim, transforms=transforms, bins=bins, hidden_features=(hidden, hidden))
    return from_zuko(flow, dim, context_dim=context_dim)


def cnf(dim: int, *, hidden: int, rtol: float, atol: float) -> Adapted:
    flow = _flows().CNF(dim, hidden_features=(hidden, hidden), rtol=rtol, atol=atol, exact=True)
    return from_zuko(flow, dim, model=False)


#: zuko's dopri5 at its default rtol=1e-5, atol=1e-6 is off by up to 5e-4 on the quick profile's cases (two solves
#: per comparison); 1e-2 is flowlab's own ODE tolerance for these properties (flowlab.ode.ode_tolerances)
SOLVER = "zuko's CNF is exact only up to its adaptive solver (rtol=1e-5, atol=1e-6 by default): measured up to 5e-4"
CNF_TOLERANCES = {
    "invertibility": Tolerance(1e-2, f"the round trip solves twice; {SOLVER}"),
    "logdet": Tolerance(
        1e-2, f"the log-det integral and the Jacobian of the solution differ by the solve's error; {SOLVER}"
    ),
    "sample_consistency": Tolerance(1e-2, f"log_prob re-solves the sample backwards; {SOLVER}"),
    "batch_independence": Tolerance(
        1e-2, f"an adaptive solver picks one step size for the whole batch, so a row moves with the others; {SOLVER}"
    ),
    "ode_logdet": Tolerance(
        1e-4,
        "zuko's adaptive solve at rtol = atol = 1e-9 is within 3.4e-6 of the autograd Jacobian (the kit's default 1e-7 "
        "is measured on torchdiffeq, <= 1e-8); about 4x of it comes from zuko integrating the log-det scaled by "
        "trace_scale = 1e-2, so its error is controlled 100x more loosely than the state's (measured against a 1e-12 "
        "solve: 1.2e-6 with trace_scale = 1e-2, 2.6e-7 with 1); zuko could document trace_scale or make it an option",
    ),
}

SPECS = [
    adapted_spec(
        "zuko.realnvp",
        "zuko RealNVP: affine coupling layers with alternating masks",
        realnvp,
        library="zuko",
        explanation="**Transform.** zuko's `RealNVP`: affine coupling, in zuko's data -> noise direction "
        "`y_b = x_b·exp(s) + t` with `(ŝ, t)` an MLP of `x_a` and `s = ŝ / (1 + |ŝ / log 10⁻³|)` (bounded), masks "
        "alternating between even and odd coordinates; log-det `Σ s`.",
        options=size_options(3),
        min_dim=2,
        mixes=stacked,
        references=(REFERENCE,),
    ),
    adapted_spec(
        "zuko.maf",
        "zuko MAF: masked affine autoregressive transforms, orders alternating",
        maf,
        library="zuko",
        explanation="**Transform.** zuko's `MAF`: affine autoregressive transforms, in zuko's data -> noise "
        "direction `y_i = x_i·exp(s_i) + t_i` (bounded `s_i` as in `zuko.realnvp`; a MADE conditioner on the "
        "preceding coordinates, order reversed every transform); the noise -> data direction of an "
        "autoregressive transform takes `dim` passes. Log-det `Σ s_i`.",
        options=size_options(2),
        mixes=stacked,
        references=(REFERENCE,),
    ),
    adapted_spec(
        "zuko.nsf",
        "zuko NSF: autoregressive monotonic rational-quadratic splines on [-5, 5], identity outside",
        nsf,
        library="zuko",
        explanation="**Transform.** zuko's `NSF`: autoregressive transforms whose univariate maps are monotonic "
        "rational-quadratic splines on `[-5, 5]` (`bins` bins, identity outside), order reversed every transform. "
        "Log-det `Σ log ∂x_i/∂z_i`. Not claimed to mix: outside `[-5, 5]` (and where the ReLU conditioner is "
        "flat) an output need not depend on every input.",
        options={**size_options(2), "bins": Option(8, "spline bins", low=2, high=64)},
        # not claimed: the spline is the identity outside [-5, 5], and the kit's mixing check found a point inside
        # where x_0 does not depend on z_1 (ReLU conditioner units all inactive there): not dense everywhere
        mixes=False,
        references=(
            REFERENCE,
            "Durkan et al. (2019). Neural Spline Flows. https://arxiv.org/abs/1906.04032",
        ),
    ),
    adapted_spec(
        "zuko.nsf_flow",
        "zuko NSF as a whole flow: flow(c).log_prob and flow(c).rsample's transform, base included; optional context",
        nsf_flow,
        library="zuko",
        explanation="**The whole flow.** zuko's `NSF` (as `zuko.nsf`) adapted through `flow(c)`, the distribution "
        "users train and sample: the kit's density is `flow(c).log_prob(x)` itself (its standard-normal base "
        "included) and its samples come from `flow(c).transform.inv`. With `context_dim = k > 0` the flow is "
        "conditional: zuko's MADE conditioners read the context `c`.",
        options={
            **size_options(2),
            "bins": Option(8, "spline bins", low=2, high=64),
            "context_dim": CONTEXT_OPTION,
        },
        # not claimed: as zuko.nsf
        mixes=False,
        references=(REFERENCE, "Durkan et al. (2019). Neural Spline Flows. https://arxiv.org/abs/1906.04032"),
    ),
    adapted_spec(
        "zuko.cnf",
        "zuko CNF: free-form Jacobian (FFJORD) transform, exact trace, zuko's adaptive Dormand-Prince solver",
        cnf,
        library="zuko",
        kind="continuous",
        explanation="**Transform.** zuko's `CNF` (`FreeFormJacobianTransform`): `dx/dt = f(t, x)` with an MLP `f` "
        "of `x` and a Fourier time embedding, integrated by zuko's adaptive Dormand-Prince `odeint` (tolerances "
        "`rtol`, `atol`); zuko's `f` is the data -> noise direction (t = 0 -> 1). Log-det by the exact trace, "
        "`∫ tr ∂f/∂x dt`.",
        options={
            "hidden": Option(16, "width of the vector field's hidden layers", low=1, high=1024),
            "rtol": Option(1e-5, "relative tolerance of zuko's adaptive solver", low=1e-13, high=1.0),
            "atol": Option(1e-6, "absolute tolerance of zuko's adaptive solver", low=1e-13, high=1.0),
        },
        mixes=True,
        tolerances=CNF_TOLERANCES,
        references=(
            REFERENCE,
            "Grathwohl et al. (2019). FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative "
            "Models. https://arxiv.org/abs/1810.01367",
        ),
    ),
]
