"""normflows 1.7.3 ``flows.Planar(act='leaky_relu')``: h'(·) is built as ``(x < 0) * (slope - 1.0) + 1.0``, a float32
tensor (bool times a Python float), so the log-det is float32 for float64 input."""

import normflows
import torch

torch.manual_seed(0)
planar = normflows.flows.Planar((2,), act="leaky_relu").double()
_, log_det = planar(torch.randn(3, 2, dtype=torch.float64))
print("expected: torch.float64")
print("actual:  ", log_det.dtype)
