"""``from_freia``: a FrEIA ``SequenceINN`` or invertible block (``FrEIA.modules.InvertibleModule``) as a flowlab
bijector.

Direction and sign. A FrEIA network maps **data to latent**: ``inn(x)`` returns ``(z, log|det ∂z/∂x|)`` (its
training loss is ``½‖z‖² − log_jac_det``), and ``inn(z, rev=True)`` returns ``(x, log|det ∂x/∂z|)``, the log-det of
the direction computed; log-dets are ``[batch]``. A single block takes and returns a tuple of tensors:
``block((x,), rev=...)`` returns ``((y,), log_jac_det)``. So::

    forward(z) = inn(z, rev=True)   # (x, log|det ∂x/∂z|)
    inverse(x) = inn(x)             # (z, log|det ∂z/∂x|)

A conditional network (blocks appended with ``cond=0, cond_shape=(k,)``, or a block built with
``dims_c=[(k,)]``) is adapted with ``context_dim = k``; the context ``[batch, k]`` is passed as FrEIA's list of
conditions, ``c=[context]``. Only networks on flat vectors (``dims_in == [(dim,)]``) are adapted.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from flowlab.adapters.contents import require_exposed
from flowlab.adapters.core import Adapted
from flowlab.errors import AdapterError, ShapeError

MAPPING = (
    "FrEIA: inn(x) maps data to latent and returns log|det ∂z/∂x|, inn(z, rev=True) returns (x, log|det ∂x/∂z|); "
    "forward(z) = inn(z, rev=True), inverse(x) = inn(x); a conditional network gets c=[context]."
)


class FreiaNetwork(Adapted):
    """A FrEIA ``SequenceINN`` or block on ``R^dim`` (see the module docstring)."""

    def _call(self, points: Tensor, context: Tensor | None, *, rev: bool) -> tuple[Tensor, Any]:
        from FrEIA.framework import SequenceINN

        conditions = None if context is None else [context]
        if isinstance(self.peer, SequenceINN):
            result: tuple[Tensor, Any] = self.peer(points, c=conditions, rev=rev)
            return result
        outputs, ladj = self.peer((points,), c=conditions, rev=rev, jac=True)
        return outputs[0], ladj

    def peer_forward(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        return self._call(z, context, rev=True)

    def peer_inverse(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Any]:
        return self._call(x, context, rev=False)


def from_freia(network: nn.Module, dim: int, *, context_dim: int = 0) -> FreiaNetwork:
    """A flowlab bijector on ``R^dim`` from a FrEIA ``SequenceINN`` or ``InvertibleModule`` (see the module
    docstring); ``context_dim = k`` for a network conditioned on ``R^k``."""
    from FrEIA.modules import InvertibleModule

    if not isinstance(network, InvertibleModule):
        raise AdapterError(
            f"from_freia: expected a FrEIA SequenceINN or FrEIA.modules.InvertibleModule, got {type(network).__name__}"
        )
    dims_in = [tuple(shape) for shape in network.dims_in]
    if dims_in != [(dim,)]:
        raise ShapeError(
            f"from_freia: expected a network on flat vectors of R^{dim} (dims_in [({dim},)]), got {dims_in}"
        )
    bijector = FreiaNetwork(network, dim, context_dim=context_dim)
    require_exposed(bijector, network, source="from_freia")
    return bijector
