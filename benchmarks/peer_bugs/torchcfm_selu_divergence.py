"""torchcfm 1.0.7 ``models.MLP`` uses SELU, whose derivative jumps at 0 (1.05 above, 1.76 below): the field's
divergence is discontinuous, so an adaptive solver's error control does not hold for the log-likelihood integral.
Solving the log-det forward then backward at rtol = atol = 1e-7 should return to 0 within ~1e-6; with SELU it does
not, with a smooth activation (SiLU) it does."""

import torch
from torchdiffeq import odeint


def roundtrip(activation: type[torch.nn.Module]) -> float:
    torch.manual_seed(0)
    width = 32
    net = torch.nn.Sequential(
        torch.nn.Linear(3, width), activation(), torch.nn.Linear(width, width), activation(), torch.nn.Linear(width, 2)
    ).double()

    def dynamics(t, state):
        with torch.enable_grad():
            x = state[0].detach().requires_grad_(True)
            v = net(torch.cat([x, t.expand(x.shape[0], 1)], dim=-1))
            div = sum(torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(2))
        return v.detach(), div.detach()

    x0 = 2 * torch.randn(64, 2, dtype=torch.float64)
    forward = odeint(
        dynamics, (x0, torch.zeros(64, dtype=torch.float64)), torch.tensor([0.0, 1.0]).double(), rtol=1e-7, atol=1e-7
    )
    back = odeint(dynamics, (forward[0][-1], forward[1][-1]), torch.tensor([1.0, 0.0]).double(), rtol=1e-7, atol=1e-7)
    return float(back[1][-1].abs().max())


print("expected: log-det round trip within ~1e-6 (the solver's tolerance)")
print(f"actual:   SELU (torchcfm's MLP) {roundtrip(torch.nn.SELU):.2e}; SiLU {roundtrip(torch.nn.SiLU):.2e}")
