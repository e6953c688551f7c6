"""normflows 1.7.3 ``flows.Composite._cascade`` sums its layers' log-dets into ``torch.zeros(batch_size)``: float32 and
on the CPU whatever the input's dtype and device."""

import normflows
import torch

torch.manual_seed(0)
composite = normflows.flows.Composite([normflows.flows.MaskedAffineFlow(torch.tensor([1.0, 0.0]))]).double()
_, log_det = composite(torch.randn(3, 2, dtype=torch.float64))
print("expected: torch.float64")
print("actual:  ", log_det.dtype)
