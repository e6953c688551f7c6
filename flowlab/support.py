"""``Support``: the set of points a density lives on, coordinate by coordinate: all of R, an open interval
``(low, high)``, or a half-line ``(low, ∞)`` / ``(−∞, high)``.

A flow declares the support of its data side in ``FlowSpec.support`` (a logit/sigmoid chain lives on ``(0, 1)^d``)
and, where its base distribution is not on all of R^d, the support of its base side in ``FlowSpec.base_support``
(else it is read off the base distribution's ``torch.distributions`` constraint, :func:`support_of`). The
conformance kit draws its points inside the supports and near their edges (:meth:`Support.from_real`), checks that
the flow maps one support into the other, and integrates densities over them.

``low`` and ``high`` are a number for every coordinate, or a tuple of one number per coordinate (then the support
exists in that many dimensions only). Bounds are open: a point on a bound is outside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowlab.errors import OptionError, ShapeError

if TYPE_CHECKING:  # torch is imported where it is used: FlowSpec (torch-free) holds a Support
    import torch
    from torch import Tensor

Bound = float | tuple[float, ...]


@dataclass(frozen=True)
class Support:
    """The open box ``{x : low_i < x_i < high_i}`` (bounds may be infinite); see the module docstring."""

    low: Bound = -math.inf
    high: Bound = math.inf

    def __post_init__(self) -> None:
        low, high = _as_list(self.low), _as_list(self.high)
        if len(low) > 1 and len(high) > 1 and len(low) != len(high):
            raise OptionError(f"Support: low has {len(low)} coordinates, high {len(high)}")
        if any(math.isnan(v) for v in (*low, *high)):
            raise OptionError("Support: bounds must not be NaN")
        pairs = zip(low * (len(high) if len(low) == 1 else 1), high * (len(low) if len(high) == 1 else 1), strict=True)
        if any(not lo < hi for lo, hi in pairs):
            raise OptionError(f"Support: expected low < high in every coordinate, got low={self.low}, high={self.high}")

    @property
    def is_real(self) -> bool:
        """Whether this is all of R^d (no bound anywhere)."""
        return all(v == -math.inf for v in _as_list(self.low)) and all(v == math.inf for v in _as_list(self.high))

    @property
    def bounded(self) -> bool:
        """Whether every coordinate has both bounds finite (a box of finite volume)."""
        return all(math.isfinite(v) for v in (*_as_list(self.low), *_as_list(self.high)))

    def bounds(self, dim: int, like: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(low, high)`` as ``[dim]`` tensors (float64 on the CPU, or ``like``'s dtype and device)."""
        import torch

        low, high = _per_coordinate(self.low, dim, "low"), _per_coordinate(self.high, dim, "high")
        tensors = torch.tensor(low, dtype=torch.float64), torch.tensor(high, dtype=torch.float64)
        if like is None:
            return tensors
        return tensors[0].to(like), tensors[1].to(like)

    def contains(self, x: Tensor) -> Tensor:
        """``[batch]`` booleans: whether each row of ``x`` (``[batch, dim]``) lies inside (bounds excluded)."""
        low, high = self.bounds(x.shape[-1], x)
        return ((x > low) & (x < high)).all(dim=-1)

    def from_real(self, y: Tensor) -> Tensor:
        """A fixed bijection from R^d onto the support, coordinate by coordinate: the identity on R,
        ``low + (high − low)·sigmoid(y)`` on an interval, ``low + softplus(y)`` / ``high − softplus(−y)`` on a
        half-line. Large ``|y|`` lands near the bounds: the kit draws points with it, so points near the edges are
        drawn as often as large inputs are. Computed in float64 and kept strictly inside after rounding to
        ``y``'s dtype."""
        import torch

        low, high = self.bounds(y.shape[-1])
        wide = y.detach().to(dtype=torch.float64, device="cpu")
        both, lower, upper = low.isfinite() & high.isfinite(), low.isfinite(), high.isfinite()
        span = torch.where(both, high - low, torch.ones_like(low))
        out = torch.where(both, low + span * torch.sigmoid(wide), wide)
        out = torch.where(lower & ~both, low + torch.nn.functional.softplus(wide), out)
        out = torch.where(upper & ~both, high - torch.nn.functional.softplus(-wide), out)
        points = out.to(dtype=y.dtype)
        low_r, high_r = low.to(points.dtype), high.to(points.dtype)
        middle = torch.where(both, (low_r + high_r) / 2, torch.where(lower, low_r + 1, high_r - 1))
        inside = (points > low_r) & (points < high_r)
        for _ in range(4):  # rounding put a few points on a bound: step them inside, one ulp at a time
            if bool(inside.all()):
                break
            points = torch.where(inside, points, torch.nextafter(points, middle.expand_as(points)))
            inside = (points > low_r) & (points < high_r)
        return points.to(device=y.device)

    def outside(self, dim: int, rows: int, generator: torch.Generator) -> Tensor | None:
        """``[rows, dim]`` points outside the support (float64, CPU), each beyond one bound of one coordinate;
        ``None`` for all of R^d."""
        import torch

        low, high = self.bounds(dim)
        bounded = [(i, side) for i in range(dim) for side, v in (("low", low[i]), ("high", high[i])) if v.isfinite()]
        if not bounded:
            return None
        points = self.from_real(torch.randn(rows, dim, generator=generator, dtype=torch.float64))
        for row in range(rows):
            i, side = bounded[row % len(bounded)]
            step = 1.0 + float(torch.rand((), generator=generator, dtype=torch.float64))
            points[row, i] = low[i] - step if side == "low" else high[i] + step
        return points

    def describe(self) -> str:
        """The support in words, e.g. ``R^d``, ``(0, 1)^d``, ``(0, inf)^d``."""
        if self.is_real:
            return "R^d"
        low, high = _as_list(self.low), _as_list(self.high)
        if len(low) == 1 and len(high) == 1:
            return f"({_word(low[0])}, {_word(high[0])})^d"
        return f"the box with low={list(map(_word, low))}, high={list(map(_word, high))}"


def support_of(distribution: Any) -> Support:
    """The support of a ``torch.distributions.Distribution`` of vectors, from its ``support`` constraint
    (``real``, ``interval``, ``greater_than``, ``less_than``, ``positive``, ``unit_interval``, ... wrapped in
    ``independent``); all of R^d for a constraint that is none of these."""
    try:
        constraint = distribution.support
    except (AttributeError, NotImplementedError):  # a distribution that does not say: R^d
        return REAL
    while constraint is not None and hasattr(constraint, "base_constraint"):
        constraint = constraint.base_constraint
    low = _bound_value(getattr(constraint, "lower_bound", -math.inf), -math.inf)
    high = _bound_value(getattr(constraint, "upper_bound", math.inf), math.inf)
    return REAL if (low, high) == (-math.inf, math.inf) else Support(low, high)


def _bound_value(value: Any, default: float) -> Bound:
    import torch

    if isinstance(value, torch.Tensor):
        flat = value.detach().double().cpu().flatten().tolist()
        return flat[0] if len(set(flat)) == 1 else tuple(flat)
    return float(value) if value is not None else default


def _as_list(bound: Bound) -> list[float]:
    return [float(v) for v in bound] if isinstance(bound, Sequence) else [float(bound)]


def _per_coordinate(bound: Bound, dim: int, name: str) -> list[float]:
    values = _as_list(bound)
    if len(values) == 1:
        return values * dim
    if len(values) != dim:
        raise ShapeError(f"Support: {name} has {len(values)} coordinates, the points have {dim}")
    return values


def _word(value: float) -> str:
    return "inf" if value == math.inf else "-inf" if value == -math.inf else f"{value:g}"


#: all of R^d, the support of most flows
REAL = Support()
