"""MADE-masked affine autoregressive layers (MAF and IAF) and the orderings between them.

Sign convention (flowlab's): ``forward(z) -> (x, log|det ∂x/∂z|)`` maps noise to data (sampling),
``inverse(x) -> (z, log|det ∂z/∂x|)`` maps data to noise (density). Every layer is the elementwise affine map

    x_i = (z_i + m_i) · exp(s_i),    s_i = B · tanh(ŝ_i / B)  (soft-clamped, B = ``scale_bound``)

so that the density direction, the one maximum likelihood trains, is the plain affine map
``z_i = x_i · exp(−s_i) − m_i`` (as in zuko, nflows and normflows). The MAF paper's ``x_i = z_i · exp(s_i) + m_i`` is
the same family, but its density direction ``(x_i − m_i) · exp(−s_i)`` couples the shift to the scale; at an equal
budget its median held-out NLL (3 seeds) was 0.05 nats worse on 8gaussians and checkerboard and 0.01–0.02 better on
2spirals and moons (docs/benchmarks.md, "Quality against zuko"). The Jacobian
``∂x/∂z`` is lower-triangular with diagonal ``exp(s_i)``, so ``log|det ∂x/∂z| = Σ_i s_i`` and
``log|det ∂z/∂x| = −Σ_i s_i``. The two layers differ only in which side the conditioner ``(m, ŝ) = MADE(·)`` reads:

- MAF (``reads="x"``): ``m_i, ŝ_i`` are functions of ``x_{<i}``. ``inverse`` is one parallel MADE pass
  (``x`` is known); ``forward`` needs ``dim`` sequential passes (``x_i`` needs ``x_{<i}`` first).
- IAF (``reads="z"``): ``m_i, ŝ_i`` are functions of ``z_{<i}``. ``forward`` is one parallel pass; ``inverse``
  needs ``dim`` sequential passes.

With ``context_dim = k > 0`` the MADE also reads a context ``c`` (``[batch, k]``): ``m_i, ŝ_i`` are functions of
``(u_{<i}, c)``. The context feeds every unit of the first hidden layer, unmasked (it is not a coordinate of the
map, so any dependence on it keeps the Jacobian in ``z`` triangular), and hidden units of degree 0 (reading the
context alone) reach the first coordinate too; the log-det is the same ``Σ_i s_i``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional

from flowlab import Bijector, OptionError, Permutation, ShapeError
from flowlab.nn import MaskedLinear, activation_module, soft_clamp, zero_init

Reads = Literal["x", "z"]
#: where a MADE has its skip connection: only where a hidden degree is missing, or always (see :class:`MADE`)
Skip = Literal["auto", "always"]
#: one coordinate of a sequential pass: ``(given_i, m_i, ŝ_i) -> (u_i, s_i)``
Solve = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def hidden_degrees(dim: int, width: int, *, conditional: bool = False) -> Tensor:
    """MADE degrees of one hidden layer: ``1, 2, ..., dim−1, 1, 2, ...`` (cyclic, so every degree is present
    when ``width ≥ dim − 1``); all ``0`` for ``dim = 1`` (units that read no input). ``conditional``: ``0, 1, ...,
    dim−1, 0, ...``: units of degree 0 read the context alone, so that the first output depends on it too."""
    lowest = 0 if conditional else min(1, dim - 1)
    return torch.arange(width) % max(1, dim - lowest) + lowest


class MADE(nn.Module):
    """Masked autoencoder (Germain et al. 2015): ``u ∈ R^dim -> (m, ŝ) ∈ R^dim × R^dim`` with ``m_i, ŝ_i``
    depending on ``u_{<i}`` only.

    Inputs have degrees ``1..dim``, hidden units the cyclic :func:`hidden_degrees`; a hidden unit of degree ``k``
    sees the units of degree ``≤ k`` below it, output ``i`` (degree ``i``) the units of degree ``< i``: the dependence
    ``u_j -> (m_i, ŝ_i)``, ``j < i``, goes through hidden units of degrees ``j..i−1``, so it has a path when every
    degree ``1..dim−1`` is present (``hidden ≥ dim − 1``; ``≥ dim`` when conditional) and a unit of it is alive at
    the point.

    A masked linear *skip* connection from the input to the output, ``(m, ŝ) = out(h(u)) + W u`` with ``W``
    strictly lower-triangular, gives every dependence a path that neither a dead ReLU nor a missing degree cuts, at
    ``2·dim²`` more multiply-adds per point (a third of the MADE's at ``dim = hidden = 64``, depth 2).
    ``skip="auto"`` gives the MADE this connection only where a degree is missing, where some dependence would have
    no path without it; elsewhere the MADE is Germain et al.'s, as zuko's, nflows' and normflows' (its 2D fits are as
    good: docs/benchmarks.md, "MADE's skip connection"). ``skip="always"``: in every case. A state_dict with skip
    weights (a checkpoint made when every MADE had the skip, its options not naming it) loads into a MADE built
    without one by giving it the skip (:meth:`_load_from_state_dict`).

    ``context_dim = k > 0``: ``k`` more inputs, the context, that every unit of the first hidden layer reads (their
    mask columns are all ones), and hidden degrees from 0 (units that read the context alone), so every output,
    the first included, may depend on it.
    """

    by_degree: Tensor
    skip: MaskedLinear | None

    def __init__(
        self, dim: int, *, hidden: int, depth: int, activation: str, context_dim: int = 0, skip: Skip = "auto"
    ) -> None:
        super().__init__()
        if skip not in ("auto", "always"):
            raise OptionError(f"MADE: expected skip='auto' or 'always', got {skip!r}")
        self.dim = dim
        inputs = torch.arange(1, dim + 1)
        outputs = inputs.repeat(2)  # m_1..m_d, ŝ_1..ŝ_d
        layers: list[nn.Module] = []
        below = inputs
        degrees = hidden_degrees(dim, hidden, conditional=context_dim > 0)  # every hidden layer's
        for k in range(depth):
            mask = degrees[:, None] >= below[None, :]
            if k == 0 and context_dim:
                mask = torch.cat([mask, torch.ones(hidden, context_dim, dtype=torch.bool)], dim=1)
            layers += [MaskedLinear(mask), activation_module(activation, inplace=True)]
            below = degrees
        self.hidden = nn.Sequential(*layers)
        self.out = MaskedLinear(outputs[:, None] > below[None, :])
        missing = bool(torch.isin(inputs[:-1], degrees, invert=True).any())  # a degree in 1..dim−1 no unit has
        # registered after out, where every MADE had it before "auto" (the order of the parameters, for optimizers)
        self.register_module("skip", self.skip_layer() if skip == "always" or missing else None)
        # for solve: the hidden units by degree, and how many of them (a prefix) output i reads: those of degree < i
        self.register_buffer("by_degree", torch.argsort(degrees, stable=True), persistent=False)
        self.reads = [int((degrees < i).sum()) for i in range(1, dim + 1)]

    def skip_layer(self) -> MaskedLinear:
        """The skip connection ``u -> W u``: output ``i`` of ``(m, ŝ)`` reads inputs ``< i`` (no bias: ``out``'s)."""
        inputs = torch.arange(1, self.dim + 1)
        return MaskedLinear(inputs.repeat(2)[:, None] > inputs[None, :], bias=False)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Load as :class:`torch.nn.Module` does, after giving a MADE without a skip connection one if the state has
        its weights (a checkpoint of a flow built when the skip was the default, whose options do not name it)."""
        if self.skip is None and prefix + "skip.weight" in state_dict:
            self.skip = self.skip_layer().to(self.out.weight)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def zero_output(self) -> None:
        """Make the output ``(m, ŝ) = (0, 0)`` for every input (the layer starts as the identity)."""
        zero_init(self.out)
        if self.skip is not None:
            zero_init(self.skip)

    def forward(self, u: Tensor, conditioned: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(m, ŝ)`` from ``u``; ``conditioned``: ``[u, c]``, what the first hidden layer reads when conditional."""
        hidden = self.hidden(u if conditioned is None else conditioned)
        if self.skip is None:
            output = self.out(hidden)
        else:  # out(hidden) + skip(u) as one addmm onto the skip's product: no separate pass to add them
            skip = functional.linear(u, self.skip.masked_weight(), self.out.bias)
            output = torch.addmm(skip, hidden, self.out.masked_weight().t())
        shift, raw_scale = output.chunk(2, dim=-1)
        return shift, raw_scale

    def solve(self, given: Tensor, step: Solve, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Solve ``u_i, s_i = step(given_i, m_i, ŝ_i)`` with ``(m_i, ŝ_i)`` this MADE's output ``i`` at ``(u_{<i}, c)``,
        for ``i = 1..d`` in turn: ``d`` sequential passes; returns ``u`` and ``s``.

        Output ``i`` reads the hidden units of degree ``< i``, which read (through every hidden layer) units of
        degree ``< i`` and inputs ``u_{<i}`` only. So pass ``i`` computes only those units (with the units sorted by
        degree, a prefix of each layer: ``reads[i]`` of them) and may leave ``u_{≥i}`` at 0: the first hidden
        layer's pre-activation is updated by the column of the coordinate solved last (rank one, instead of a
        ``d × h`` product), the deeper layers run on the ``reads[i] × reads[i]`` block of their weights, and of the
        output layer only the two rows of ``(m_i, ŝ_i)``; the skip connection's output, if any, is updated by the
        column of the coordinate solved last, as the first layer's. The first output reads no hidden unit (unless
        conditioned): pass 1 is the output bias. Over the ``d`` passes the deeper layers cost about ``d/3`` full
        products instead of ``d``; the values are those of ``d`` full calls, up to rounding.
        """
        linears = [layer for layer in self.hidden if isinstance(layer, MaskedLinear)]
        activations = [layer for layer in self.hidden if not isinstance(layer, MaskedLinear)]
        dim, rows, order = self.dim, given.shape[0], self.by_degree
        first, zeros = linears[0], given.new_zeros(rows, dim)
        w_first = first.masked_weight().index_select(0, order)  # [h, d (+ k)], rows by degree
        deeper = [
            (layer.masked_weight().index_select(0, order).index_select(1, order), layer.bias.index_select(0, order))
            for layer in linears[1:]
        ]
        w_out = self.out.masked_weight().index_select(1, order).view(2, dim, -1).transpose(0, 1)  # [d, 2, h]
        b_out = self.out.bias.view(2, dim).t()  # [d, 2]: rows (m_i, ŝ_i)
        # at u = 0: the first layer's bias and context part, the skip's 0 (calls that keep every weight in the graph)
        inputs = zeros if context is None else torch.cat([zeros, context], dim=-1)
        pre = functional.linear(inputs, w_first, first.bias.index_select(0, order))
        # with a skip connection: its weight [2d outputs, d inputs] and its output so far, Σ_{j solved} W[:, j] u_j
        skip = None
        if self.skip is not None:
            w_skip = self.skip.masked_weight()
            skip = w_skip, functional.linear(zeros, w_skip)
        solved, scales = [], []
        for i, units in enumerate(self.reads):
            first_units = pre[:, :units]  # a view of pre, which the next passes update: not for an in-place activation
            hidden = activations[0](first_units.clone() if getattr(activations[0], "inplace", False) else first_units)
            for (weight, bias), activation in zip(deeper, activations[1:], strict=True):
                hidden = activation(functional.linear(hidden, weight[:units, :units], bias[:units]))
            output = functional.linear(hidden, w_out[i, :, :units], b_out[i])
            shift, raw_scale = (output if skip is None else output + skip[1][:, i::dim]).unbind(-1)
            u_i, s_i = step(given[:, i], shift, raw_scale)
            solved.append(u_i)
            scales.append(s_i)
            if i + 1 < dim:
                pre = torch.addr(pre, u_i, w_first[:, i])  # pre + u_i ⊗ W_first[:, i], one fused pass
                if skip is not None:
                    skip = skip[0], torch.addr(skip[1], u_i, skip[0][:, i])
        return torch.stack(solved, dim=-1), torch.stack(scales, dim=-1)


class AffineAutoregressive(Bijector):
    """One affine autoregressive layer ``x_i = (z_i + m_i) · exp(s_i)`` (see the module docstring); ``reads``:
    ``"x"`` for MAF (parallel ``inverse``, sequential ``forward``), ``"z"`` for IAF (the mirror image)."""

    def __init__(
        self,
        dim: int,
        *,
        reads: Reads,
        hidden: int = 64,
        depth: int = 2,
        activation: str = "relu",
        scale_bound: float = 3.0,
        identity_init: bool = True,
        context_dim: int = 0,
        skip: Skip = "auto",
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ShapeError(f"autoregressive layer: expected dim >= 1, got {dim}")
        if reads not in ("x", "z"):
            raise OptionError(f"autoregressive layer: expected reads='x' (MAF) or 'z' (IAF), got {reads!r}")
        self.dim = dim
        self.context_dim = int(context_dim)
        self.reads = reads
        self.scale_bound = float(scale_bound)
        self.made = MADE(
            dim, hidden=hidden, depth=depth, activation=activation, context_dim=self.context_dim, skip=skip
        )
        if identity_init:
            self.made.zero_output()

    def conditioner(self, u: Tensor, context: Tensor | None = None, *, negate: bool = False) -> tuple[Tensor, Tensor]:
        """``(m, s)`` from the side the layer reads (``x`` for MAF, ``z`` for IAF) and the context, ``s``
        soft-clamped; ``negate``: ``(m, −s)``."""
        conditioned = None if context is None and not self.context_dim else self.conditioner_input(u, context)
        shift, raw_scale = self.made(u, conditioned)
        return shift, soft_clamp(raw_scale, self.scale_bound, negate=negate)

    def _sequential(
        self, given: Tensor, step: Callable[[Tensor, Tensor, Tensor], Tensor], context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Solve for the read side ``u`` from the other side ``given``, coordinate by coordinate (``u_i`` needs
        ``u_{<i}`` only): ``dim`` passes of :meth:`MADE.solve`."""
        if context is not None or self.context_dim:
            context = self.conditioner_input(given, context)[:, self.dim :]  # the context, checked as in one pass

        def coordinate(given_i: Tensor, shift: Tensor, raw_scale: Tensor) -> tuple[Tensor, Tensor]:
            s = soft_clamp(raw_scale, self.scale_bound)
            return step(given_i, shift, s), s

        return self.made.solve(given, coordinate, context)

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.reads == "z":  # IAF: one pass
            shift, s = self.conditioner(z, context)
            x = affine(z, shift, s)
        else:  # MAF: dim passes
            x, s = self._sequential(z, affine, context)
        return x, s.sum(dim=-1)

    def inverse(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.reads == "x":  # MAF: one pass
            shift, minus_s = self.conditioner(x, context, negate=True)
            return x * minus_s.exp() - shift, minus_s.sum(dim=-1)  # unaffine with −s at hand
        z, s = self._sequential(x, unaffine, context)  # IAF: dim passes
        return z, -s.sum(dim=-1)


def affine(z: Tensor, shift: Tensor, s: Tensor) -> Tensor:
    """``x = (z + m) · exp(s)``."""
    return (z + shift) * s.exp()


def unaffine(x: Tensor, shift: Tensor, s: Tensor) -> Tensor:
    """``z = x · exp(−s) − m``, the inverse of :func:`affine`."""
    return x * (-s).exp() - shift


def ordering(dim: int, permutation: str, generator: torch.Generator) -> Permutation:
    """The permutation between two layers: ``reverse``, or ``random``: a random permutation that puts the previous
    layer's last coordinate first. Each layer's last output depends on every input it got and its first output on
    its first input only, so either choice makes two layers mix every coordinate (a plain random permutation does
    so only with probability ``1/dim``)."""
    if permutation == "reverse":
        return Permutation.reverse(dim)
    if permutation != "random":
        raise OptionError(f"autoregressive: expected permutation 'reverse' or 'random', got {permutation!r}")
    rest = torch.randperm(dim - 1, generator=generator)
    return Permutation(torch.cat([torch.tensor([dim - 1]), rest]))
