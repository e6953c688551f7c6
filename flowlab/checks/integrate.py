"""Numerical integration for the ``normalization`` check: one-dimensional quadrature, fitted proposals, and the mean
of density ratios with its standard error.

- :func:`double_exponential_rule`: nodes and weights of the double-exponential (tanh-sinh family) trapezoidal rule
  on an interval ``(low, high)``, either end possibly infinite (Takahasi & Mori 1974). A substitution
  ``t = φ(v)`` whose derivative decays double-exponentially turns ``∫ g(t) dt`` into ``∫ g(φ(v)) φ'(v) dv`` over
  ``v ∈ R``, where the trapezoidal rule with step ``h`` converges like ``exp(−c/h)`` for integrands analytic near the
  real axis (a density and its tails alike, so no box has to be guessed):

  ========================  ==================================================
  interval                  ``t = φ(v)`` (``c`` a centre, ``s > 0`` a scale)
  ========================  ==================================================
  ``(−∞, ∞)``               ``c + s·sinh(π/2·sinh v)``
  ``(a, ∞)``                ``a + s·exp(π/2·sinh v)``
  ``(−∞, b)``               ``b − s·exp(π/2·sinh v)``
  ``(a, b)``                ``(a + b)/2 + (b − a)/2·tanh(π/2·sinh v)``
  ========================  ==================================================

  ``v`` runs over ``[−V, V]`` in steps ``h``; nodes that round onto an end of the interval get weight 0. The rule
  also carries the weights of the same rule at step ``2h`` (every other node), so ``|I_h − I_2h|`` estimates the
  discretisation error (an upper bound in practice: the error of ``I_h`` is far smaller than that of ``I_2h``), and
  the outermost terms estimate what lies beyond ``±V``.
- :class:`FittedProposal`: a defensive mixture ``(1 − α)·N(μ, Σ) + α·t_ν(μ, κ²Σ)`` fitted to samples (their mean and
  covariance, or robustly: medians and interquartile ranges), to sample from and evaluate; the Student-t part
  (heavier-tailed than any Gaussian) keeps ``p/q`` bounded in the tails (Hesterberg 1995).
- :func:`to_real` and :func:`draw_on_support`: a proposal fitted on R^d carried onto a flow's support (a box, bounds
  possibly infinite) by the support's fixed bijection :meth:`~flowlab.support.Support.from_real`, with its density
  there (``log g(u) − log|∂y/∂u|``), so no draw falls outside the support.
- :func:`mean_ratio`: ``mean(exp(log_a − log_b))`` and its CLT standard error ``std/√n``, computed without overflow.

Every log-density is evaluated in chunks under ``torch.no_grad()`` (:func:`evaluate`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowlab.support import Support

LogDensity = Callable[[Tensor], Tensor]
CHUNK = 8192
#: half-width ``V`` and step ``h`` of the double-exponential rule: 209 nodes; ``sinh(π/2·sinh 3.25) ≈ 1.6e9``
#: scales reach every density a flow has (and ``t_1``'s tail beyond is below 1e-9 of its mass)
DE_HALF_WIDTH = 3.25
DE_STEP = 1 / 32


def evaluate(log_density: LogDensity, points: Tensor) -> Tensor:
    """``log_density`` on ``points`` in chunks of ``CHUNK`` rows, without building a graph."""
    with torch.no_grad():
        return torch.cat([log_density(chunk) for chunk in points.split(CHUNK)])


@dataclass(frozen=True)
class QuadratureRule:
    """Nodes ``t_k`` with weights ``w_k`` (``∫ g ≈ Σ_k w_k g(t_k)``) and the weights of the rule at twice the step."""

    nodes: Tensor
    weights: Tensor
    coarse_weights: Tensor

    def log_integral(self, log_values: Tensor) -> tuple[Tensor, Tensor]:
        """``log ∫ exp(log g)`` over the last dimension of ``log_values`` (one row per integrand), and the relative
        error estimate: ``|I_h − I_2h| / I_h`` (the step) plus twice the outermost weighted terms over ``I_h`` (the
        truncation at ``±V``: beyond it the terms keep falling at least geometrically)."""
        fine = _log_sum(log_values, self.weights)
        coarse = _log_sum(log_values, self.coarse_weights)
        used = (self.weights > 0).nonzero().flatten()
        ends = used[[0, -1]]
        tail = _log_sum(log_values[..., ends], self.weights[ends]) + math.log(2)
        return fine, (coarse - fine).exp().sub(1).abs() + (tail - fine).exp()


def _log_sum(log_values: Tensor, weights: Tensor) -> Tensor:
    terms = torch.where(weights > 0, log_values + weights.clamp_min(1e-300).log(), -math.inf)
    return torch.logsumexp(terms, dim=-1)


def double_exponential_rule(
    low: float, high: float, center: float, scale: float, *, dtype: torch.dtype = torch.float64
) -> QuadratureRule:
    """The double-exponential rule on ``(low, high)`` (see the module docstring); ``center`` and ``scale`` place
    the nodes of an infinite end (``scale > 0``: about the spread of the integrand)."""
    steps = round(DE_HALF_WIDTH / DE_STEP)
    v = torch.arange(-steps, steps + 1, dtype=dtype) * DE_STEP
    u = math.pi / 2 * torch.sinh(v)
    du = math.pi / 2 * torch.cosh(v)
    if math.isinf(low) and math.isinf(high):
        nodes, jacobian = center + scale * torch.sinh(u), scale * torch.cosh(u) * du
    elif math.isinf(high):
        nodes, jacobian = low + scale * torch.exp(u), scale * torch.exp(u) * du
    elif math.isinf(low):
        nodes, jacobian = high - scale * torch.exp(u), scale * torch.exp(u) * du
    else:
        half = (high - low) / 2
        nodes, jacobian = (low + high) / 2 + half * torch.tanh(u), half * du / torch.cosh(u) ** 2
    weights = torch.where((nodes > low) & (nodes < high) & torch.isfinite(jacobian), jacobian * DE_STEP, 0.0)
    coarse = torch.where(torch.arange(v.numel()) % 2 == steps % 2, 2 * weights, 0.0)
    return QuadratureRule(nodes, weights, coarse)


@dataclass(frozen=True)
class FittedProposal:
    """``(1 − defensive)·N(mean, Σ) + defensive·t_dof(mean, inflate²·Σ)``, ``Σ = tril·trilᵀ``."""

    mean: Tensor
    tril: Tensor
    defensive: float
    dof: int
    inflate: float

    @classmethod
    def fit(cls, samples: Tensor, *, defensive: float, dof: int = 4, inflate: float = 1.5) -> FittedProposal:
        """Fitted to ``samples`` ``[n, d]``: their mean and covariance (with a jitter of 1e-9 of its mean variance,
        so a degenerate direction cannot make it singular)."""
        dim = samples.shape[1]
        covariance = torch.atleast_2d(torch.cov(samples.T))
        jitter = 1e-9 * covariance.diagonal().mean() + 1e-300
        eye = torch.eye(dim, dtype=samples.dtype, device=samples.device)
        tril = torch.linalg.cholesky(covariance + jitter * eye)
        return cls(samples.mean(dim=0), tril, defensive, dof, inflate)

    @classmethod
    def fit_robust(cls, samples: Tensor, *, defensive: float, dof: int = 4, inflate: float = 1.5) -> FittedProposal:
        """Fitted to ``samples`` ``[n, d]`` coordinate by coordinate, unmoved by a few far-out samples: the median,
        and a diagonal ``Σ`` of the squared interquartile ranges / 1.349² (the variance of a normal with that range;
        the standard deviation where the range is 0, 1 where both are)."""
        quartiles = torch.quantile(samples, torch.tensor([0.25, 0.5, 0.75]).to(samples), dim=0)
        scale = (quartiles[2] - quartiles[0]) / 1.349
        spread = samples.std(dim=0) if samples.shape[0] > 1 else torch.ones_like(scale)
        scale = torch.where(scale > 0, scale, torch.where(spread > 0, spread, torch.ones_like(scale)))
        return cls(quartiles[1], torch.diag(scale), defensive, dof, inflate)

    def sample(self, rows: int, generator: torch.Generator) -> Tensor:
        """``rows`` draws (from ``generator``, a CPU generator; moved to the proposal's device)."""
        dim = self.mean.numel()
        normal = torch.randn(rows, dim, generator=generator, dtype=torch.float64)
        chi2 = torch.randn(rows, self.dof, generator=generator, dtype=torch.float64).pow(2).sum(dim=1)
        heavy = torch.rand(rows, generator=generator, dtype=torch.float64) < self.defensive
        radius = torch.where(heavy, self.inflate * (self.dof / chi2).sqrt(), torch.ones_like(chi2))
        normal = normal.to(self.mean) * radius.to(self.mean)[:, None]
        return self.mean + normal @ self.tril.T

    def log_prob(self, points: Tensor) -> Tensor:
        """The mixture's log-density at ``points``."""
        dim = self.mean.numel()
        solved = torch.linalg.solve_triangular(self.tril, (points - self.mean).T, upper=False)
        mahalanobis = solved.pow(2).sum(dim=0)
        log_det = self.tril.diagonal().log().sum()
        gaussian = -0.5 * (mahalanobis + dim * math.log(2 * math.pi)) - log_det
        nu = self.dof
        student = (
            math.lgamma((nu + dim) / 2)
            - math.lgamma(nu / 2)
            - dim / 2 * math.log(nu * math.pi)
            - log_det
            - dim * math.log(self.inflate)
            - (nu + dim) / 2 * torch.log1p(mahalanobis / (nu * self.inflate**2))
        )
        parts = [gaussian + math.log1p(-self.defensive)] if self.defensive < 1 else []
        parts += [student + math.log(self.defensive)] if self.defensive > 0 else []
        return torch.logsumexp(torch.stack(parts), dim=0)


def to_real(support: Support, x: Tensor) -> Tensor:
    """The inverse of ``support.from_real`` on points inside the support (NaN outside)."""
    low, high = support.bounds(x.shape[-1], x)
    both, lower, upper = low.isfinite() & high.isfinite(), low.isfinite(), high.isfinite()
    span = torch.where(both, high - low, torch.ones_like(low))
    u = torch.where(both, torch.logit((x - low) / span), x)
    u = torch.where(lower & ~both, torch.log(torch.expm1(x - low)), u)
    return torch.where(upper & ~both, -torch.log(torch.expm1(high - x)), u)


def draw_on_support(
    proposal: FittedProposal, support: Support, rows: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``rows`` draws ``y = support.from_real(u)``, ``u ~ proposal`` (fitted to ``to_real`` of points in the support),
    and ``log g(y) = log proposal(u) − log|∂y/∂u|``: a density on the support."""
    u = proposal.sample(rows, generator)
    log_g = proposal.log_prob(u)
    if support.is_real:
        return u, log_g
    low, high = support.bounds(u.shape[-1], u)
    both, lower, upper = low.isfinite() & high.isfinite(), low.isfinite(), high.isfinite()
    span = torch.where(both, high - low, torch.ones_like(low)).log()
    sigmoid = torch.nn.functional.logsigmoid
    log_slope = torch.where(both, span + sigmoid(u) + sigmoid(-u), torch.zeros_like(u))
    log_slope = torch.where(lower & ~both, sigmoid(u), log_slope)
    log_slope = torch.where(upper & ~both, sigmoid(-u), log_slope)
    return support.from_real(u), log_g - log_slope.sum(dim=-1)


@dataclass(frozen=True)
class MeanRatio:
    """``mean(exp(log_a − log_b))`` over ``rows`` terms and its standard error ``std/√rows``."""

    value: float
    standard_error: float
    rows: int


def mean_ratio(log_ratio: Tensor) -> MeanRatio:
    """The mean of ``exp(log_ratio)`` and its standard error; the entries must be finite or ``−inf`` (a ratio of 0).
    Terms are scaled by the largest one, so a large ratio overflows only in the result."""
    rows = log_ratio.numel()
    if rows == 0 or not bool((log_ratio > -math.inf).any()):
        return MeanRatio(0.0, 0.0, rows)
    shift = log_ratio.max().clamp_min(0.0)
    scaled = (log_ratio - shift).exp()
    factor = math.exp(float(shift)) if float(shift) <= 709.0 else math.inf
    spread = float(scaled.std()) if rows > 1 else 0.0
    return MeanRatio(float(scaled.mean()) * factor, spread * factor / math.sqrt(rows), rows)
