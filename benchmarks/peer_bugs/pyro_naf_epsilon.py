"""Pyro 1.9.2 ``NeuralAutoregressive``: the log-det adds ``eps = 1e-8`` inside a log (``log(A + eps)``), a deliberate
bias of order 1e-8 against the true log|det| (documented in the code as the class attribute ``eps``)."""

import torch
from pyro.distributions.transforms import neural_autoregressive

torch.manual_seed(0)
transform = neural_autoregressive(2, hidden_dims=[7], width=4).double()
with torch.no_grad():
    for parameter in transform.parameters():
        parameter.add_(0.3 * torch.randn_like(parameter))
x = torch.randn(1, 2, dtype=torch.float64)
y = transform(x)
jacobian = torch.autograd.functional.jacobian(lambda v: transform(v[None])[0], x[0])
expected = float(torch.linalg.slogdet(jacobian).logabsdet)
actual = transform.log_abs_det_jacobian(x, y)[0].item()
print(f"expected (autograd): {expected:.12f}")
print(f"actual (Pyro):       {actual:.12f}  (difference {actual - expected:.2e})")
