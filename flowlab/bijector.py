"""The ``Bijector`` protocol and the bijectors every plugin may compose: ``Compose`` and ``Permutation``.

Sign convention (used everywhere in flowlab). A bijector maps base points ``z`` to data points ``x``;
``z -> x`` is the sampling direction (noise to data)::

    forward(z) -> (x, log|det ∂x/∂z|)
    inverse(x) -> (z, log|det ∂z/∂x|)

Both log-determinants have shape ``[batch]``, and for the same pair of points they are negatives of each other.
A :class:`~flowlab.flow.Flow` evaluates densities in the inverse direction:
``log p_x(x) = log p_z(z) + log|det ∂z/∂x|`` with ``z = inverse(x)``.

Conditioning (``docs/conditioning.md``). A bijector built with ``context_dim = k > 0`` is a family of bijections
indexed by a context ``c ∈ R^k``: ``forward(z, context=c)``, ``inverse(x, context=c)`` with ``c`` of shape
``[batch, k]``, one context per row; the log-dets are those of the map in ``z`` (or ``x``) at fixed ``c``. A
bijector with ``context_dim = 0`` (the default) takes no context and refuses one with a
:class:`~flowlab.errors.ContextError`; a subclass whose ``forward``/``inverse`` have no ``context`` parameter (any
bijector written before conditioning existed) is unconditional and gets that refusal from this base class.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from flowlab.errors import ContextError, ShapeError
from flowlab.validation import require_context


class Bijector(nn.Module, abc.ABC):
    """An invertible map ``R^dim -> R^dim`` with a tractable log-determinant (see the module docstring).

    Subclasses set ``self.dim`` and implement :meth:`forward` and :meth:`inverse` on ``[batch, dim]`` tensors.
    Everything is an ``nn.Module``: parameters and buffers follow ``.to(device, dtype)``.

    A conditional subclass sets ``self.context_dim = k`` and takes ``context: Tensor | None = None`` in both
    methods; :meth:`conditioner_input` joins the context to what its networks read.
    """

    dim: int
    #: the number of context features the bijector conditions on; 0: unconditional (takes no context)
    context_dim: int = 0

    if TYPE_CHECKING:  # declared as callables so that subclasses written without ``context`` still type-check
        forward: Callable[..., tuple[Tensor, Tensor]]
        inverse: Callable[..., tuple[Tensor, Tensor]]
    else:

        @abc.abstractmethod
        def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
            """Map base points to data points: ``(x, log|det ∂x/∂z|)``, the log-det of shape ``[batch]``; a
            conditional bijector at ``context`` (``[batch, context_dim]``)."""

        @abc.abstractmethod
        def inverse(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
            """Map data points to base points: ``(z, log|det ∂z/∂x|)``, the log-det of shape ``[batch]``; a
            conditional bijector at ``context`` (``[batch, context_dim]``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give a ``forward``/``inverse`` without a ``context`` parameter one that refuses a context (see the module
        docstring): ``forward(z)`` keeps working, ``forward(z, context=c)`` is a ``ContextError``, not a
        ``TypeError`` about an unexpected keyword."""
        super().__init_subclass__(**kwargs)
        for name in ("forward", "inverse"):
            method = cls.__dict__.get(name)
            if inspect.isfunction(method) and not _takes_context(method):
                setattr(cls, name, _refusing_context(method))

    def unwrapped(self) -> Bijector:
        """The bijector whose dynamics this one runs: itself, unless it wraps a learned bijector in fixed maps
        (``flowlab.preprocess.Preprocessed``: the learned one). What is read of a flow's vector field, solver, NFE
        and regulariser is read of this (:func:`flowlab.ode.continuous_flow`)."""
        return self

    def conditioner_input(self, h: Tensor, context: Tensor | None) -> Tensor:
        """What a conditional layer's network reads: ``h`` itself when unconditional, else ``[h, context]``
        concatenated along the features. Checks the context's presence and shape (``[batch, context_dim]``,
        :func:`~flowlab.validation.require_context`); its values are checked once, by ``Flow``."""
        if context is None and not self.context_dim:
            return h
        checked = require_context(context, self.context_dim, h.shape[0], owner=type(self).__name__)
        return h if checked is None else torch.cat([h, checked], dim=-1)


def _takes_context(method: Callable[..., Any]) -> bool:
    parameters = inspect.signature(method).parameters.values()
    return any(p.name == "context" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _refusing_context(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def unconditional(self: Bijector, *args: Any, context: Tensor | None = None, **kwargs: Any) -> Any:
        if context is not None:
            require_context(context, 0, 0, owner=f"{type(self).__name__}.{method.__name__}")
        return method(self, *args, **kwargs)

    return unconditional


def context_dim_of(module: nn.Module) -> int:
    """``module.context_dim`` (0 for a module that has none: any bijector written without conditioning)."""
    return int(getattr(module, "context_dim", 0))


class Compose(Bijector):
    """``x = f_K(... f_2(f_1(z)))``: bijectors applied in order; the log-determinants add.

    ``log|det ∂x/∂z| = Σ_k log|det ∂f_k/∂(input of f_k)|`` (chain rule; determinants multiply).
    """

    def __init__(self, bijectors: Iterable[nn.Module]) -> None:
        super().__init__()
        self.bijectors = nn.ModuleList(bijectors)
        if len(self.bijectors) == 0:
            raise ShapeError("Compose: expected at least one bijector, got none")
        dims = {int(b.dim) for b in self.layers}
        if len(dims) != 1:
            raise ShapeError(f"Compose: expected bijectors of one dimension, got dims {sorted(dims)}")
        self.dim = dims.pop()
        contexts = {context_dim_of(b) for b in self.layers} - {0}
        if len(contexts) > 1:
            raise ContextError(
                f"Compose: expected conditional bijectors of one context_dim, got context_dims {sorted(contexts)}"
            )
        self.context_dim = contexts.pop() if contexts else 0

    @property
    def layers(self) -> list[Bijector]:
        """The bijectors, in the order ``forward`` applies them."""
        return cast("list[Bijector]", list(self.bijectors))

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The layers in order; ``context`` (``[batch, context_dim]``) goes to the conditional ones only."""
        return self._chain([(b, b) for b in self.layers], "forward", z, context)

    def inverse(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The layers' inverses in reverse order; ``context`` goes to the conditional ones only."""
        return self._chain([(b, b.inverse) for b in reversed(self.layers)], "inverse", x, context)

    def _chain(
        self,
        steps: list[tuple[Bijector, Callable[..., tuple[Tensor, Tensor]]]],
        direction: str,
        points: Tensor,
        context: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Apply ``(layer, method)`` in order, summing the log-dets (forward calls the module, so hooks run). A
        :class:`Permutation`'s log-det is 0 by construction: it is not added (one addition, and its backward, fewer
        per permutation; the sum starts from the first log-det, not from zeros)."""
        if context is not None or self.context_dim:
            context = require_context(context, self.context_dim, points.shape[0], owner=f"Compose.{direction}")
        total: Tensor | None = None
        for bijector, method in steps:
            points, ladj = (
                method(points, context=context) if context is not None and context_dim_of(bijector) else method(points)
            )
            if type(bijector) is not Permutation:  # a subclass may be another map
                total = ladj if total is None else total + ladj
        if total is None or total.shape != points.shape[:1]:  # only permutations, or log-dets that broadcast
            total = points.new_zeros(points.shape[0]) + (0 if total is None else total)
        return points, total


class Permutation(Bijector):
    """``x = z[:, perm]``: a fixed reordering of the coordinates. ``|det| = 1``, so both log-dets are 0."""

    perm: Tensor
    inverse_perm: Tensor

    def __init__(self, perm: Sequence[int] | Tensor) -> None:
        super().__init__()
        perm = torch.as_tensor(perm, dtype=torch.long)
        dim = perm.numel()
        if perm.dim() != 1 or not torch.equal(perm.sort().values, torch.arange(dim)):
            raise ShapeError(f"Permutation: expected a permutation of 0..{dim - 1}, got {perm.tolist()}")
        self.dim = dim
        self.register_buffer("perm", perm)
        self.register_buffer("inverse_perm", torch.argsort(perm))

    @classmethod
    def reverse(cls, dim: int) -> Permutation:
        """The permutation ``(dim-1, ..., 1, 0)``."""
        return cls(torch.arange(dim - 1, -1, -1))

    @classmethod
    def random(cls, dim: int, generator: torch.Generator) -> Permutation:
        """A fixed random permutation drawn from ``generator`` (stored as a buffer, so it is saved)."""
        return cls(torch.randperm(dim, generator=generator))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z.index_select(1, self.perm), z.new_zeros(z.shape[0])  # index_select: ~4x faster than z[:, perm]

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.index_select(1, self.inverse_perm), x.new_zeros(x.shape[0])
