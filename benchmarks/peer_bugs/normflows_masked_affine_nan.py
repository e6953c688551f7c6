"""normflows 1.7.3 ``flows.MaskedAffineFlow``: ``z_ = b*z + (1-b)*(z*exp(scale) + trans)`` (``inverse``:
``exp(-scale)``) computes ``exp`` for the kept coordinates too and multiplies it by the mask's 0: where it
overflows, 0 * inf = NaN replaces a coordinate that should pass through unchanged."""

import normflows
import torch

torch.manual_seed(0)
layer = normflows.flows.MaskedAffineFlow(torch.tensor([1.0, 0.0]), s=normflows.nets.MLP([2, 8, 2]))
with torch.no_grad():
    for parameter in layer.parameters():
        parameter.add_(torch.randn_like(parameter))
    for kept in (-1000.0, 1000.0):
        point = torch.tensor([[kept, 1.0]])  # far out: the scale network's output overflows exp in float32
        forward, _ = layer(point)
        inverse, _ = layer.inverse(point)
        print(
            f"expected: coordinate 0 = {kept} in both directions (masked: passes through); "
            f"actual: forward {forward[0, 0].item()}, inverse {inverse[0, 0].item()}"
        )
