"""The networks flows are built from: activations, the MLP, the soft clamp of a log-scale, zero-initialised last
layers, and MADE's masked linear layer.

Every plugin takes these from here (``docs/writing-plugins.md``); the bijective layers made of them are in
:mod:`flowlab.layers`. Nothing here is a bijector: these are the conditioners and fields *inside* one.

**Activations.** One table, :data:`ACTIVATIONS` (name -> ``nn.Module`` class); each family offers the names that
suit it as its ``activation`` option's choices:

- :data:`CONDITIONER_CHOICES` (``relu``, ``tanh``, ``elu``, ``silu``): the networks of coupling and autoregressive
  layers, whose output only parametrises an elementwise map (any activation will do);
- :data:`SMOOTH_CHOICES` (``tanh``, ``softplus``, ``elu``, ``silu``): ODE vector fields, whose trace's gradient
  needs second derivatives (ReLU's are zero almost everywhere); their modules have ``value_and_derivative``, so a
  field can carry its Jacobian forward (:meth:`flowlab.ode.TimeMLP.jacobian`);
- :data:`LIPSCHITZ_CHOICES` (``lipswish``, ``elu``): residual blocks, which need ``|φ'| ≤ 1`` and ``φ'`` in closed
  form (their modules have ``value_and_derivative(a) -> (φ(a), φ'(a))``).
"""

from __future__ import annotations

import inspect
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowlab.errors import OptionError


class ELU(nn.ELU):
    """torch's ELU (``α = 1``): ``φ(a) = a`` for ``a > 0``, ``exp(a) − 1`` otherwise, with its derivative
    ``φ'(a) = exp(min(a, 0)) ∈ (0, 1]`` (1-Lipschitz)."""

    def value_and_derivative(self, a: Tensor) -> tuple[Tensor, Tensor]:
        """``(φ(a), φ'(a))`` elementwise."""
        return F.elu(a), torch.exp(a.clamp(max=0))


#: from this many elements on, :func:`tanh` goes through the sigmoid when no graph is recorded (below it, or when
#: autograd records, ``torch.tanh`` is cheaper)
TANH_THROUGH_SIGMOID = 2048


def tanh(a: Tensor) -> Tensor:
    """``tanh(a)``; as ``2σ(2a) − 1`` on tensors of :data:`TANH_THROUGH_SIGMOID` elements or more that autograd does
    not record (sampling, evaluation, the kit's cases without autograd).

    torch's ``tanh`` kernel is its 1-ulp one; its ``sigmoid`` takes a faster ``exp``: on ``[8192, 32]`` in float64,
    one thread, a CNF solve of 8192 points without autograd (the kit's normalization grids, sampling) took 167–234 ms
    through the sigmoid against 279–412 ms through ``torch.tanh`` (docs/benchmarks.md, "The soft clamp through the
    sigmoid"). Below the threshold the three calls of the sigmoid form cost more than the one ``tanh`` they replace
    (on ``[10, 32]``: 15.7 against 11.1 µs), and so do their three backward nodes in training (a CNF training step
    at batch 256: 1.07–1.11 times ``torch.tanh``'s). Both forms give ``tanh(a)`` to a few ulps of 1 (absolute; the
    sigmoid's is not relative near 0), so a row's value may differ by that much between a small batch and a large
    one, or with and without autograd.
    """
    if a.numel() < TANH_THROUGH_SIGMOID or (a.requires_grad and torch.is_grad_enabled()):
        return torch.tanh(a)
    return torch.sigmoid(a * 2).mul_(2).sub_(1)  # nothing recorded: every step in place after the first


class Tanh(nn.Tanh):
    """tanh (:func:`tanh`) with its derivative ``φ'(a) = 1 − tanh²(a)``."""

    def forward(self, a: Tensor) -> Tensor:
        return tanh(a)

    def value_and_derivative(self, a: Tensor) -> tuple[Tensor, Tensor]:
        """``(φ(a), φ'(a))`` elementwise."""
        value = tanh(a)
        return value, 1 - value * value


class SiLU(nn.SiLU):
    """torch's SiLU ``φ(a) = a · sigmoid(a)`` with its derivative ``φ'(a) = s (1 + a (1 − s))``, ``s = sigmoid(a)``."""

    def value_and_derivative(self, a: Tensor) -> tuple[Tensor, Tensor]:
        """``(φ(a), φ'(a))`` elementwise, sharing ``sigmoid(a)``."""
        s = torch.sigmoid(a)
        return a * s, s * (1 + a * (1 - s))


class Softplus(nn.Softplus):
    """torch's softplus ``φ(a) = log(1 + e^{βa}) / β`` with its derivative ``φ'(a) = sigmoid(βa)``; above torch's
    ``threshold`` (``βa > 20``) both are linear's, ``a`` and 1, as torch computes them."""

    def value_and_derivative(self, a: Tensor) -> tuple[Tensor, Tensor]:
        """``(φ(a), φ'(a))`` elementwise."""
        scaled = self.beta * a
        derivative = torch.where(scaled > self.threshold, torch.ones_like(a), torch.sigmoid(scaled))
        return F.softplus(a, self.beta, self.threshold), derivative


class LipSwish(nn.Module):
    """``φ(a) = a · sigmoid(β a) / 1.1``, ``β = softplus(β̃) > 0`` learnt (Chen et al. 2019, Residual Flows).

    ``φ'(a) = (s + β a s (1 − s)) / 1.1`` with ``s = sigmoid(β a)``; ``sup |φ'| = 1.0998… / 1.1 < 1`` for every β:
    1-Lipschitz whatever is learnt.
    """

    def __init__(self) -> None:
        super().__init__()
        self.raw_beta = nn.Parameter(torch.tensor(0.5))

    def value_and_derivative(self, a: Tensor) -> tuple[Tensor, Tensor]:
        """``(φ(a), φ'(a))`` elementwise, sharing ``sigmoid(β a)``."""
        beta = F.softplus(self.raw_beta)
        s = torch.sigmoid(beta * a)
        return a * s / 1.1, (s + beta * a * s * (1 - s)) / 1.1

    def forward(self, a: Tensor) -> Tensor:
        return self.value_and_derivative(a)[0]


#: every activation a flowlab network may use, by the name its ``activation`` option takes (read-only)
ACTIVATIONS = MappingProxyType(
    {
        "relu": nn.ReLU,
        "tanh": Tanh,
        "elu": ELU,
        "silu": SiLU,
        "softplus": Softplus,
        "lipswish": LipSwish,
    }
)
#: the activations of coupling and autoregressive conditioners
CONDITIONER_CHOICES = ("relu", "tanh", "elu", "silu")
#: smooth activations (nonzero second derivatives), for ODE vector fields: training differentiates their trace
SMOOTH_CHOICES = ("tanh", "softplus", "elu", "silu")
#: 1-Lipschitz activations with ``value_and_derivative``, for the residual function of an invertible residual block
LIPSCHITZ_CHOICES = ("lipswish", "elu")


def activation_module(name: str, choices: tuple[str, ...] = tuple(ACTIVATIONS), *, inplace: bool = False) -> nn.Module:
    """A new activation module by name; :class:`~flowlab.errors.OptionError` if ``name`` is not among ``choices``.

    ``inplace``: overwrite its input where the module can (``relu``, ``elu``, ``silu``; the others return a new
    tensor). Safe, autograd included, where the input is a fresh ``Linear`` output that nothing else reads: one pass
    over ``[batch, hidden]`` less per layer (11-17 % of ``maf``'s time at d = 2, docs/benchmarks.md).
    """
    if name not in choices:
        raise OptionError(f"activation must be one of {', '.join(choices)}, got {name!r}")
    cls = ACTIVATIONS[name]
    return cls(inplace=True) if inplace and "inplace" in inspect.signature(cls).parameters else cls()


def mlp(
    in_features: int,
    out_features: int,
    *,
    hidden: int = 64,
    depth: int = 2,
    activation: str = "relu",
    context_dim: int = 0,
    zero_last: bool = False,
) -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden``, each ``Linear`` then the activation, and a last ``Linear``.

    It reads ``in_features + context_dim`` values: a conditional layer's network reads ``[h, c]``, the context ``c``
    appended to its input (``Bijector.conditioner_input(h, c)`` builds that input and checks the context). The
    activations work in place on the ``Linear`` outputs before them (:func:`activation_module`).
    ``zero_last``: the last layer starts at zero (:func:`zero_init`), so the network's output is 0 for every input
    (a coupling layer then starts as the identity). The parameters are drawn in layer order from torch's global RNG,
    as ``nn.Linear`` draws them; ``state_dict`` keys are ``"0.weight"``, ``"0.bias"``, ``"2.weight"``, ...
    """
    layers: list[nn.Module] = []
    width = in_features + context_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), activation_module(activation, inplace=True)]
        width = hidden
    last = nn.Linear(width, out_features)
    if zero_last:
        zero_init(last)
    return nn.Sequential(*layers, last)


def zero_init(layer: nn.Linear) -> nn.Linear:
    """Set ``layer``'s weight (and bias, if any) to zero, in place; returns it. The output of a network whose last
    layer is zero is 0 for every input, while the earlier layers keep their random weights, so the gradients reach
    them from the first step (a zero output layer does not get stuck: ``∂L/∂W_last = δ hᵀ`` with ``h ≠ 0``)."""
    with torch.no_grad():
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


def soft_clamp(s: Tensor, bound: float, *, negate: bool = False) -> Tensor:
    """``B · tanh(s / B)`` with ``B = bound``: the log-scale of an affine layer, bounded smoothly; ``negate``:
    ``−B · tanh(s / B)`` (the inverse direction's log-scale) in as many operations.

    **Guarantee.** ``|B · tanh(s / B)| ≤ B`` for every ``s`` (``|tanh| ≤ 1``; the value computed below is ``B``
    only where the sigmoid rounds to 1), so ``exp(±s) ∈ [e^{−B}, e^{B}]``: the scale neither overflows to ``inf``
    nor vanishes to 0 however large the network's output, and the log-det ``Σ s`` is finite. The tutorial's
    unbounded ``exp(ŝ)`` overflows float32 from ``ŝ ≈ 88.7`` on (the conformance kit's ``stress`` check feeds such
    inputs).

    **Near zero it is the identity**: ``B tanh(s/B) = s − s³/(3B²) + O(s⁵)``, so a small log-scale is not
    distorted, and the derivative ``1 − tanh²(s/B) ∈ (0, 1]`` never amplifies a gradient. A hard clamp would have a
    zero gradient outside ``±B``, and a scale that saturates there would stop learning.

    **How it is computed.** As ``2B · σ(2s/B) − B`` (``tanh u = 2σ(2u) − 1``, ``σ`` the logistic sigmoid), with the
    same guarantee: ``σ ∈ [0, 1]``, so the result lies in ``[−B, B]``. Three elementwise passes (a scaling, ``σ``,
    then the scaling and shift in one ``rsub``), about 4x faster than ``torch.tanh``'s three at the sizes flows call
    it with (``[4096, 32]``, one thread: 95 µs against 390 µs in float32, 219 µs against 796 µs in float64; 103 and
    225 µs when the scaling and the shift were two passes): torch's ``tanh`` kernel is the 1-ulp one, its ``sigmoid``
    takes a faster ``exp`` (docs/benchmarks.md, "The soft clamp through the sigmoid").
    The price is an absolute rounding error of a few ``B·ε`` near ``s = 0`` (``ε`` the dtype's machine epsilon;
    measured ≤ 8e-7 in float32 over ``[−50, 50]`` at ``B = 3``, against 3e-7 through ``tanh``), where ``tanh``'s is
    relative. Other bounded forms were measured and are slower: a softsign ``s / (1 + |s|/B)`` or ``s / √(1 +
    (s/B)²)`` takes four or five passes, ``exp(B·u)`` as ``(e^B)^u`` one ``pow`` that is ten times slower than ``exp``.
    """
    sigmoid = torch.sigmoid(s * (2 / bound))  # σ(2s/B)
    # rsub(σ, c, alpha=a) = c − a·σ in one pass: B − 2Bσ (negated), or −B + 2Bσ
    return torch.rsub(sigmoid, bound, alpha=2 * bound) if negate else torch.rsub(sigmoid, -bound, alpha=-2 * bound)


class MaskedLinear(nn.Linear):
    """``y = (W ⊙ M) u + b`` with a fixed 0/1 ``mask`` ``M`` (a buffer, ``[out, in]``): MADE's layer (Germain et al.
    2015). The mask is applied on every use, so a perturbed or trained ``W`` can never break the autoregressive
    structure: ``y_i`` depends on ``u_j`` only where ``M[i, j] = 1``, whatever the weights.

    **Cached product.** Without autograd (``torch.no_grad``, evaluation, sampling) ``W ⊙ M`` is kept between calls
    and made again only when ``W`` or ``M`` changed: an in-place change (an optimizer step, ``load_state_dict``,
    ``perturb_``) bumps the tensor's version counter, and ``.to()`` gives it new memory (the cache holds the tensors
    it was made from, so their memory cannot be reused by others meanwhile). With autograd on, the product is made on
    every call, in the graph. A change through ``W.data`` bypasses the version counter: call :meth:`clear_cache`.
    """

    mask: Tensor

    def __init__(self, mask: Tensor, *, bias: bool = True) -> None:
        super().__init__(mask.shape[1], mask.shape[0], bias=bias)
        self.register_buffer("mask", mask.to(self.weight.dtype))
        self._cache: tuple[tuple[Tensor, int, Tensor, int], Tensor] | None = None

    def masked_weight(self) -> Tensor:
        """``W ⊙ M``, the weight this layer applies (cached without autograd, see the class docstring)."""
        weight, mask = self.weight, self.mask
        if torch.is_grad_enabled():
            return weight * mask
        if self._cache is not None:
            (old_weight, old_version, old_mask, old_mask_version), product = self._cache
            if (
                old_weight.data_ptr() == weight.data_ptr()
                and old_version == weight._version
                and old_mask.data_ptr() == mask.data_ptr()
                and old_mask_version == mask._version
                and product.dtype == weight.dtype
                and product.device == weight.device
            ):
                return product
        product = weight * mask
        self._cache = ((weight, weight._version, mask, mask._version), product)
        return product

    def clear_cache(self) -> None:
        """Forget the cached ``W ⊙ M`` (needed only after changing ``W`` through ``W.data``)."""
        self._cache = None

    def forward(self, u: Tensor) -> Tensor:
        return F.linear(u, self.masked_weight(), self.bias)
