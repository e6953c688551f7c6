"""Coupling layers: keep some coordinates, move the others by an elementwise map whose parameters a network computes
from the kept ones (Dinh et al. 2015, 2017).

    x_a = z_a,    x_b = τ(z_b; θ),    θ = MLP(z_a)  (MLP([z_a, c]) when conditioned on a context c)

For each fixed ``θ`` the map ``τ`` acts on each moved coordinate separately and is strictly monotone, so the
Jacobian, ordered ``(a, b)``, is block lower-triangular:

    ∂x/∂z = [ I           0            ]
            [ ∂x_b/∂z_a   diag(τ'(z_b)) ]

and ``log|det ∂x/∂z| = Σ_b log τ'(z_b)``: O(d), whatever the network. The inverse is exact and as cheap:
``z_a = x_a`` gives ``θ`` back, then ``z_b = τ⁻¹(x_b; θ)``. A layer leaves ``z_a`` unchanged, so flows stack layers
with another split or a permutation in between.
"""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowlab.bijector import Bijector
from flowlab.errors import OptionError
from flowlab.nn import mlp, soft_clamp


def _parity(start: int) -> tuple[slice, slice]:
    return slice(start, None, 2), slice(1 - start, None, 2)


#: how a :class:`Coupling` splits ``d`` coordinates into ``(kept, moved)``: the even or odd indices kept (strided
#: slices, which are views: splitting and joining cost ~4x less than gathering index tensors), or the first
#: ``⌊d/2⌋`` kept and the rest moved
SPLITS = {
    "even": lambda dim: _parity(0),
    "odd": lambda dim: _parity(1),
    "halves": lambda dim: (slice(0, dim // 2), slice(dim // 2, None)),
}


class Coupling(Bijector, abc.ABC):
    """``x_a = z_a``, ``x_b = τ(z_b; θ(z_a))`` (the module docstring): a subclass defines the elementwise map ``τ``
    in :meth:`transform`; this class splits, runs the conditioner, joins and sums the log-derivatives.

    ``split``: a name of :data:`SPLITS`. The conditioner is :func:`flowlab.nn.mlp` (``hidden``, ``depth``,
    ``activation``) from the kept coordinates to ``params_per_coordinate`` values per moved coordinate, in the layout
    :meth:`transform` reads; ``identity_init`` zeroes its last layer (``θ = 0`` for every input, which a subclass
    makes the identity map). ``context_dim = k > 0``: it reads ``[z_a, c]``, ``θ(z_a, c)``; the log-det at fixed
    ``c`` is the same sum.
    """

    def __init__(
        self,
        dim: int,
        *,
        split: str,
        params_per_coordinate: int,
        hidden: int = 64,
        depth: int = 2,
        activation: str = "relu",
        identity_init: bool = True,
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        if split not in SPLITS:
            raise OptionError(f"{type(self).__name__}: split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.dim = dim
        self.context_dim = int(context_dim)
        self.kept, self.moved = SPLITS[split](dim)
        n_kept, n_moved = len(range(dim)[self.kept]), len(range(dim)[self.moved])
        self.conditioner = mlp(
            n_kept,
            params_per_coordinate * n_moved,
            hidden=hidden,
            depth=depth,
            activation=activation,
            context_dim=self.context_dim,
            zero_last=identity_init,
        )

    @abc.abstractmethod
    def transform(self, moved: Tensor, theta: Tensor, *, inverse: bool) -> tuple[Tensor, Tensor]:
        """``(τ(moved; θ), log τ'(moved; θ))``, both elementwise (``[batch, n_moved]``); with ``inverse=True``
        ``(τ⁻¹(moved; θ), log (τ⁻¹)'(moved; θ))``. ``theta``: the conditioner's output, ``[batch,
        params_per_coordinate · n_moved]``, to be read in whatever layout the subclass chooses."""

    def _couple(self, points: Tensor, context: Tensor | None, *, inverse: bool) -> tuple[Tensor, Tensor]:
        kept = points[:, self.kept]
        theta = self.conditioner(self.conditioner_input(kept, context))
        moved, log_derivative = self.transform(points[:, self.moved], theta, inverse=inverse)
        return self._join(kept, moved), log_derivative.sum(dim=-1)

    def _join(self, kept: Tensor, moved: Tensor) -> Tensor:
        if self.kept.stop == self.moved.start:  # halves: one concatenation
            return torch.cat([kept, moved], dim=-1)
        out = torch.empty(kept.shape[0], self.dim, dtype=moved.dtype, device=moved.device)
        out[:, self.kept] = kept
        out[:, self.moved] = moved
        return out

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(z, context, inverse=False)

    def inverse(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(x, context, inverse=True)


class AffineCoupling(Coupling):
    """RealNVP's affine coupling: ``x_b = z_b · exp(s) + t`` with ``(ŝ, t) = MLP(z_a)`` and the bounded log-scale
    ``s = B · tanh(ŝ / B)`` (:func:`flowlab.nn.soft_clamp`, ``B = scale_bound``); ``log|det ∂x/∂z| = Σ_j s_j(z_a)``.

    ``parity``: the even (``"even"``) or odd indices are kept. The conditioner's output is ``[ŝ, t]``, each of the
    moved coordinates' count. With ``identity_init`` the layer starts as the identity (``s = 0``, ``t = 0``).
    With ``context_dim = k > 0`` the conditioner reads ``[z_a, c]``: ``s(z_a, c)``, ``t(z_a, c)``.
    """

    def __init__(
        self,
        dim: int,
        *,
        parity: str = "even",
        hidden: int = 64,
        depth: int = 2,
        activation: str = "relu",
        scale_bound: float = 3.0,
        identity_init: bool = True,
        context_dim: int = 0,
    ) -> None:
        if parity not in ("even", "odd"):
            raise OptionError(f"AffineCoupling: parity must be 'even' or 'odd', got {parity!r}")
        super().__init__(
            dim,
            split=parity,
            params_per_coordinate=2,
            hidden=hidden,
            depth=depth,
            activation=activation,
            identity_init=identity_init,
            context_dim=context_dim,
        )
        self.scale_bound = float(scale_bound)

    def transform(self, moved: Tensor, theta: Tensor, *, inverse: bool) -> tuple[Tensor, Tensor]:
        raw_scale, shift = theta.chunk(2, dim=-1)
        s = soft_clamp(raw_scale, self.scale_bound, negate=inverse)  # inverse: −s, the log-derivative of τ⁻¹
        if inverse:
            return (moved - shift) * s.exp(), s
        return torch.addcmul(shift, moved, s.exp()), s  # z_b · exp(s) + t in one pass

    def weight_orders(self, kept_order: list[int], moved_order: list[int]) -> tuple[Tensor | None, Tensor | None]:
        """The index tensors :meth:`couple` takes when the kept and moved coordinates come in another order:
        ``kept_order[j]`` is the position, among this layer's kept coordinates, of the one in column ``j``
        (likewise ``moved_order``). ``None`` where the order is this layer's own. They select the columns of the
        conditioner's first layer (the context's columns stay last) and the rows of its last layer (the ``ŝ`` rows,
        then the ``t`` rows)."""
        n_kept, n_moved = len(kept_order), len(moved_order)
        columns = rows = None
        if kept_order != list(range(n_kept)):
            columns = torch.tensor([*kept_order, *range(n_kept, n_kept + self.context_dim)])
        if moved_order != list(range(n_moved)):
            rows = torch.tensor([*moved_order, *(n_moved + i for i in moved_order)])
        return columns, rows

    def couple(
        self,
        kept: Tensor,
        moved: Tensor,
        context: Tensor | None = None,
        *,
        inverse: bool,
        columns: Tensor | None = None,
        rows: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The layer on its two parts given apart: ``(x_b, log|det ∂x/∂z|)`` from ``(z_a, z_b)``, or with
        ``inverse=True`` ``(z_b, log|det ∂z/∂x|)`` from ``(x_a, x_b)``; ``[batch, n_kept]``, ``[batch, n_moved]``.

        A stack can keep the two parts as separate tensors from layer to layer instead of splitting and joining
        ``[batch, d]`` each time (``flowlab_stacked``). ``columns``, ``rows`` (from :meth:`weight_orders`): the parts'
        columns are in another order than this layer's; the network's weights are permuted to match, a gather of
        ``hidden × d`` weights instead of ``batch × d`` data. The same map, up to rounding.
        """
        layers = list(self.conditioner)
        first, last = layers[0], layers[-1]
        assert isinstance(first, nn.Linear) and isinstance(last, nn.Linear)
        w_in = first.weight if columns is None else first.weight.index_select(1, columns)
        w_out = last.weight if rows is None else last.weight.index_select(0, rows)
        b_out = last.bias if rows is None else last.bias.index_select(0, rows)
        h = F.linear(self.conditioner_input(kept, context), w_in, first.bias)
        for layer in layers[1:-1]:
            h = layer(h)
        moved, log_derivative = self.transform(moved, F.linear(h, w_out, b_out), inverse=inverse)
        return moved, log_derivative.sum(dim=-1)
