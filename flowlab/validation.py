"""Input checks shared by the core and by plugins: clear errors instead of deep torch tracebacks."""

from __future__ import annotations

import torch
from torch import nn

from flowlab.errors import DeviceError, DtypeError, NonFiniteError, ShapeError


def module_dtype_device(module: nn.Module) -> tuple[torch.dtype | None, torch.device | None]:
    """The dtype and device of a module's first floating parameter or buffer (None, None if it has none)."""
    for tensor in (*module.parameters(), *module.buffers()):
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
