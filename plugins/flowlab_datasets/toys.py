"""The eight 2D toy densities of the FFJORD suite (Grathwohl et al. 2019, ``lib/toy_data.py``) as samplers and,
where the density has a usable form, exact log-densities.

Every sampler draws all its randomness from the ``torch.Generator`` it is given and draws each point
independently: component memberships are random (not split in fixed proportions) and angles are uniform random
(not evenly spaced), so ``n`` points are ``n`` i.i.d. draws. The scalings are FFJORD's, so the entropies match the
numbers quoted for that suite. Points are float32 on the CPU.

Log-densities of the curve-shaped datasets (circles, rings, moons, swissroll, 2spirals) are
``p(x) = E_u[k(x − c(u))]``: a kernel ``k`` (the noise) averaged over a random point ``c(u)`` of the curve. The
expectation over ``u`` is computed by the midpoint rule on a grid of ``GRID`` values of ``u``, i.e. as a mixture of
``GRID`` kernels per curve; the grid spacing along the curve is far below the noise scale, so the rule is accurate
to many digits (the tests check that the density integrates to 1 and matches the sampler).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

GRID = 1024  # quadrature points per curve (spacing along every curve < 0.25 of its noise std)
CHUNK = 512  # rows of x evaluated at once (bounds memory at CHUNK × GRID × curves)
LOG_2PI = math.log(2 * math.pi)


def _uniform(n: int, generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def _normal(n: int, generator: torch.Generator, std: float) -> Tensor:
    return std * torch.randn(n, 2, generator=generator, dtype=torch.float64)


def _choice(n: int, k: int, generator: torch.Generator) -> Tensor:
    return torch.randint(k, (n,), generator=generator)


def _out(x: Tensor) -> Tensor:
    return x.to(torch.float32)


def _polar(radius: Tensor, angle: Tensor) -> Tensor:
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)


def _midpoints(m: int = GRID) -> Tensor:
    return (torch.arange(m, dtype=torch.float64) + 0.5) / m


def gaussian_mixture_log_prob(x: Tensor, centres: Tensor, std: float, log_weights: Tensor) -> Tensor:
    """``log Σ_j w_j N(x; c_j, std² I)`` for ``x`` of shape ``[n, 2]``, evaluated in float64 in chunks."""
    out = []
    for rows in x.to(torch.float64).split(CHUNK):
        sq = torch.cdist(rows, centres).square()
        log_k = -sq / (2 * std**2) - LOG_2PI - 2 * math.log(std)
        out.append(torch.logsumexp(log_k + log_weights, dim=-1))
    return torch.cat(out).to(x.dtype)


def _curve_log_prob(curves: Tensor, std: float) -> Callable[[Tensor], Tensor]:
    """The density of ``c(u) + N(0, std² I)`` with ``c(u)`` a uniformly chosen point of ``curves`` (``[k, m, 2]``,
    each curve sampled at the midpoints of ``m`` equal-probability cells of ``u``)."""
    centres = curves.reshape(-1, 2)
    log_weights = torch.full((len(centres),), -math.log(len(centres)), dtype=torch.float64)
    return lambda x: gaussian_mixture_log_prob(x, centres, std, log_weights)


# -- 8gaussians ----------------------------------------------------------------------------------------------------
GAUSSIANS_STD = 0.5 / 1.414
GAUSSIANS_CENTRES = _polar(torch.full((8,), 4.0 / 1.414, dtype=torch.float64), torch.arange(8) * math.pi / 4)


def eight_gaussians(n: int, generator: torch.Generator) -> Tensor:
    """Equal mixture of 8 Gaussians, centres on the circle of radius 4/1.414 ≈ 2.83 at angles kπ/4, std
    0.5/1.414 ≈ 0.354 (FFJORD: centre·4 + N(0, 0.5²), all divided by 1.414)."""
    k = _choice(n, 8, generator)
    return _out(GAUSSIANS_CENTRES[k] + _normal(n, generator, GAUSSIANS_STD))


def eight_gaussians_log_prob(x: Tensor) -> Tensor:
    return gaussian_mixture_log_prob(x, GAUSSIANS_CENTRES, GAUSSIANS_STD, torch.full((8,), -math.log(8)))


# -- checkerboard --------------------------------------------------------------------------------------------------
def checkerboard(n: int, generator: torch.Generator) -> Tensor:
    """Uniform on the 8 dark squares (side 2) of a 4×4 checkerboard covering [−4, 4]²: area 32, density 1/32."""
    x1 = _uniform(n, generator, -2.0, 2.0)
    x2 = _uniform(n, generator) - 2.0 * _choice(n, 2, generator) + torch.floor(x1) % 2
    return _out(2.0 * torch.stack([x1, x2], dim=-1))


def checkerboard_log_prob(x: Tensor) -> Tensor:
    cell = torch.floor(x.to(torch.float64) / 2)
    inside = (x.abs() <= 4).all(dim=-1) & ((cell[:, 0] - cell[:, 1]) % 2 == 0)
    return torch.where(inside, -math.log(32.0), -math.inf).to(x.dtype)


# -- circles and rings ---------------------------------------------------------------------------------------------
CIRCLES_RADII = (3.0, 1.5)
CIRCLES_STD = 0.24
RINGS_RADII = (3.0, 2.25, 1.5, 0.75)
RINGS_STD = 0.08


def _rings(radii: tuple[float, ...], std: float) -> Callable[[int, torch.Generator], Tensor]:
    table = torch.tensor(radii, dtype=torch.float64)

    def sample(n: int, generator: torch.Generator) -> Tensor:
        radius = table[_choice(n, len(radii), generator)]
        angle = _uniform(n, generator, 0.0, 2 * math.pi)
        return _out(_polar(radius, angle) + _normal(n, generator, std))

    return sample


def _rings_log_prob(radii: tuple[float, ...], std: float) -> Callable[[Tensor], Tensor]:
    angle = 2 * math.pi * _midpoints()
    curves = torch.stack([_polar(torch.full_like(angle, r), angle) for r in radii])
    return _curve_log_prob(curves, std)


circles = _rings(CIRCLES_RADII, CIRCLES_STD)
circles_log_prob = _rings_log_prob(CIRCLES_RADII, CIRCLES_STD)
rings = _rings(RINGS_RADII, RINGS_STD)
rings_log_prob = _rings_log_prob(RINGS_RADII, RINGS_STD)


# -- moons ---------------------------------------------------------------------------------------------------------
MOONS_STD = 0.2


def _moons_curves(angle: Tensor) -> Tensor:
    """sklearn's two half circles, scaled by 2 and shifted by (−1, −0.2): ``[2, len(angle), 2]``."""
    outer = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)
    inner = torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=-1)
    shift = torch.tensor([-1.0, -0.2], dtype=torch.float64)
    return 2 * torch.stack([outer, inner]) + shift


def moons(n: int, generator: torch.Generator) -> Tensor:
    """Two interleaved half circles of radius 2 (sklearn's ``make_moons`` ×2, shifted by (−1, −0.2)), a point on
    each with probability ½ at a uniform angle in [0, π], plus N(0, 0.2²) noise."""
    which = _choice(n, 2, generator)
    angle = _uniform(n, generator, 0.0, math.pi)
    curves = _moons_curves(angle)
    return _out(curves[which, torch.arange(n)] + _normal(n, generator, MOONS_STD))


moons_log_prob = _curve_log_prob(_moons_curves(math.pi * _midpoints()), MOONS_STD)


# -- swissroll -----------------------------------------------------------------------------------------------------
SWISSROLL_STD = 0.2


def _swissroll_curve(u: Tensor) -> Tensor:
    t = 1.5 * math.pi * (1 + 2 * u)
    return _polar(t, t) / 5


def swissroll(n: int, generator: torch.Generator) -> Tensor:
    """sklearn's ``make_swiss_roll`` (x, z) plane divided by 5: ``(t cos t, t sin t)/5`` with t uniform in
    [1.5π, 4.5π] plus N(0, 0.2²) noise (noise 1.0 before the division)."""
    return _out(_swissroll_curve(_uniform(n, generator)) + _normal(n, generator, SWISSROLL_STD))


swissroll_log_prob = _curve_log_prob(_swissroll_curve(_midpoints())[None], SWISSROLL_STD)


# -- 2spirals ------------------------------------------------------------------------------------------------------
SPIRALS_STD = 0.1
SPIRALS_JITTER = 0.5 / 3  # uniform jitter per coordinate, after the division by 3


def _spiral(u: Tensor) -> Tensor:
    turn = 3 * math.pi * torch.sqrt(u)  # 540 degrees
    return torch.stack([-torch.cos(turn) * turn, torch.sin(turn) * turn], dim=-1) / 3


def two_spirals(n: int, generator: torch.Generator) -> Tensor:
    """Two opposite spirals of 1.5 turns: ``s·((−n cos n, n sin n) + U(0, 0.5)²)/3`` with ``n = 3π·√u``,
    ``u`` uniform, sign ``s = ±1`` with probability ½, plus N(0, 0.1²) noise."""
    sign = 1.0 - 2.0 * _choice(n, 2, generator).to(torch.float64)
    jitter = SPIRALS_JITTER * torch.rand(n, 2, generator=generator, dtype=torch.float64)
    point = sign[:, None] * (_spiral(_uniform(n, generator)) + jitter)
    return _out(point + _normal(n, generator, SPIRALS_STD))


def _log_box_gaussian(y: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """Per coordinate, ``log`` of the density of ``U(low, high) + N(0, std²)`` at ``y``, summed over coordinates:
    ``log[(Φ((y−low)/σ) − Φ((y−high)/σ)) / (high − low)]``, the difference taken on the side where it is exact."""
    a, b = (y - low) / SPIRALS_STD, (y - high) / SPIRALS_STD
    upper = a + b > 0  # both large: use the tails 1 − Φ to avoid cancellation
    diff = torch.where(
        upper, torch.special.ndtr(-b) - torch.special.ndtr(-a), torch.special.ndtr(a) - torch.special.ndtr(b)
    )
    return (torch.log(diff.clamp_min(1e-300)) - math.log(SPIRALS_JITTER)).sum(dim=-1)


def two_spirals_log_prob(x: Tensor) -> Tensor:
    curve = _spiral(_midpoints())
    out = []
    for rows in x.to(torch.float64).split(CHUNK):
        y = rows[:, None, :]
        terms = [
            _log_box_gaussian(y, curve, curve + SPIRALS_JITTER),
            _log_box_gaussian(y, -curve - SPIRALS_JITTER, -curve),
        ]
        out.append(torch.logsumexp(torch.cat(terms, dim=-1), dim=-1) - math.log(2 * len(curve)))
    return torch.cat(out).to(x.dtype)


# -- pinwheel ------------------------------------------------------------------------------------------------------
def pinwheel(n: int, generator: torch.Generator) -> Tensor:
    """Five arms: a point ``f ~ N((1, 0), diag(0.3², 0.1²))`` of a random arm ``k`` is rotated by
    ``−(2πk/5 + 0.25·exp(f₁))`` and scaled by 2 (the rotation grows along the arm, which bends it)."""
    arm = _choice(n, 5, generator).to(torch.float64)
    features = torch.randn(n, 2, generator=generator, dtype=torch.float64) * torch.tensor([0.3, 0.1])
    features[:, 0] += 1.0
    angle = 2 * math.pi * arm / 5 + 0.25 * torch.exp(features[:, 0])
    cos, sin = torch.cos(angle), torch.sin(angle)
    x = features[:, 0] * cos + features[:, 1] * sin
    y = -features[:, 0] * sin + features[:, 1] * cos
    return _out(2 * torch.stack([x, y], dim=-1))
