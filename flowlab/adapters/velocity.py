"""``from_velocity_field``: a velocity field trained elsewhere (torchcfm, Meta's ``flow_matching``, any ``f(t, x)``)
as a flowlab continuous normalizing flow, with an exact (or Hutchinson) likelihood.

Flow matching trains a field ``v(t, x)`` whose ODE ``dx/dt = v(t, x)`` carries the source (noise, t = 0) to the data
(t = 1): torchcfm's ``ConditionalFlowMatcher`` family and Meta's ``flow_matching`` both use this time direction,
which is flowlab's (``forward`` integrates base -> data from t = 0 to 1). So the field is used as it is: wrapped by
:class:`VelocityField` into flowlab's ``VectorField`` call ``f(t, z)`` and given to
:class:`~flowlab.ode.ODEBijector`, the machinery of every flowlab CNF (``AugmentedDynamics``, the trace estimators,
``flowlab.ode.solve``)::

    forward(z) = (x(1), ∫₀¹ tr ∂v/∂x dt)    # log|det ∂x/∂z|
    inverse(x) = (z(0), −∫₀¹ tr ∂v/∂x dt)   # log|det ∂z/∂x|,  log p(x) = log N(z) + that

Libraries call their fields differently; ``time`` says how:

- ``"t_first"``: ``model(t, x)`` (torchdiffeq's order, flowlab's own fields, torchdyn-style wrappers);
- ``"t_last"``: ``model(x, t)`` (Meta's ``flow_matching`` ``ModelWrapper.forward(x, t, **extras)``);
- ``"concat"``: ``model(torch.cat([x, t], dim=-1))`` (torchcfm's ``MLP(dim, time_varying=True)``, which reads
  ``[x, t]`` as one input);

and ``time_shape`` the shape of ``t`` the model expects: ``"scalar"`` (0-d, the default for ``t_first``),
``"rows"`` (``[batch]``, the default for ``t_last``: ``flow_matching`` trains with one time per row) or
``"column"`` (``[batch, 1]``; always for ``concat``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowlab.errors import OptionError, ShapeError
from flowlab.ode import ExactTrace, Hutchinson, ODEBijector, SolverConfig, TraceEstimator

TIME_FORMS = ("t_first", "t_last", "concat")
TIME_SHAPES = ("scalar", "rows", "column")
DEFAULT_TIME_SHAPE = {"t_first": "scalar", "t_last": "rows", "concat": "column"}
TRACES = ("exact", "hutchinson")

MAPPING = (
    "a velocity field v(t, x) (flow matching: t = 0 noise, t = 1 data, as flowlab's forward) integrated by flowlab's "
    "ODEBijector: forward(z) = (x(1), ∫₀¹ tr ∂v/∂x dt), inverse(x) = (z(0), −∫₀¹ tr ∂v/∂x dt); the field is called "
    "in its library's convention (t first, t last, or [x, t] concatenated)."
)


class VelocityField(nn.Module):
    """``model`` called as flowlab's ``VectorField``: ``field(t, z)`` with ``t`` 0-d (or one per row), ``z``
    ``[batch, dim]`` (see the module docstring for ``time`` and ``time_shape``)."""

    def __init__(self, model: nn.Module, dim: int, *, time: str = "t_first", time_shape: str | None = None) -> None:
        super().__init__()
        if time not in TIME_FORMS:
            raise OptionError(f"from_velocity_field: expected time in {TIME_FORMS}, got {time!r}")
        shape = time_shape if time_shape is not None else DEFAULT_TIME_SHAPE[time]
        if shape not in TIME_SHAPES or (time == "concat" and shape != "column"):
            allowed = ("column",) if time == "concat" else TIME_SHAPES
            raise OptionError(f"from_velocity_field: expected time_shape in {allowed} for time={time!r}, got {shape!r}")
        self.model = model
        self.dim = dim
        self.time = time
        self.time_shape = shape

    def _shaped(self, t: Tensor, z: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=z.dtype, device=z.device)
        batch = z.shape[0]
        if t.numel() == 1:
            t = t.reshape(1).expand(batch)
        elif t.numel() == batch:
            t = t.reshape(batch)
        else:
            raise ShapeError(f"VelocityField: expected t with 1 element or one per row ({batch}), got {list(t.shape)}")
        if self.time_shape == "scalar":
            if bool((t != t[0]).any()):
                raise ShapeError(
                    "VelocityField: the model takes one time for the batch (time_shape='scalar'), got several"
                )
            return t[0]
        return t if self.time_shape == "rows" else t.unsqueeze(-1)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        time = self._shaped(t, z)
        if self.time == "t_first":
            out = self.model(time, z)
        elif self.time == "t_last":
            out = self.model(z, time)
        else:
            out = self.model(torch.cat([z, time], dim=-1))
        if not isinstance(out, Tensor) or tuple(out.shape) != tuple(z.shape):
            got = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ShapeError(
                f"VelocityField: expected the model to return a velocity of shape {list(z.shape)}, got {got}"
            )
        return out

    def extra_repr(self) -> str:
        return f"dim={self.dim}, time={self.time!r}, time_shape={self.time_shape!r}"


def trace_estimator(name: str) -> TraceEstimator:
    """``"exact"``: :class:`~flowlab.ode.ExactTrace`; ``"hutchinson"``: Rademacher :class:`~flowlab.ode.Hutchinson`."""
    if name not in TRACES:
        raise OptionError(f"from_velocity_field: expected a trace in {TRACES}, got {name!r}")
    return ExactTrace() if name == "exact" else Hutchinson("rademacher")


def from_velocity_field(
    model: nn.Module,
    dim: int,
    *,
    time: str = "t_first",
    time_shape: str | None = None,
    trace: str = "exact",
    eval_trace: str = "exact",
    solver: SolverConfig | None = None,
    seed: int = 0,
    **extra: Any,
) -> ODEBijector:
    """A flowlab CNF on ``R^dim`` from a velocity field (see the module docstring).

    ``trace`` is the log-det estimator in training mode and ``eval_trace`` in eval mode (``"exact"`` or
    ``"hutchinson"``; the exact trace costs ``dim`` backward passes per evaluation); ``solver`` the
    :class:`~flowlab.ode.SolverConfig` (default dopri5, rtol = atol = 1e-5); ``seed`` seeds the Hutchinson probes;
    ``extra`` goes to :class:`~flowlab.ode.ODEBijector` (``kinetic``, ``jacobian``, ``compile``).
    """
    if not isinstance(model, nn.Module):
        raise OptionError(f"from_velocity_field: expected the field as an nn.Module, got {type(model).__name__}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ShapeError(f"from_velocity_field: expected a positive integer dim, got {dim!r}")
    field = VelocityField(model, dim, time=time, time_shape=time_shape)
    return ODEBijector(
        field, trace=trace_estimator(trace), eval_trace=trace_estimator(eval_trace), solver=solver, seed=seed, **extra
    )
