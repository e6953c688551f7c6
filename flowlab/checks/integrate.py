"""Estimates of probability mass for the ``normalization`` check: quadrature in a box, importance sampling.

- :func:`box_quadrature`: ``∫_box p`` by the composite Simpson rule on a grid (1 or 2 dims), with an error estimate:
  the difference between Simpson's rule on the grid and on every other grid point. The error of Simpson's rule
  falls like ``h⁴``, so that difference is about 15 times the error of the fine estimate (a safe upper bound).
- :func:`box_mass`: the fraction of samples in the box and its binomial standard error ``√(P(1 − P)/n)``.
- :func:`importance_sampling`: ``Z = E_q[p/q]`` with a multivariate Student-t proposal ``q`` (``dof`` degrees of
  freedom, heavier-tailed than a flow of a Gaussian, so ``p/q`` stays bounded and the CLT applies), fitted to
  samples of the flow (their mean and covariance, inflated). Returns ``Z``, its standard error ``std(w)/√n`` and the
  effective sample size ``(Σw)²/Σw²``; a small ESS means the standard error cannot be trusted.

Every log-density is evaluated in chunks under ``torch.no_grad()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

LogDensity = Callable[[Tensor], Tensor]
CHUNK = 8192


def evaluate(log_density: LogDensity, points: Tensor) -> Tensor:
    """``log_density`` on ``points`` in chunks of ``CHUNK`` rows, without building a graph."""
    with torch.no_grad():
        return torch.cat([log_density(chunk) for chunk in points.split(CHUNK)])


def simpson_weights(n: int, width: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Weights of the composite Simpson rule on ``n`` (odd) equally spaced points spanning ``width``."""
    weights = torch.ones(n, dtype=dtype, device=device)
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    return weights * (width / (n - 1)) / 3.0


@dataclass(frozen=True)
class Quadrature:
    integral: float
    error_estimate: float
    points_per_axis: int


def box_quadrature(log_density: LogDensity, low: Tensor, high: Tensor, points_per_axis: int = 201) -> Quadrature:
    """``∫_{[low, high]} exp(log_density)`` in 1 or 2 dims; ``points_per_axis`` must be ``1 mod 4``."""
    if points_per_axis % 4 != 1:
        raise ValueError(f"points_per_axis must be 1 mod 4, got {points_per_axis}")
    dim = low.numel()
    if dim not in (1, 2):
        raise ValueError(f"box quadrature supports 1 or 2 dimensions, got {dim}")
    axes = [
        torch.linspace(float(lo), float(hi), points_per_axis, dtype=low.dtype, device=low.device)
        for lo, hi in zip(low, high, strict=True)
    ]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, dim)
    density = evaluate(log_density, grid).exp().reshape([points_per_axis] * dim)
    density = torch.nan_to_num(density, nan=math.inf, posinf=math.inf)

    def simpson(values: Tensor, step: int) -> float:
        n = (points_per_axis - 1) // step + 1
        for axis in range(dim):
            width = float(high[axis] - low[axis])
            weights = simpson_weights(n, width, values.dtype, values.device)
            values = torch.tensordot(weights, values, dims=([0], [0]))
        return float(values)

    coarse_values = density[(slice(None, None, 2),) * dim]
    fine, coarse = simpson(density, 1), simpson(coarse_values, 2)
    return Quadrature(fine, abs(fine - coarse), points_per_axis)


def box_mass(samples: Tensor, low: Tensor, high: Tensor) -> tuple[float, float]:
    """The fraction of ``samples`` inside ``[low, high]`` and its standard error."""
    inside = ((samples >= low) & (samples <= high)).all(dim=1).double().mean().item()
    return inside, math.sqrt(max(inside * (1 - inside), 0.0) / samples.shape[0])


@dataclass(frozen=True)
class ImportanceEstimate:
    normalizer: float
    standard_error: float
    effective_sample_size: float
    samples: int


def importance_sampling(
    log_density: LogDensity,
    fit: Tensor,
    samples: int,
    generator: torch.Generator,
    *,
    dof: int = 4,
    inflate: float = 1.5,
) -> ImportanceEstimate:
    """``Z = E_q[p/q]`` with a Student-t proposal fitted to the points ``fit`` (see the module docstring)."""
    dim = fit.shape[1]
    mean = fit.mean(dim=0)
    covariance = torch.atleast_2d(torch.cov(fit.T)) * inflate**2
    covariance = covariance + torch.eye(dim, dtype=fit.dtype, device=fit.device) * 1e-9 * covariance.diagonal().mean()
    tril = torch.linalg.cholesky(covariance)
    normal = torch.randn(samples, dim, generator=generator, dtype=torch.float64).to(fit)
    chi2 = torch.randn(samples, dof, generator=generator, dtype=torch.float64).pow(2).sum(dim=1).to(fit)
    points = mean + (normal @ tril.T) * (dof / chi2).sqrt()[:, None]
    mahalanobis = torch.linalg.solve_triangular(tril, (points - mean).T, upper=False).pow(2).sum(dim=0)
    log_q = (
        math.lgamma((dof + dim) / 2)
        - math.lgamma(dof / 2)
        - dim / 2 * math.log(dof * math.pi)
        - tril.diagonal().log().sum()
        - (dof + dim) / 2 * torch.log1p(mahalanobis / dof)
    )
    log_w = evaluate(log_density, points) - log_q
    log_w = torch.nan_to_num(log_w, nan=math.inf, posinf=math.inf, neginf=-math.inf)
    shift = log_w.max()
    weights = (log_w - shift).exp()
    normalizer = float(weights.mean() * shift.exp())
    standard_error = float(weights.std() * shift.exp() / math.sqrt(samples))
    ess = float(weights.sum() ** 2 / weights.pow(2).sum())
    return ImportanceEstimate(normalizer, standard_error, ess, samples)
