"""``TimeMLP``: a time-conditioned MLP vector field ``f(t, z)`` implementing :class:`~flowlab.JacobianField` and
:class:`~flowlab.JVPField`."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowlab.errors import OptionError, ShapeError
from flowlab.nn import SMOOTH_CHOICES, activation_module


class TimeMLP(nn.Module):
    """``f(t, z) = MLP([z, φ(t)])`` with the time features ``φ(t) = (t, sin(2πkt), cos(2πkt))_{k=1..K}``.

    ``t`` may be a 0-d tensor (one time for the whole batch, torchdiffeq's convention), any tensor with one element,
    or one time per row (``[batch]`` or ``[batch, 1]``): one time gives one row of features, which the first layer
    broadcasts over the batch, so every batch size works (a time embedding that assumes one shape of ``t`` is a
    classic bug).
    The last layer is scaled by ``init_scale`` so a new field is small (the flow starts near the identity).

    :meth:`jacobian` carries ``∂f/∂z`` forward through the layers with the value (forward mode, one pass, no
    autograd call): what the exact trace of a CNF needs at every function evaluation. :meth:`jvp` carries one
    tangent ``(∂f/∂z) v`` the same way: what the Hutchinson trace ``vᵀ J v`` needs.
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 32,
        depth: int = 2,
        activation: str = "tanh",
        frequencies: int = 1,
        init_scale: float = 0.1,
    ) -> None:
        super().__init__()
        if activation not in SMOOTH_CHOICES:  # the trace's gradient needs second derivatives (not ReLU's zeros)
            raise OptionError(f"TimeMLP: activation must be one of {', '.join(SMOOTH_CHOICES)}, got {activation!r}")
        self.dim = dim
        self.frequencies = frequencies
        widths = [dim + 1 + 2 * frequencies] + [hidden] * depth
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(widths):
            layers += [nn.Linear(n_in, n_out), activation_module(activation)]
        last = nn.Linear(widths[-1], dim)
        with torch.no_grad():
            last.weight.mul_(init_scale)
            last.bias.mul_(init_scale)
        self.net = nn.Sequential(*layers, last)

    def time_features(self, t: Tensor, batch: int, like: Tensor) -> Tensor:
        """``φ(t)``: ``[batch, 1 + 2K]`` for one time per row, ``[1, 1 + 2K]`` for a ``t`` of one element (one row,
        which the first layer broadcasts over the batch)."""
        t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
        if t.numel() == 1:
            t = t.reshape(1, 1)
        elif t.numel() == batch and t.dim() <= 2:
            t = t.reshape(batch, 1)
        else:
            raise ShapeError(f"TimeMLP: expected t with 1 element or one per row ({batch}), got shape {list(t.shape)}")
        if self.frequencies == 0:
            return t
        if self.frequencies == 1:
            angles = t * (2 * math.pi)
        else:
            angles = t * (2 * math.pi * torch.arange(1, self.frequencies + 1, dtype=like.dtype, device=like.device))
        return torch.cat([t, angles.sin(), angles.cos()], dim=-1)

    def first_layer(self, t: Tensor, z: Tensor) -> Tensor:
        """The first layer's pre-activation ``a_1 = W_z z + (W_φ φ(t) + b_1)``, ``W_1 = [W_z, W_φ]``: the time part
        is computed once, as one row, when ``t`` is one time for the batch (the solver's calls), instead of
        concatenating ``φ(t)`` to every row of ``z``."""
        first = self.net[0]
        assert isinstance(first, nn.Linear)
        time_part = torch.addmm(first.bias, self.time_features(t, z.shape[0], z), first.weight[:, self.dim :].t())
        return torch.addmm(time_part, z, first.weight[:, : self.dim].t())

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        layers = list(self.net)
        a = self.first_layer(t, z)
        # F.linear on the layers' weights (as jacobian below): a module call's hooks machinery costs a fifth of a
        # small field's evaluation
        for activation, linear in zip(layers[1::2], layers[2::2], strict=True):
            assert isinstance(linear, nn.Linear)
            a = F.linear(activation(a), linear.weight, linear.bias)
        return a

    def jacobian(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(f(t, z), ∂f/∂z)``, the Jacobian ``[batch, dim, dim]`` with ``J[b, i, j] = ∂f_i/∂z_j``.

        With ``a_1 = W_1 [z, φ(t)] + b_1`` (:meth:`first_layer`), ``h_ℓ = σ(a_ℓ)``, ``a_{ℓ+1} = W_{ℓ+1} h_ℓ + b_{ℓ+1}``
        and ``f = a_L``, the chain rule gives ``∂a_1/∂z = W_1[:, :dim]`` (the time features do not depend on ``z``) and
        ``∂a_{ℓ+1}/∂z = W_{ℓ+1} diag(σ'(a_ℓ)) ∂a_ℓ/∂z``. The Jacobian is held transposed, ``[batch, dim, width]``, so
        each product with ``W`` is one ``linear`` over ``batch · dim`` rows; the activations give ``σ'`` with ``σ``
        (``value_and_derivative``). Cost: ``dim`` times the forward's multiply-adds, in a handful of calls
        (the autograd road makes ``dim`` backward passes through a vmap: about twice the time at small batches, 2-6
        times from ``dim = 8`` on; docs/benchmarks.md).
        """
        batch, dim = z.shape
        first = self.net[0]
        assert isinstance(first, nn.Linear)
        # ∂a_1/∂z transposed, the same for every row (broadcast by the first product)
        a, jacobian_t = self.carry_tangents(t, z, first.weight[:, :dim].t())
        return a, jacobian_t.expand(batch, dim, a.shape[1]).transpose(1, 2)  # expand: a field without hidden layers

    def jvp(self, t: Tensor, z: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """``(f(t, z), (∂f/∂z) v)`` per row, ``v`` of the shape of ``z``: the tangent ``ȧ_1 = W_1[:, :dim] v``,
        ``ȧ_{ℓ+1} = W_{ℓ+1} (σ'(a_ℓ) ⊙ ȧ_ℓ)`` carried with the value (the chain rule of :meth:`jacobian` applied to one
        direction: twice the forward's multiply-adds, whatever ``dim``)."""
        first = self.net[0]
        assert isinstance(first, nn.Linear)
        a, tangent = self.carry_tangents(t, z, F.linear(v, first.weight[:, : self.dim]).unsqueeze(1))
        return a, tangent.squeeze(1)

    def carry_tangents(self, t: Tensor, z: Tensor, tangents: Tensor) -> tuple[Tensor, Tensor]:
        """``(f(t, z), T_L)``: the first layer's tangents ``T_1`` (``[k, width]`` for every row, or ``[batch, k,
        width]``; transposed, one tangent per row of ``k``) carried through the layers with the value,
        ``T_{ℓ+1} = T_ℓ diag(σ'(a_ℓ)) W_{ℓ+1}ᵀ``: what :meth:`jacobian` (``k = dim``) and :meth:`jvp` (``k = 1``)
        share."""
        layers = list(self.net)
        # F.linear on the layers' weights, not the modules' calls: a module call's hooks machinery costs a fifth of
        # this function at the small sizes CNFs use, once per layer at every function evaluation
        a = self.first_layer(t, z)
        for activation, linear in zip(layers[1::2], layers[2::2], strict=True):
            assert isinstance(linear, nn.Linear)
            h, derivative = activation.value_and_derivative(a)  # type: ignore[operator]
            tangents = F.linear(tangents * derivative.unsqueeze(1), linear.weight)
            a = F.linear(h, linear.weight, linear.bias)
        return a, tangents
