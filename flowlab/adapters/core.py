"""What every adapter shares: a peer's log-det brought to flowlab's shape without touching its dtype or device.

flowlab's convention (see :mod:`flowlab.bijector`): ``forward(z) -> (x, log|det ∂x/∂z|)`` maps base to data,
``inverse(x) -> (z, log|det ∂z/∂x|)``, each log-det of shape ``[batch]``. Peer libraries differ in direction
(nflows' and zuko's "forward" maps data to noise) and in the shape of their log-dets (``[]``, ``[batch]``,
``[batch, 1]``, or the integer 0). An adapter maps the direction in its own module; :class:`Adapted` and
:func:`logdet_rows` here fix the shape, and nothing else:

- a tensor log-det keeps its dtype and device, whatever the input's: if a peer returns a float32 log-det for a
  float64 input, the adapter returns that float32 tensor, so the conformance kit's ``dtype_device`` check sees the
  peer's behaviour instead of a cast that hides it;
- a Python number (e.g. ``0`` for a volume-preserving layer) has no dtype of its own: it becomes a ``[batch]`` tensor
  in the input's dtype and device.
"""

from __future__ import annotations

import abc
import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flowlab.adapters.contents import derived_tensors
from flowlab.bijector import Bijector
from flowlab.errors import ShapeError
from flowlab.validation import require_context


def logdet_rows(ladj: Any, x: Tensor, *, source: str) -> Tensor:
    """``ladj`` as a ``[batch]`` tensor for the batch ``x`` (``[batch, dim]``); its dtype and device are kept.

    Accepted: a Python number (expanded in ``x``'s dtype and device), a tensor of shape ``[]`` (expanded),
    ``[batch]`` (as is) or ``[batch, 1]`` (flattened). ``source`` names the peer call in the error otherwise.
    """
    batch = x.shape[0]
    if isinstance(ladj, (int, float)) and not isinstance(ladj, bool):
        return torch.full((batch,), float(ladj), dtype=x.dtype, device=x.device)
    if not isinstance(ladj, Tensor):
        raise ShapeError(f"{source}: expected a log-det tensor or number, got {type(ladj).__name__}")
    if ladj.dim() == 0:
        return ladj.expand(batch)
    if tuple(ladj.shape) == (batch,):
        return ladj
    if tuple(ladj.shape) == (batch, 1):
        return ladj.reshape(batch)
    raise ShapeError(
        f"{source}: expected a log-det of shape [], [{batch}] or [{batch}, 1] for a batch of {batch}, "
        f"got {list(ladj.shape)}"
    )


def sum_logdets(terms: Sequence[Tensor], x: Tensor) -> Tensor:
    """``Σ_k terms[k]`` (each ``[batch]``, chain rule) without hiding a term's dtype.

    Torch promotes ``float32 + float64`` to float64, so a plain sum would turn one layer's wrong float32 log-det
    into a correct-looking float64 total. The sum is therefore returned in the dtype of the first term whose dtype
    differs from the input's (``x``'s), if any: one faulty layer stays visible in the total. Devices are not
    touched (terms on different devices make torch raise, which the kit reports).
    """
    if not terms:
        raise ShapeError("sum_logdets: expected at least one log-det term, got none")
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    odd = next((term.dtype for term in terms if term.dtype != x.dtype), None)
    return total if odd is None else total.to(odd)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` per row, ``−(‖z‖² + d·log 2π) / 2``, in ``z``'s dtype."""
    return -0.5 * (z.square().sum(dim=-1) + z.shape[-1] * math.log(2 * math.pi))


def density_logdet(log_prob: Tensor, z: Tensor) -> Tensor:
    """``log|det ∂z/∂x|`` read off a peer model's own density: ``log p(x) − log N(z; 0, I)``, where ``z`` is the
    standard-normal point the model maps ``x`` to. A model-level adapter returns it from ``inverse``, so that
    flowlab's ``Flow.log_prob(x) = log N(z) + log|det ∂z/∂x|`` *is* the model's ``log_prob(x)`` and the kit checks
    the method users call; a ``log_prob`` in another dtype than ``z`` keeps it (:func:`sum_logdets`)."""
    return sum_logdets([log_prob, -standard_normal_log_prob(z)], z)


class Adapted(Bijector, abc.ABC):
    """A flowlab :class:`~flowlab.bijector.Bijector` around a peer library's object.

    Subclasses implement :meth:`peer_forward` (base -> data) and :meth:`peer_inverse` (data -> base), each returning
    the peer's ``(points, log-det of that direction)``, direction already mapped; this class normalises the
    log-det's shape with :func:`logdet_rows` and checks the points' shape. A conditional peer is adapted with
    ``context_dim = k > 0``: the context (``[batch, k]``, checked by :func:`~flowlab.validation.require_context`)
    is passed to ``peer_forward``/``peer_inverse``; with ``context_dim = 0`` they get ``None`` and a context given
    to the adapter is a :class:`~flowlab.errors.ContextError`. ``self.peer`` holds the peer module, so
    its parameters and buffers follow ``.to(device, dtype)``, ``.train()`` and ``.eval()``.

    ``copy.deepcopy`` works even where the peer holds tensors computed in an earlier call (torch's and Pyro's
    transform caches, ``_cached_x_y``, ``_cached_logDetJ``), which torch refuses to deep-copy ("only graph leaves
    support the deepcopy protocol"): the copy gets them detached (:meth:`__deepcopy__`).
    """

    peer: Any  # the peer's module: its methods are the peer library's, untyped here

    def __init__(self, peer: nn.Module, dim: int, *, context_dim: int = 0) -> None:
        super().__init__()
        for name, value, least in (("dim", dim, 1), ("context_dim", context_dim, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ShapeError(f"{type(self).__name__}: expected an integer {name} >= {least}, got {value!r}")
        self.peer = peer
        self.dim = dim
        self.context_dim = context_dim

    def __deepcopy__(self, memo: dict[int, Any]) -> Adapted:
        """A deep copy in which every non-leaf tensor the peer holds is copied detached (its graph, which points at
        the original's parameters, is not copied); everything else as ``copy.deepcopy`` of an ``nn.Module``."""
        keep = memo.setdefault(id(memo), [])  # copy's keep-alive list: the ids below must stay valid
        for _, tensor in derived_tensors(self):
            memo[id(tensor)] = tensor.detach().clone()
            keep.append(tensor)
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        copied.__setstate__(copy.deepcopy(self.__dict__, memo))
        return copied

    @abc.abstractmethod
    def peer_forward(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        """The peer's map base -> data: ``(x, log|det ∂x/∂z|)`` in whatever shape the peer returns it."""

    @abc.abstractmethod
    def peer_inverse(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        """The peer's map data -> base: ``(z, log|det ∂z/∂x|)`` in whatever shape the peer returns it."""

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        source = f"{type(self).__name__}.forward"
        x, ladj = self.peer_forward(z, require_context(context, self.context_dim, z.shape[0], owner=source))
        return self._checked(x, z, "forward"), logdet_rows(ladj, z, source=source)

    def inverse(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        source = f"{type(self).__name__}.inverse"
        z, ladj = self.peer_inverse(x, require_context(context, self.context_dim, x.shape[0], owner=source))
        return self._checked(z, x, "inverse"), logdet_rows(ladj, x, source=source)

    def _checked(self, out: Tensor, given: Tensor, direction: str) -> Tensor:
        if tuple(out.shape) != tuple(given.shape):
            raise ShapeError(
                f"{type(self).__name__}.{direction}: expected the peer to return points of shape "
                f"{list(given.shape)}, got {list(out.shape)}"
            )
        return out
