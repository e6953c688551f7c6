"""Pyro 1.9.2 ``Sylvester``: ``log_abs_det_jacobian`` is not log|det| of the transform's Jacobian once R and S are
away from their initialisation (a correct formula for Pyro's own x -> y would be Σ log|1 + h'·diag(S Qᵀ ... )|)."""

import torch
from pyro.distributions.transforms import Sylvester

torch.manual_seed(0)
transform = Sylvester(4, count_transforms=1).double()
with torch.no_grad():  # move the parameters away from Pyro's ±0.01 initialisation, as training does
    for parameter in transform.parameters():
        parameter.add_(0.5 * torch.randn_like(parameter))
x = torch.randn(1, 4, dtype=torch.float64)
y = transform(x)
jacobian = torch.autograd.functional.jacobian(lambda v: transform(v[None])[0], x[0])
print("expected (log|det| of the autograd Jacobian):", round(float(torch.linalg.slogdet(jacobian).logabsdet), 6))
print("actual (transform.log_abs_det_jacobian):     ", round(transform.log_abs_det_jacobian(x, y)[0].item(), 6))
