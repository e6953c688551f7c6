"""The mass of a flow's density, with the flow's own sampler as the importance proposal (``normalization``).

Notation: ``p_b`` is the base density as the flow evaluates it (``Flow.base_log_prob``), ``Z_b = ∫ p_b``; the base's
sampler draws ``z`` with density ``p_b / Z_b`` (checked by :func:`base_mass`); ``f`` is the bijector's forward map,
``x = f(z)``, with image ``A = f(R^d)``; ``q`` is the flow's density (``Flow.log_prob``, through the *inverse*
path), and ``r(x) = p_b(z) / |det ∂f/∂z|`` the density of the samples computed through the *forward* path.

**The identity.** The samples ``x = f(z)`` have the density ``s = r / Z_b`` on ``A`` (change of variables, ``f``
one-to-one), so for any ``q``, ``E_z[q(x) / r(x)] = ∫_A q · s / r = (1 / Z_b) ∫_A q``, and

    ∫ q = Z_b · E_z[q(f(z)) / r(f(z))] + ∫_{A^c} q.

Each part is estimated without bias (:func:`sampler_mass`, :func:`base_mass`, :func:`outside_image_mass`). For a
correct flow ``q = r`` on ``A`` and every term of the first mean is exactly 1 (up to rounding): its variance is
near 0, so a constant error in ``q`` is seen at any dimension, and an error on a region holding a share ``p`` of the
mass shows in about ``p·n`` of the ``n`` terms. This rests on (each verified by its own check):

- ``log|det ∂f/∂z|`` being the true log-determinant: the flow's forward log-det where the ``logdet`` check (or
  ``ode_logdet``) compares it with autograd; otherwise (``autograd``: a log-det declared an estimate, or one that
  changes between calls) ``slogdet`` of the autograd Jacobian (:func:`flowlab.checks.measure.batch_jacobian`: rows
  independent, as ``batch_independence`` verifies);
- ``f`` being one-to-one with ``f⁻¹`` its inverse (``invertibility``);
- the base's sampler drawing from ``p_b / Z_b``, and ``Z_b`` itself: :func:`base_mass`, on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from flowlab.checks.integrate import (
    CHUNK,
    FittedProposal,
    LogDensity,
    MeanRatio,
    QuadratureRule,
    double_exponential_rule,
    draw_on_support,
    evaluate,
    mean_ratio,
    to_real,
)
from flowlab.checks.measure import apply, batch_jacobian, row_errors
from flowlab.errors import FlowlabError
from flowlab.flow import Flow
from flowlab.support import Support

#: rows per batch of autograd Jacobians (``[rows, d, d]`` and a graph kept for ``d`` backward passes)
JACOBIAN_CHUNK = 1024
#: pairs of base draws for the product test of ``p_b`` and its relative tolerance (rounding is ~1e-15)
PRODUCT_PAIRS, PRODUCT_RTOL = 64, 1e-9
#: relative rounding allowed in the sampler test (a constant density, e.g. uniform, has a standard error of 0)
ROUNDING = 1e-12
#: importance draws for a base that is not a product (its ``Z_b`` by a fitted proposal)
BASE_DRAWS = 65_536
#: errors a flow may raise on a point it does not reach (a numeric inverse that does not converge, a solver), and
#: the rows of the pieces a failing chunk is retried in (the rows of a piece that fails count as unresolved)
FLOW_ERRORS = (FlowlabError, ArithmeticError, RuntimeError, ValueError)
SMALLEST_PIECE = 32


# -- the base ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BaseMass:
    """``log Z_b`` with its relative error, and the test of the base's sampler.

    ``method``: ``"product quadrature"`` (``p_b`` is a product of one-dimensional densities: ``Z_b`` is a product of
    one-dimensional integrals, and ``error`` is the quadrature's error estimate, a bound) or ``"importance
    sampling"`` (``error`` is a standard error). ``sampler_shift``: the mean of ``log p_b`` over the sampler's draws
    minus its expectation under ``p_b / Z_b``, with its standard error (a sampler that draws from another density,
    wider, narrower or shifted, moves it); its standard error includes a relative ``ROUNDING``.
    """

    log_normalizer: float
    error: float
    method: str
    sampler_shift: float
    sampler_standard_error: float


def base_mass(flow: Flow, draws: Tensor, support: Support, generator: torch.Generator) -> BaseMass:
    """``Z_b = ∫ p_b`` over the base's ``support`` and the sampler test, from ``draws`` ``[n, d]`` of
    ``flow.base.sample``.

    If ``log p_b(a) + log p_b(b) = log p_b(a') + log p_b(b')`` for every pair of draws and every swap ``a', b'`` of
    their coordinates (true exactly for a product ``Π_i p_i(z_i)``, false for almost any other density), ``Z_b`` is
    computed as ``log Z_b = log p_b(a) + Σ_i log ∫ p_b(a with a_i = t) / p_b(a) dt`` at an anchor ``a`` (the draw of
    largest density), one double-exponential rule per coordinate over the base's support; otherwise by importance
    sampling from a Gaussian fitted to the draws with a Student-t component (:class:`FittedProposal`).
    """
    log_density = flow.base_log_prob
    values = evaluate(log_density, draws)
    if _is_product(log_density, draws, values, generator):
        log_normalizer, error, expected = _product_quadrature(flow, draws, values, support)
        method = "product quadrature"
    else:
        log_normalizer, error, expected = _importance(flow, draws, support, generator)
        method = "importance sampling"
    finite = values[torch.isfinite(values)]
    shift = float(finite.mean()) - expected if finite.numel() else math.inf
    spread = float(finite.std()) / math.sqrt(finite.numel()) if finite.numel() > 1 else math.inf
    return BaseMass(log_normalizer, error, method, shift, spread + ROUNDING * (1 + abs(expected)))


def _is_product(log_density: LogDensity, draws: Tensor, values: Tensor, generator: torch.Generator) -> bool:
    pairs = min(PRODUCT_PAIRS, draws.shape[0] // 2)
    a, b = draws[:pairs], draws[pairs : 2 * pairs]
    swap = (torch.rand(a.shape, generator=generator, dtype=torch.float64) < 0.5).to(draws.device)
    before = values[:pairs] + values[pairs : 2 * pairs]
    after = evaluate(log_density, torch.where(swap, b, a)) + evaluate(log_density, torch.where(swap, a, b))
    return bool(((before - after).abs() <= PRODUCT_RTOL * (1 + before.abs())).all())


def _product_quadrature(flow: Flow, draws: Tensor, values: Tensor, support: Support) -> tuple[float, float, float]:
    """``log Z_b``, its relative error estimate and ``E[log p_b]`` under ``p_b / Z_b`` for a product density."""
    dim = draws.shape[1]
    anchor = draws[int(torch.argmax(torch.where(torch.isfinite(values), values, -math.inf)))]
    level = float(evaluate(flow.base_log_prob, anchor[None])[0])
    lows, highs = support.bounds(dim)
    rules = [_coordinate_rule(draws[:, i], float(lows[i]), float(highs[i])) for i in range(dim)]
    nodes = torch.stack([rule.nodes for rule in rules]).to(draws)  # [d, K]
    points = anchor.expand(dim, nodes.shape[1], dim).clone()
    points[torch.arange(dim), :, torch.arange(dim)] = nodes
    slices = evaluate(flow.base_log_prob, points.reshape(-1, dim)).reshape(dim, -1) - level  # log p_i(t) / p_i(a_i)
    log_integrals, errors = [], []
    expectation = level
    for rule, log_slice in zip(rules, slices.cpu(), strict=True):
        log_integral, error = rule.log_integral(log_slice)
        log_integrals.append(float(log_integral))
        errors.append(float(error))
        mass = torch.where(rule.weights > 0, (log_slice - log_integral).exp() * rule.weights, 0.0)
        expectation += float(torch.where(mass > 0, mass * log_slice, 0.0).sum())
    return level + sum(log_integrals), sum(errors), expectation


def _coordinate_rule(column: Tensor, low: float, high: float) -> QuadratureRule:
    quartiles = torch.quantile(column.double().cpu(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    spread = float(quartiles[2] - quartiles[0]) / 1.349  # the standard deviation of a normal with that IQR
    scale = spread if spread > 0 else float(column.double().std()) or 1.0
    return double_exponential_rule(low, high, float(quartiles[1]), scale)


def _importance(flow: Flow, draws: Tensor, support: Support, generator: torch.Generator) -> tuple[float, float, float]:
    """``log Z_b``, its relative standard error and ``E[log p_b]`` (self-normalised) by importance sampling from a
    Gaussian with a Student-t component fitted to the draws, carried onto the base's support."""
    proposal = FittedProposal.fit(to_real(support, draws), defensive=0.1)
    points, log_g = draw_on_support(proposal, support, BASE_DRAWS, generator)
    log_p = evaluate(flow.base_log_prob, points)
    log_weights = log_p - log_g
    ratio = mean_ratio(log_weights)
    weights = (log_weights - log_weights.max()).exp()
    expected = float((weights * torch.where(weights > 0, log_p, 0.0)).sum() / weights.sum())
    if not ratio.value > 0:
        return -math.inf, math.inf, expected
    return math.log(ratio.value), ratio.standard_error / ratio.value, expected


# -- the flow's own samples ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplerMass:
    """``E_z[q(f(z)) / r(f(z))]`` over the base draws (``ratio``); ``unresolved`` rows (``x``, ``r`` or ``q`` NaN or
    ``+inf``) are counted as ratio 1, and their number reported; ``largest_log_error`` is the largest
    ``|log q − log r|`` over the others; ``points`` are the finite samples ``x``."""

    ratio: MeanRatio
    unresolved: int
    largest_log_error: float
    points: Tensor


def sampler_mass(flow: Flow, draws: Tensor, context: Tensor | None, *, autograd: bool) -> SamplerMass:
    """The first term of the identity on the base ``draws`` at ``context`` (``[k]`` or ``None``): ``x = f(z)``
    forward, ``log r = log p_b(z) − log|det ∂f/∂z|`` (the flow's forward log-det, or with ``autograd`` slogdet of the
    autograd Jacobian), ``log q = flow.log_prob(x)``, and ``q = 0`` at a sample outside ``flow.support`` (the
    density is 0 there: a sampler that leaves the support loses that mass)."""
    chunk = JACOBIAN_CHUNK if autograd else CHUNK
    parts = [_forward_density(flow, rows, context, autograd=autograd) for rows in draws.split(chunk)]
    x = torch.cat([part[0] for part in parts])
    log_r = torch.cat([part[1] for part in parts])
    sampled = torch.isfinite(x).all(dim=1) & torch.isfinite(log_r)
    log_q = torch.full_like(log_r, math.nan)
    with torch.no_grad():
        log_q[sampled] = torch.cat(
            [flow.log_prob(rows, context) for rows in x[sampled].split(CHUNK)] or [log_r.new_zeros(0)]
        )
    log_q = torch.where(sampled & ~flow.support.contains(x), -math.inf, log_q)  # the density is 0 off its support
    resolved = sampled & ~torch.isnan(log_q) & (log_q < math.inf)
    log_ratio = torch.where(resolved, log_q - log_r, 0.0)
    finite = log_ratio[resolved & torch.isfinite(log_ratio)]
    largest = float(finite.abs().max()) if finite.numel() else 0.0
    return SamplerMass(mean_ratio(log_ratio), int((~resolved).sum()), largest, x[sampled])


def _forward_density(flow: Flow, z: Tensor, context: Tensor | None, *, autograd: bool) -> tuple[Tensor, Tensor]:
    """``x = f(z)`` and ``log r(x) = log p_b(z) − log|det ∂f/∂z|`` for one chunk of base draws."""
    rows = flow.context_for(context, z.shape[0], "normalization")
    with torch.no_grad():
        x, ladj = apply(flow.bijector, z, "forward", rows)
    if autograd:
        jacobian = batch_jacobian(lambda points: apply(flow.bijector, points, "forward", rows)[0], z)
        ladj = torch.linalg.slogdet(jacobian).logabsdet
    with torch.no_grad():
        return x.detach(), flow.base_log_prob(z) - ladj.detach()


def forward_logdet_is_deterministic(flow: Flow, z: Tensor, context: Tensor | None) -> bool:
    """Whether two forward calls on ``z`` return the same log-dets (a Hutchinson trace in eval mode does not)."""
    rows = flow.context_for(context, z.shape[0], "normalization")
    with torch.no_grad():
        first = apply(flow.bijector, z, "forward", rows)[1]
        second = apply(flow.bijector, z, "forward", rows)[1]
    return bool(torch.equal(first, second))


# -- outside the sampler's image -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutsideMass:
    """``∫_{A^c} q`` by importance sampling: ``ratio`` is the mean of ``1{y ∉ A}·q(y)/g(y)`` over ``y ~ g``;
    ``outside`` draws were not reached by ``f`` (``f(f⁻¹(y)) ≠ y`` beyond the tolerance, or ``f⁻¹`` failed there);
    at ``unresolved`` of those ``q`` was NaN or ``+inf`` or the flow raised (counted as 0, and reported)."""

    ratio: MeanRatio
    outside: int
    unresolved: int


def outside_image_mass(
    flow: Flow,
    samples: Tensor,
    rows: int,
    context: Tensor | None,
    round_trip_tolerance: float,
    generator: torch.Generator,
) -> OutsideMass:
    """The second term of the identity, from ``rows`` draws ``y`` of a heavy-tailed Student-t (5 degrees of freedom,
    centred on the median of the flow's ``samples`` mapped to R^d by :func:`to_real`, scales their interquartile
    ranges / 1.349, carried back onto the flow's ``support``): ``y`` is in ``A`` when ``f(f⁻¹(y))``
    returns it within ``round_trip_tolerance`` (mixed relative error, as ``invertibility``). A draw the flow cannot
    return for numerical reasons counts as off the image: its ``q`` is then counted, an overestimate by the flow's
    mass where its round trip fails (far from its samples, for an ill-conditioned flow: negligible)."""
    support = flow.support
    fit = to_real(support, samples)
    fit = fit[torch.isfinite(fit).all(dim=1)]
    if fit.shape[0] <= fit.shape[1]:  # too few samples in the support (a flow that fails anyway): fit to N(0, I)
        fit = torch.randn(4 * fit.shape[1] + 4, fit.shape[1], generator=generator, dtype=torch.float64).to(samples)
    proposal = FittedProposal.fit_robust(fit, defensive=1.0, dof=5, inflate=1.0)
    points, log_g = draw_on_support(proposal, support, rows, generator)
    trips = [_round_trip(flow, chunk, context, round_trip_tolerance) for chunk in points.split(CHUNK)]
    reached, log_density = torch.cat([trip[0] for trip in trips]), torch.cat([trip[1] for trip in trips])
    known = ~torch.isnan(log_density) & (log_density < math.inf)
    log_terms = torch.where(~reached & known, log_density - log_g, -math.inf)
    return OutsideMass(mean_ratio(log_terms), int((~reached).sum()), int((~reached & ~known).sum()))


def _round_trip(flow: Flow, y: Tensor, context: Tensor | None, tolerance: float) -> tuple[Tensor, Tensor]:
    """Whether each row of ``y`` is in the image of ``f`` and ``log q(y)`` (NaN where the flow raised); a chunk
    that raises is retried in pieces of ``SMALLEST_PIECE`` rows, so one unreachable point costs only its piece
    (and a failed solve is paid at most twice per draw)."""
    rows = flow.context_for(context, y.shape[0], "normalization")
    try:
        with torch.no_grad():
            z, ladj = apply(flow.bijector, y, "inverse", rows)
            back, _ = apply(flow.bijector, z, "forward", rows)
            log_q = flow.base_log_prob(z) + ladj  # Flow.log_prob, from the inverse already made
    except FLOW_ERRORS:
        if y.shape[0] <= SMALLEST_PIECE:
            return torch.zeros(y.shape[0], dtype=torch.bool, device=y.device), y.new_full((y.shape[0],), math.nan)
        pieces = [_round_trip(flow, piece, context, tolerance) for piece in y.split(SMALLEST_PIECE)]
        return torch.cat([piece[0] for piece in pieces]), torch.cat([piece[1] for piece in pieces])
    return row_errors(back, y) <= tolerance, log_q


# -- all together --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FlowMass:
    """The three estimates of ``∫ q = Z_b · E[q/r] + ∫_{A^c} q`` and the way ``r`` was computed."""

    base: BaseMass
    inside: SamplerMass
    outside: OutsideMass
    autograd: bool

    @property
    def normalizer(self) -> float:
        """``Z = Z_b · E[q/r] + ∫_{A^c} q``."""
        return math.exp(self.base.log_normalizer) * self.inside.ratio.value + self.outside.ratio.value


def estimate_flow_mass(
    flow: Flow,
    draws: Tensor,
    context: Tensor | None,
    *,
    autograd: bool,
    base_support: Support,
    outside_rows: int,
    round_trip_tolerance: float,
    generator: torch.Generator,
) -> FlowMass:
    """Every term of the identity for ``flow`` at ``context`` (``[k]`` or ``None``) from the base ``draws``: the
    base's mass over ``base_support``, the mean of ``q/r`` over the flow's samples (``autograd``: ``r`` from the
    autograd Jacobian), and the mass off the sampler's image from ``outside_rows`` draws inside ``flow.support``."""
    base = base_mass(flow, draws, base_support, generator)
    inside = sampler_mass(flow, draws, context, autograd=autograd)
    outside = outside_image_mass(flow, inside.points, outside_rows, context, round_trip_tolerance, generator)
    return FlowMass(base, inside, outside, autograd)
