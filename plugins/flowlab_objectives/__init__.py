"""flowlab plugin ``objectives``: maximum likelihood and the simulation-free flow-matching objectives.

``mle`` trains every flow; ``cfm``, ``otcfm`` and ``rectified`` regress the vector field of an ODE flow onto the
velocity of a conditional path (``paths.py``) at random times, with no ODE solve while training. Time convention
(flowlab's): t = 0 base, t = 1 data; sampling integrates 0 → 1.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from flowlab import Flow, Option, hookimpl
from flowlab.objectives import ObjectiveContext, ObjectiveSpec
from flowlab.ode import continuous_flow
from flowlab_objectives import reflow
from flowlab_objectives.coupling import ot_pairing
from flowlab_objectives.paths import base_points, model_points, regression_loss

LIPMAN = (
    "Lipman, Chen, Ben-Hamu, Nickel & Le (2023). Flow Matching for Generative Modeling. "
    "https://arxiv.org/abs/2210.02747"
)
TONG = (
    "Tong, Fatras, Malkin, Huguet, Zhang, Rector-Brooks, Wolf & Bengio (2024). Improving and generalizing "
    "flow-based generative models with minibatch optimal transport. https://arxiv.org/abs/2302.00482"
)
LIU = (
    "Liu, Gong & Liu (2023). Flow Straight and Fast: Learning to Generate and Transfer Data with Rectified Flow. "
    "https://arxiv.org/abs/2209.03003"
)

CONVENTION = r"""
**Time and direction** (flowlab's ODE flows): t = 0 is the base `N(0, I)`, t = 1 the data; sampling integrates
`dz/dt = f(t, z)` from 0 to 1 (`forward`), and `log q(x)` integrates back from 1 to 0 with the exact trace, as for a
flow trained by maximum likelihood: `flowlab eval`, `sample`, `plot` and `check --checkpoint` treat the result
like any other ODE flow.
"""

PATH = r"""
**The conditional path.** For a base point `x₀` and a data point `x₁`:
`x_t = (1 − (1 − σ) t) x₀ + t x₁`, with velocity `u_t(x_t | x₀, x₁) = x₁ − (1 − σ) x₀` (Lipman et al.'s
optimal-transport path with `σ = σ_min`; at σ = 0 the straight line). At t = 0 it is at `x₀ ~ N(0, I)`; at t = 1 its
law is the data convolved with `N(0, σ²)`.

**The loss.** `L(f) = E_{t ~ U[0,1], (x₀, x₁), x_t} ‖f(t, x_t) − u_t‖²`, one forward pass of the field per point:
no ODE solve, no trace, while training.

**Why the minimiser is the right field.** The marginal path `p_t` (the law of `x_t`) is carried by the
**marginal** field `u_t(x) = E[u_t(x_t | x₀, x₁) | x_t = x]`: averaging the continuity equations of the
conditional paths gives `∂p_t/∂t + ∇·(p_t u_t) = 0`. And `L(f) = E‖f(t, x_t) − u_t(x_t)‖² + C` with `C` free of `f`
(expand the square; the cross term is `E[f · u_t(x_t | ·)] = E[f · E[u_t(x_t | ·) | x_t]]`), so the regression's
minimiser is the marginal field: integrating it from t = 0 carries `N(0, I)` to `p₁ ≈ p_data`. Conditional and
marginal flow matching have the same gradients (Lipman et al. 2023, Theorem 2).
"""


def mle_loss(flow: Flow, x: Tensor, context: ObjectiveContext, condition: Tensor | None = None) -> Tensor:
    """``−mean log q(x) + R``, ``R = bijector.regularization()`` where the bijector has one (RNODE terms); for a
    conditional flow ``−mean log q(x_i | c_i)``, ``condition`` the rows' conditioning contexts ``c_i``."""
    loss = -(flow.log_prob(x) if condition is None else flow.log_prob(x, context=condition)).mean()
    ode = continuous_flow(flow.bijector)
    return loss if ode is None else loss + ode.regularization()


def cfm_loss(flow: Flow, x: Tensor, context: ObjectiveContext) -> Tensor:
    """Conditional flow matching with independent pairs ``(x₀ ~ N(0, I), x₁ = x)``."""
    x1 = model_points(flow, x)
    return regression_loss(flow, base_points(x1, context), x1, context, float(context.options["sigma"]))


def otcfm_loss(flow: Flow, x: Tensor, context: ObjectiveContext) -> Tensor:
    """Flow matching on the exact minibatch optimal-transport coupling of the base draws and the batch."""
    x1 = model_points(flow, x)
    x0 = base_points(x1, context)
    return regression_loss(flow, x0, ot_pairing(x0, x1), context, float(context.options["sigma"]))


def rectified_loss(flow: Flow, x: Tensor, context: ObjectiveContext) -> Tensor:
    """Straight-line matching (σ = 0): independent pairs, or the teacher's couplings after ``reflow_from``."""
    if "couplings" in context.state:
        x0, x1 = reflow.couplings(x, context)
    else:
        x1 = model_points(flow, x)
        x0 = base_points(x1, context)
    return regression_loss(flow, x0, x1, context, 0.0)


SIGMA = Option(1e-4, "σ = σ_min: the width of the conditional path at t = 1 (0: straight lines)", low=0.0, high=1.0)
#: what the flow-matching objectives share: ODE flows only, a vector field, and a larger default step size (at 2000
#: steps on 8gaussians, cnf hidden 32, held-out NLL over seeds 0-2: lr 1e-3 3.56 (seed 0); 3e-3 2.91-2.98;
#: 5e-3 2.88-2.93; 1e-2 2.86-2.92, the entropy 2.83)
MATCHING: dict[str, Any] = {"kinds": frozenset({"continuous"}), "needs_field": True, "lr": 1e-2}

OBJECTIVES = (
    ObjectiveSpec(
        name="mle",
        summary="maximum likelihood: −mean log q(x) through the flow's log-det (an ODE solve per step for CNFs)",
        loss=mle_loss,
        conditional=True,
        references=(
            "Chen, Rubanova, Bettencourt & Duvenaud (2018). Neural Ordinary Differential Equations. "
            "https://arxiv.org/abs/1806.07366",
        ),
        explanation=r"""
**Loss.** `L = −(1/B) Σ_i log q(x_i) + R`: the batch mean of the negative log-likelihood through the change of
variables, plus the bijector's regularization `R` where it has one (RNODE's kinetic and Jacobian terms of ODE
flows). `E_p[−log q] = H(p) + KL(p‖q)`, so minimising it minimises `KL(p‖q)`.

**Conditional flows** (`-o context_dim=10` on digits, docs/conditioning.md): `L = −(1/B) Σ_i log q(x_i | c_i)`, each
row at the one-hot context of its own label; minimising it minimises `E_y KL(p(· | y) ‖ q(· | y))`.

**Cost.** One pass through the flow per step; for a continuous flow that is an ODE solve of the augmented state
`[z, log-det]` with a trace at every function evaluation, and backpropagation through the solver (or an adjoint
solve): the step costs grow with the number of function evaluations, which grows as training makes the field
more complex.
""",
    ),
    ObjectiveSpec(
        name="cfm",
        summary="conditional flow matching (Lipman et al. 2023): regress f(t, x_t) on x₁ − (1−σ)x₀; no ODE solve",
        loss=cfm_loss,
        options={"sigma": SIGMA},
        references=(LIPMAN, TONG),
        explanation=PATH
        + r"""
**Couplings.** `x₀ ~ N(0, I)` and `x₁ ~ p_data` independently. The straight conditional paths of independent pairs
cross; the marginal field averages them, so its paths are curved, and an adaptive solver needs more steps than for
`otcfm` or a reflowed `rectified`.
"""
        + CONVENTION,
        **MATCHING,
    ),
    ObjectiveSpec(
        name="otcfm",
        summary="flow matching on minibatch optimal-transport couplings (Tong et al. 2023): straighter paths",
        loss=otcfm_loss,
        options={"sigma": SIGMA},
        references=(TONG, LIPMAN),
        explanation=PATH
        + r"""
**What OT couplings change.** Within each batch, the base draws and the data points are paired by the exact
optimal-transport plan for the cost `‖x₀ − x₁‖²` (for `B` points against `B` with uniform weights a permutation,
found by `scipy.optimize.linear_sum_assignment`). Everything above still holds for any coupling with the right
marginals, so the minimiser still carries `N(0, I)` to the data; but OT pairs do not cross (cyclical monotonicity),
so the marginal field is close to the conditional one, the learned paths are nearly straight, a fixed-step solver
needs few steps, and the regression target has less variance. As `B → ∞` the flow approaches the dynamic OT map
(Benamou–Brenier). Costs an `O(B³)` assignment per step, negligible for `B` in the hundreds.
"""
        + CONVENTION,
        **MATCHING,
    ),
    ObjectiveSpec(
        name="rectified",
        summary="rectified flow (Liu et al. 2023): straight-line matching; reflow retrains on its own couplings",
        loss=rectified_loss,
        options={
            "reflow_from": Option("", "checkpoint of the flow whose couplings (z, T(z)) to retrain on ('' : none)"),
            "reflow_pairs": Option(10_000, "couplings drawn once from the teacher for reflow", low=1),
        },
        prepare=reflow.prepare,
        references=(LIU, LIPMAN),
        explanation=r"""
**1-rectified flow.** The straight line `x_t = (1 − t) x₀ + t x₁` with velocity `x₁ − x₀` (the path above with
σ = 0), independent pairs: the same regression as `cfm` at σ = 0, with the same argument that the minimiser is the
marginal field and carries `N(0, I)` to the data.

**Reflow.** `-o reflow_from=runs/x/checkpoint.pt` starts from that flow's parameters, draws `reflow_pairs`
couplings `(z, T(z))` once (`z ~ N(0, I)`, `T(z)` the teacher's sample, its ODE integrated from 0 to 1) and
regresses on their straight lines instead of on independent pairs. The new flow has the same marginals at t = 1 as
the teacher (up to its fit), and since the rectified coupling never crosses, its paths are straighter (Liu et al.
2023, Theorem 3.6: the transport cost does not increase): fewer solver steps give the same samples. Each reflow
adds the teacher's fitting error, so one or two are used in practice.
"""
        + CONVENTION,
        **MATCHING,
    ),
)


@hookimpl
def flowlab_register_objectives(register: Any) -> None:
    for objective in OBJECTIVES:
        register(objective)
