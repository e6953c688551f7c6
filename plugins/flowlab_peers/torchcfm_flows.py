"""``torchcfm.otcfm_8gaussians``: a velocity field trained with torchcfm's exact optimal-transport conditional flow
matching on flowlab's ``8gaussians``, adapted as a CNF with :func:`flowlab.adapters.velocity_spec`.

The field is torchcfm's own ``MLP(2, w=WIDTH, time_varying=True)``, which reads ``[x, t]`` as one input
(``time="concat"``). Its trained parameters ship beside this module (``otcfm_8gaussians.pth``, loaded with
``weights_only=True``): training takes tens of seconds, too long for registration. Regenerate them with
``python -m flowlab_peers.torchcfm_flows`` (needs torchcfm and POT). torchcfm is imported when the flow is built.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from flowlab.adapters import velocity_spec

WIDTH = 32
STATE = Path(__file__).with_name("otcfm_8gaussians.pth")
#: how the shipped state was trained (``train``'s defaults)
STEPS, BATCH, LR, SIGMA, SEED = 3000, 256, 1e-3, 0.1, 0


def untrained() -> nn.Module:
    from torchcfm.models import MLP

    model: nn.Module = MLP(2, w=WIDTH, time_varying=True)
    return model


def field() -> nn.Module:
    """torchcfm's MLP at the shipped trained parameters."""
    model = untrained()
    model.load_state_dict(torch.load(STATE, weights_only=True))
    return model


def train(steps: int = STEPS, batch: int = BATCH, lr: float = LR, sigma: float = SIGMA, seed: int = SEED) -> nn.Module:
    """torchcfm's recipe: ``ExactOptimalTransportConditionalFlowMatcher(sigma)`` couplings of ``N(0, I)`` noise and
    ``8gaussians`` data, ``‖v(x_t, t) − u_t‖²`` minimised by Adam."""
    from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher

    import flowlab

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    data = flowlab.dataset_spec("8gaussians")
    model = untrained()
    matcher = ExactOptimalTransportConditionalFlowMatcher(sigma=sigma)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        x1 = data.sample(batch, generator)
        x0 = torch.randn(batch, 2, generator=generator)
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        loss = (model(torch.cat([xt, t[:, None]], dim=-1)) - ut).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


SPECS = [
    velocity_spec(
        "torchcfm.otcfm_8gaussians",
        "torchcfm OT-CFM velocity field trained on 8gaussians (shipped state), as a CNF with the exact trace",
        field,
        2,
        library="torchcfm",
        time="concat",
        explanation="**Field.** torchcfm's `MLP(2, w=32, time_varying=True)` (three SELU hidden layers, input "
        f"`[x, t]`) trained by torchcfm's `ExactOptimalTransportConditionalFlowMatcher(sigma={SIGMA})` on flowlab's "
        f"`8gaussians` ({STEPS} Adam steps of {BATCH} points, lr {LR}). **As a flow**: `dx/dt = v(t, x)` from noise "
        "(t = 0) to data (t = 1), integrated by flowlab's `ODEBijector` with the exact trace, so it has the "
        "likelihood torchcfm does not compute (`log p(x) = log N(z) − ∫₀¹ tr ∂v/∂x dt`). Checked at its trained "
        "parameters, in 2D.",
        references=(
            "Tong et al. (2024). Improving and generalizing flow-based generative models with minibatch optimal "
            "transport. TMLR. https://arxiv.org/abs/2302.00482",
            "Lipman et al. (2023). Flow Matching for Generative Modeling. https://arxiv.org/abs/2210.02747",
        ),
    )
]


if __name__ == "__main__":
    torch.save(train().state_dict(), STATE)
    print(f"wrote {STATE}")
