"""Monotone rational-quadratic splines with identity tails (Gregory & Delbourgo 1982; Durkan et al. 2019).

A spline ``S`` of ``K`` bins on ``[-B, B]`` is given by the knots ``(x_k, y_k)``, ``k = 0..K`` (``x_0 = y_0 = -B``,
``x_K = y_K = B``) and positive derivatives ``δ_k`` at them, with ``δ_0 = δ_K = 1``. In bin ``k``, with width
``w_k = x_{k+1} − x_k``, height ``h_k = y_{k+1} − y_k``, slope ``s_k = h_k / w_k``, ``ξ = (x − x_k) / w_k ∈ [0, 1]``::

    S(x) = y_k + h_k · [s_k ξ² + δ_k ξ(1−ξ)] / [s_k + (δ_{k+1} + δ_k − 2 s_k) ξ(1−ξ)]
    S'(x) = s_k² · [δ_{k+1} ξ² + 2 s_k ξ(1−ξ) + δ_k (1−ξ)²] / [s_k + (δ_{k+1} + δ_k − 2 s_k) ξ(1−ξ)]²

``S`` passes through every knot with derivative ``δ_k`` there (so it is C¹), and is strictly increasing when all
widths, heights and derivatives are positive. Outside ``[-B, B]``, ``S(x) = x``: the tails are the identity, and
since ``δ_0 = δ_K = 1`` they join the spline with matching value and slope. An input far outside the bound is
therefore fine: it is passed through unchanged with log-derivative 0.

**Inverse.** For ``y`` in bin ``k`` (found among the ``y_k``), ``ξ`` is the root in ``[0, 1]`` of
``a ξ² + b ξ + c = 0`` with ``a = h_k (s_k − δ_k) + (y − y_k) D``, ``b = h_k δ_k − (y − y_k) D``,
``c = −s_k (y − y_k)``, ``D = δ_{k+1} + δ_k − 2 s_k``, computed as ``ξ = 2c / (−b − √(b² − 4ac))``: this form has no
cancellation (``b`` and ``−√…`` never subtract), unlike the textbook ``(−b + √…) / 2a``, which divides by
``a ≈ 0`` where the bin is nearly linear.

**Parameters.** :func:`rational_quadratic` takes the bin widths and heights as *fractions* of the interval ``2B``
(``[..., K]``, positive, each row summing to 1) and the ``K − 1`` interior derivatives (``[..., K − 1]``,
positive). :func:`constrain` makes such parameters from unconstrained values (a network's outputs), with the stated
minima ``MIN_WIDTH``, ``MIN_HEIGHT`` (fractions of ``2B``) and ``MIN_DERIVATIVE``, so that no bin collapses and the
spline stays strictly monotone; zero inputs give the identity (equal bins, every derivative 1).

Sign convention: ``rational_quadratic(x, ...)`` returns ``(S(x), log S'(x))``; with ``inverse=True`` it returns
``(S⁻¹(x), log (S⁻¹)'(x)) = (S⁻¹(x), −log S'(S⁻¹(x)))``. Log-derivatives are elementwise (the shape of ``x``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from flowlab import DtypeError, FlowlabError, ShapeError

#: the smallest bin width and height, as fractions of the interval ``2B``, and the smallest knot derivative
MIN_WIDTH = MIN_HEIGHT = MIN_DERIVATIVE = 1e-3
#: ``c`` in ``δ = MIN_DERIVATIVE + softplus(raw + c)``: ``softplus(c) = 1 − MIN_DERIVATIVE``, so raw 0 gives ``δ = 1``
DERIVATIVE_SHIFT = math.log(math.expm1(1 - MIN_DERIVATIVE))


class SplineParameterError(FlowlabError, ValueError):
    """Spline parameters that violate a constraint (a width, height or derivative not positive, fractions that do
    not sum to 1, a bound that is not positive)."""


def constrain(raw: Tensor, bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Widths, heights (fractions of ``2B``) and interior derivatives from unconstrained values ``[..., 3K − 1]``.

    ``widths = MIN_WIDTH + (1 − K · MIN_WIDTH) · softmax(raw_w)`` (heights alike) and
    ``δ = MIN_DERIVATIVE + softplus(raw_δ + c)`` with ``c = log(exp(1 − MIN_DERIVATIVE) − 1)``, so that ``raw = 0``
    gives equal bins and derivatives 1: the identity.
    """
    if raw.shape[-1] != 3 * bins - 1:
        raise ShapeError(f"spline: expected 3·bins − 1 = {3 * bins - 1} values per spline, got {raw.shape[-1]}")
    raw_widths, raw_heights, raw_derivatives = raw.split([bins, bins, bins - 1], dim=-1)
    widths = MIN_WIDTH + (1 - bins * MIN_WIDTH) * torch.softmax(raw_widths, dim=-1)
    heights = MIN_HEIGHT + (1 - bins * MIN_HEIGHT) * torch.softmax(raw_heights, dim=-1)
    derivatives = MIN_DERIVATIVE + F.softplus(raw_derivatives + DERIVATIVE_SHIFT)
    return widths, heights, derivatives


def rational_quadratic(
    x: Tensor,
    widths: Tensor,
    heights: Tensor,
    derivatives: Tensor,
    inverse: bool = False,
    *,
    bound: float = 5.0,
    check: bool = True,
) -> tuple[Tensor, Tensor]:
    """``(S(x), log S'(x))``, or with ``inverse=True`` ``(S⁻¹(x), log (S⁻¹)'(x))``, elementwise (module docstring).

    ``x``: ``[...]``; ``widths``, ``heights``: ``[..., K]`` fractions of ``2·bound``; ``derivatives``: ``[..., K−1]``
    at the interior knots. Identity outside ``[-bound, bound]``. ``check=False`` skips the validation of the
    parameters' values, for callers whose parameters come from :func:`constrain` (valid by construction).
    """
    _check_shapes(x, widths, heights, derivatives)
    if check:
        _check_values(widths, heights, derivatives, bound)
    inside = (x >= -bound) & (x <= bound)
    # the spline is evaluated at every point, tails clamped into [-B, B], and then discarded there: no NaN from
    # the discarded branch (its gradient is 0·finite), and every parameter keeps a path to the output (zero there)
    v = x.clamp(-bound, bound)
    x_knots, y_knots = _knots(widths, bound), _knots(heights, bound)
    ones = derivatives.new_ones((*derivatives.shape[:-1], 1))
    deltas = torch.cat([ones, derivatives, ones], dim=-1)
    searched = y_knots if inverse else x_knots
    k = (torch.searchsorted(searched, v.unsqueeze(-1), right=True) - 1).clamp(0, widths.shape[-1] - 1)
    x_k, x_k1 = x_knots.gather(-1, k).squeeze(-1), x_knots.gather(-1, k + 1).squeeze(-1)
    y_k, y_k1 = y_knots.gather(-1, k).squeeze(-1), y_knots.gather(-1, k + 1).squeeze(-1)
    d_k, d_k1 = deltas.gather(-1, k).squeeze(-1), deltas.gather(-1, k + 1).squeeze(-1)
    w, h = x_k1 - x_k, y_k1 - y_k
    s = h / w
    curvature = d_k1 + d_k - 2 * s
    if inverse:
        dy = v - y_k
        a = h * (s - d_k) + dy * curvature
        b = h * d_k - dy * curvature
        c = -s * dy
        xi = 2 * c / (-b - (b * b - 4 * a * c).clamp_min(0).sqrt())
    else:
        xi = (v - x_k) / w
    t = xi * (1 - xi)
    denominator = s + curvature * t
    log_slope = 2 * s.log() + (d_k1 * xi * xi + 2 * s * t + d_k * (1 - xi) * (1 - xi)).log() - 2 * denominator.log()
    zero = torch.zeros_like(log_slope)
    if inverse:
        return torch.where(inside, x_k + xi * w, x), torch.where(inside, -log_slope, zero)
    y = y_k + h * (s * xi * xi + d_k * t) / denominator
    return torch.where(inside, y, x), torch.where(inside, log_slope, zero)


def _knots(fractions: Tensor, bound: float) -> Tensor:
    """``[..., K + 1]`` knot positions ``-B, -B + 2B·cumsum(fractions), ..., B``, the ends exact."""
    interior = torch.cumsum(fractions[..., :-1], dim=-1) * (2 * bound) - bound
    end = fractions.new_full((*fractions.shape[:-1], 1), bound)
    return torch.cat([-end, interior, end], dim=-1).contiguous()


def _check_shapes(x: Tensor, widths: Tensor, heights: Tensor, derivatives: Tensor) -> None:
    tensors = {"x": x, "widths": widths, "heights": heights, "derivatives": derivatives}
    for name, tensor in tensors.items():
        if not tensor.dtype.is_floating_point or tensor.dtype != x.dtype:
            raise DtypeError(f"spline: expected {name} of x's floating dtype {x.dtype}, got {tensor.dtype}")
    bins = widths.shape[-1] if widths.dim() else 0
    expected = {"widths": (*x.shape, bins), "heights": (*x.shape, bins), "derivatives": (*x.shape, bins - 1)}
    for name, shape in expected.items():
        if bins < 1 or tuple(tensors[name].shape) != shape:
            raise ShapeError(
                f"spline: for x of shape {tuple(x.shape)} expected widths and heights of shape [*x.shape, K] and "
                f"derivatives of shape [*x.shape, K − 1] (K ≥ 1 bins); got widths {tuple(widths.shape)}, heights "
                f"{tuple(heights.shape)}, derivatives {tuple(derivatives.shape)}"
            )


def _check_values(widths: Tensor, heights: Tensor, derivatives: Tensor, bound: float) -> None:
    if not bound > 0:
        raise SplineParameterError(f"spline: expected a positive bound B (the spline lives on [-B, B]), got {bound}")
    tolerance = math.sqrt(torch.finfo(widths.dtype).eps) * widths.shape[-1]
    for name, tensor in (("widths", widths), ("heights", heights), ("derivatives", derivatives)):
        if not bool(torch.isfinite(tensor).all() and (tensor > 0).all()):
            raise SplineParameterError(
                f"spline: expected positive, finite {name} (a strictly increasing spline), got the minimum "
                f"{float(tensor.min()):.3g}; make them with flowlab_spline.spline.constrain"
            )
        if name != "derivatives":
            error = float((tensor.sum(dim=-1) - 1).abs().max())
            if error > tolerance:
                raise SplineParameterError(
                    f"spline: expected {name} as fractions of the interval summing to 1 along the last axis, "
                    f"off by up to {error:.3g} (allowed {tolerance:.1g})"
                )
