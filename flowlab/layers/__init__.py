"""Bijective layers that flows are assembled from (``zuko.transforms`` to the plugins' ``zuko.flows``).

A layer used by more than one flow lives here; a plugin assembles layers into a flow and registers it
(``docs/writing-plugins.md``). Each layer follows flowlab's sign convention: ``forward(z) -> (x, log|det ∂x/∂z|)``
(sampling), ``inverse(x) -> (z, log|det ∂z/∂x|)`` (density), log-dets of shape ``[batch]``.

- :class:`Coupling`: ``x_a = z_a``, ``x_b = τ(z_b; θ(z_a, c))`` for an elementwise monotone ``τ`` a subclass
  defines; :class:`AffineCoupling` (RealNVP, soft-clamped log-scale) is one.
- :class:`ActNorm`: a per-coordinate affine map initialised from the first training batch (Glow).

``Compose`` and ``Permutation`` are flowlab's core bijectors (``from flowlab import Compose, Permutation``); the
networks inside the layers are in :mod:`flowlab.nn`.
"""

from __future__ import annotations

from flowlab.layers.actnorm import MIN_STD, ActNorm
from flowlab.layers.coupling import SPLITS, AffineCoupling, Coupling

__all__ = ["MIN_STD", "SPLITS", "ActNorm", "AffineCoupling", "Coupling"]
