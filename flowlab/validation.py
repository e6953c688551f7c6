"""Input checks shared by the core and by plugins: clear errors instead of deep torch tracebacks."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from flowlab.errors import ContextError, DeviceError, DtypeError, NonFiniteError, ShapeError


def module_dtype_device(module: nn.Module) -> tuple[torch.dtype | None, torch.device | None]:
    """The dtype and device of a module's first floating parameter or buffer (None, None if it has none).

    Lazy: it stops at the first floating tensor (``log_prob`` asks on every call; collecting every parameter and
    buffer first walked the whole module tree, ~5 % of a small flow's training step)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return None, None


def check_points(
    x: object,
    dim: int,
    *,
    name: str = "x",
    module: nn.Module | None = None,
    finite: bool = True,
) -> torch.Tensor:
    """Check that ``x`` is a floating ``[batch, dim]`` tensor matching ``module``'s dtype and device.

    Raises a :class:`~flowlab.errors.FlowlabError` subclass that names what was expected and what was given.
    ``finite=True`` also rejects NaN and ±inf (this costs one sum over ``x``).
    """
    if not isinstance(x, torch.Tensor):
        raise DtypeError(f"{name}: expected a torch.Tensor of shape [batch, {dim}], got {type(x).__name__}")
    if x.dim() != 2:
        raise ShapeError(
            f"{name}: expected a 2-d tensor of shape [batch, {dim}], got {x.dim()}-d shape {list(x.shape)}"
        )
    if x.shape[-1] != dim:
        raise ShapeError(f"{name}: expected last dimension {dim} (shape [batch, {dim}]), got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise DtypeError(
            f"{name}: expected a floating dtype (float32 or float64), got {x.dtype}; convert with x.float()"
        )
    if module is not None:
        dtype, device = module_dtype_device(module)
        if dtype is not None and x.dtype != dtype:
            raise DtypeError(
                f"{name}: the flow's parameters are {dtype} but {name} is {x.dtype}; "
                f"convert one of them, e.g. flow.to({x.dtype}) or {name}.to({dtype})"
            )
        if device is not None and x.device != device:
            raise DeviceError(
                f"{name}: the flow's parameters are on {device} but {name} is on {x.device}; "
                f"move one of them, e.g. flow.to('{x.device}')"
            )
    # NaN and ±inf propagate through a sum, so a finite sum proves every value finite at the cost of one reduction
    # (~10x cheaper than isfinite(x).all()); only a non-finite sum (or an overflow of huge values) looks closer.
    if finite and not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).any(dim=-1).nonzero().flatten().tolist()
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise NonFiniteError(f"{name}: expected finite values, got NaN or inf in {len(bad)} row(s): {shown}")
    return x


def require_context(
    context: object, context_dim: int, rows: int, *, owner: str, shared: bool = False
) -> torch.Tensor | None:
    """The presence and shape of a conditioning context (no pass over its values: cheap enough for every layer).

    The convention (``docs/conditioning.md``): a flow built with ``context_dim = k > 0`` needs a context of shape
    ``[rows, k]``, one per row of its input; with ``shared=True`` (``Flow``'s methods) a context of shape ``[k]``
    is also accepted and is the context of every row (returned expanded to ``[rows, k]``, a view). A flow with
    ``context_dim = 0`` takes none. Returns ``None`` for an unconditional flow without a context; raises
    :class:`~flowlab.errors.ContextError` for a context given to an unconditional flow or missing for a
    conditional one, :class:`~flowlab.errors.DtypeError` for a non-tensor, :class:`~flowlab.errors.ShapeError`
    for a wrong shape. ``owner`` names the caller in the message (``"Flow.log_prob"``).
    """
    expected = f"[{rows}, {context_dim}]" + (f" (one per row) or [{context_dim}] (one for every row)" if shared else "")
    if context is None:
        if context_dim == 0:
            return None
        raise ContextError(
            f"{owner}: this flow is conditional (context_dim {context_dim}): expected a context of shape {expected}, "
            "got none; pass context=..."
        )
    given = list(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__
    if context_dim == 0:
        raise ContextError(
            f"{owner}: this flow is unconditional (context_dim 0) and takes no context, got a context {given}; "
            "build a conditional flow to condition on it (a flow with a context_dim option, e.g. "
            "flowlab.build('nsf', 3, context_dim=2))"
        )
    if not isinstance(context, torch.Tensor):
        raise DtypeError(f"{owner}: expected a context tensor of shape {expected}, got {given}")
    if shared and context.dim() == 1 and context.shape[0] == context_dim:
        return context.expand(rows, context_dim)
    if context.dim() != 2 or context.shape[1] != context_dim:
        raise ShapeError(f"{owner}: expected a context of shape {expected} (context_dim {context_dim}), got {given}")
    if context.shape[0] != rows:
        raise ShapeError(
            f"{owner}: expected a context of shape {expected}: one row per point ({rows}), got {context.shape[0]} "
            f"rows (shape {given})"
        )
    return context


def check_context(
    context: object,
    context_dim: int,
    rows: int,
    *,
    owner: str,
    module: nn.Module | None = None,
    shared: bool = False,
    finite: bool = True,
) -> torch.Tensor | None:
    """:func:`require_context`, then the checks of :func:`check_points` on the context's values: a floating dtype
    equal to ``module``'s, its device, finite values (``finite=True``)."""
    checked = require_context(context, context_dim, rows, owner=owner, shared=shared)
    if checked is not None:
        check_points(checked, context_dim, name="context", module=module, finite=finite)
    return checked
