"""normflows 1.7.3 ``flows.ActNorm``: the data-dependent initialisation divides by ``z.std(dim=0)``, NaN for one row
(Bessel's correction divides by n - 1 = 0); it also runs in eval mode, on the first batch whatever its rows."""

import normflows
import torch

layer = normflows.flows.ActNorm((2,))
x, log_det = layer(torch.tensor([[0.5, -1.0]]))
print("expected: finite outputs for a batch of one row")
print("actual:  ", x.detach().tolist(), log_det.item())
layer = normflows.flows.ActNorm((2,)).eval()
point = torch.tensor([[0.5, -1.0]])
alone = normflows.flows.ActNorm((2,)).eval()(torch.cat([point, point + 1]))[0][0]
with_other = layer(torch.cat([point, 10 * point]))[0][0]
print(
    "eval mode, first call: the same point's output with another row beside it:",
    alone.detach().tolist(),
    "vs",
    with_other.detach().tolist(),
)
