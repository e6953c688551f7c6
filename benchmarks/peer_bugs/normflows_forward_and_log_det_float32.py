"""normflows 1.7.3 ``NormalizingFlow.forward_and_log_det`` / ``inverse_and_log_det`` / ``forward_kld`` accumulate the
log-dets into ``torch.zeros(len(z), device=z.device)``: the default dtype (float32) whatever the input's."""

import normflows
import torch

torch.manual_seed(0)
layers = [normflows.flows.MaskedAffineFlow(torch.tensor([1.0, 0.0]), normflows.nets.MLP([2, 8, 2]))]
model = normflows.NormalizingFlow(normflows.distributions.DiagGaussian(2), layers).double()
z = torch.randn(3, 2, dtype=torch.float64)
_, log_det = model.forward_and_log_det(z)
_, inverse_log_det = model.inverse_and_log_det(z)
print("expected: torch.float64 / torch.float64")
print(f"actual:   {log_det.dtype} / {inverse_log_det.dtype}")
