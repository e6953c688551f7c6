"""The augmented dynamics of a CNF: the state, its log-determinant and the RNODE accumulators in one ODE.

For ``dz/dt = f(t, z)`` the instantaneous change of variables (Chen et al. 2018) gives
``d/dt log|det ∂z(t)/∂z(s)| = tr(∂f/∂z (t, z(t)))``. The state integrated together is::

    d/dt [z, a, k, j] = [f(t, z), tr ∂f/∂z, ‖f‖², ‖∂f/∂z‖²_F]

with ``a = k = j = 0`` at the starting time. Integrated from ``s`` to ``e`` (either order), ``a(e)`` is
``log|det ∂z(e)/∂z(s)|`` of the solution map from ``s`` to ``e``: integrating backwards flips the sign of the
integral, which is exactly the log-det of the inverse map. ``k`` and ``j`` (RNODE's kinetic energy and Jacobian
Frobenius norm, Finlay et al. 2020) are carried only when asked for.

The exact trace: a field that computes its own Jacobian (:class:`~flowlab.JacobianField`, e.g.
:class:`~flowlab.ode.TimeMLP`) gives it with its value in one forward pass; any other field gets ``d`` batched
vector-Jacobian products through autograd (:class:`~flowlab.ode.ExactTrace`). Same numbers up to rounding; the
first costs about half at the kit's small batches and 2-6 times less from d = 8 on, training included (its
parameter gradient is a first-order backward instead of a double backward); docs/benchmarks.md.

The Hutchinson trace: a field that computes a Jacobian-vector product with its value (:class:`~flowlab.JVPField`,
e.g. :class:`~flowlab.ode.TimeMLP`) gives ``J v`` in one forward pass and ``vᵀ J v = v · (J v)``; any other field
gets the vector-Jacobian product ``vᵀ J`` through autograd (:class:`~flowlab.ode.Hutchinson`). The trace estimate
is the same number up to rounding; RNODE's Frobenius term is then ``‖J v‖²`` instead of ``‖vᵀ J‖²``, both unbiased
for ``‖J‖²_F`` (``E[v vᵀ] = I``).

``torch.compile``: the exact trace's batched vector-Jacobian products (``autograd.grad(..., is_grads_batched=True)``,
a vmap over the backward pass) fail on a compiled field (vmap meets the compiled backward's in-place copies). With
``compile=True`` the exact trace takes another road: ``J = vmap(jacrev(f))`` with ``torch.func``, the whole
``(t, z) -> (J, f)`` compiled once (:func:`compiled_jacobian`); its backward to the parameters is a first-order
backward of the compiled graph, which torch.compile supports. The Hutchinson estimator and trajectories (no trace)
keep the eager field. A field compiled by hand (``torch.compile(field)``) with the batched exact trace raises an
:class:`~flowlab.errors.OptionError` saying to build with ``compile=True`` instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor, nn

from flowlab.errors import OptionError
from flowlab.ode.solver import CountedDynamics
from flowlab.ode.trace import ExactTrace, Hutchinson, TraceEstimator
from flowlab.vector_field import JacobianField, JVPField


def compiled_jacobian(field: nn.Module) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``torch.compile`` of ``(t, z) -> (∂f/∂z per row [batch, dim, dim], f [batch, dim])`` with ``torch.func``."""

    def single(t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        out = field(t, z.unsqueeze(0)).squeeze(0)
        return out, out

    jacobian = torch.func.vmap(torch.func.jacrev(single, argnums=1, has_aux=True), in_dims=(None, 0))
    return cast(Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], torch.compile(jacobian))


def trace_and_frobenius(jacobian: Tensor) -> tuple[Tensor, Tensor]:
    """``(tr J, ‖J‖²_F)`` per row of a ``[batch, dim, dim]`` Jacobian."""
    return trace_of(jacobian), jacobian.pow(2).sum(dim=(1, 2))


def trace_of(jacobian: Tensor) -> Tensor:
    """``tr J`` per row of a ``[batch, dim, dim]`` Jacobian."""
    return jacobian.diagonal(dim1=1, dim2=2).sum(-1)


def is_compiled(module: object) -> bool:
    """Whether ``module`` is the result of ``torch.compile`` (an ``OptimizedModule`` wrapping ``_orig_mod``)."""
    return hasattr(module, "_orig_mod")


class AugmentedDynamics(CountedDynamics):
    """``(t, [z[, a[, k, j]]]) -> [f[, tr J[, ‖f‖², ‖J‖²_F]]]`` for a vector field ``f`` (see the module docstring),
    the parts as the columns of one ``[batch, dim + carried()]`` tensor.

    Before each solve :meth:`configure` sets the trace estimator and its probe (drawn once for the solve and held
    fixed through it, the adjoint solve included), and whether to carry the log-det and the regularisers.

    Works under ``torch.no_grad()``: autograd is enabled locally to differentiate ``f`` with respect to the state.
    When the caller records gradients and the state is part of its graph, the state is used as it is and the graph
    is kept (``create_graph``); otherwise the state is replaced by a detached leaf that requires grad (never
    ``requires_grad_`` on the solver's own tensor, which fails for non-leaves and for views made under no_grad).
    """

    def __init__(self, field: nn.Module, *, compile: bool = False) -> None:
        super().__init__()
        self.field = field
        #: whether the exact trace takes ``field.jacobian`` (:class:`~flowlab.JacobianField`) over autograd
        self.field_has_jacobian = isinstance(field, JacobianField)
        #: whether the Hutchinson trace takes ``field.jvp`` (:class:`~flowlab.JVPField`) over autograd
        self.field_has_jvp = isinstance(field, JVPField)
        #: whether the exact trace goes through the compiled ``(t, z) -> (J, f)``, built on first use
        self.use_compile = compile
        self._jacobian: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None
        self._compiled_for: set[tuple[object, ...]] = set()  # shapes, dtypes, devices, grad modes compiled for
        self.estimator: TraceEstimator | None = None
        self.probe: Tensor | None = None
        self.regularize = False

    def configure(self, estimator: TraceEstimator | None, probe: Tensor | None, regularize: bool) -> None:
        """``estimator=None`` integrates ``z`` alone (a trajectory); otherwise the log-det too."""
        self.estimator = estimator
        self.probe = probe
        self.regularize = regularize

    def carried(self) -> int:
        """Columns carried after ``z`` in the state: 0 (a trajectory), 1 (the log-det ``a``) or 3 (``a, k, j``)."""
        return 0 if self.estimator is None else 3 if self.regularize else 1

    def forward(self, t: Tensor, state: Tensor) -> Tensor:
        """``d/dt`` of the state ``[batch, dim + carried()]``: the columns ``[z, a[, k, j]]`` as one tensor (one
        tensor, not a tuple: torchdiffeq then neither splits nor concatenates it at every evaluation)."""
        self.tick(t)
        carried = self.carried()
        z = state[:, : state.shape[1] - carried] if carried else state
        if self.estimator is None:
            return self.field(t, z)
        record = torch.is_grad_enabled()
        # exactly ExactTrace: a subclass may compute something else (the kit's mutants do)
        exact = type(self.estimator) is ExactTrace
        frobenius: Tensor | None
        if exact and (self.use_compile or is_compiled(self.field)):
            f, trace, frobenius = self._compiled_exact(t, z)
        elif exact and self.field_has_jacobian:
            # the graph is kept only when recording (the caller's grad mode)
            f, jacobian = cast(JacobianField, self.field).jacobian(t, z)
            # ‖J‖²_F only for the regulariser that asks for it (two tensor operations at every evaluation)
            trace, frobenius = trace_and_frobenius(jacobian) if self.regularize else (trace_of(jacobian), None)
        elif type(self.estimator) is Hutchinson and self.field_has_jvp:  # exactly: as ExactTrace above
            assert self.probe is not None  # drawn by integrate() at the start of the solve
            f, product = cast(JVPField, self.field).jvp(t, z, self.probe)  # J v
            trace = (product * self.probe).sum(-1)  # vᵀ J v
            frobenius = product.pow(2).sum(-1) if self.regularize else None  # ‖J v‖², also unbiased for ‖J‖²_F
        else:
            f, trace, frobenius = self._eager(t, z, record)
        parts = [f, trace[:, None]]
        if self.regularize:
            assert frobenius is not None
            parts += [f.pow(2).sum(-1, keepdim=True), frobenius[:, None]]
        out = torch.cat(parts, dim=1)
        return out if record else out.detach()

    def _compiled_exact(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if not self.use_compile:
            raise OptionError(
                "a torch.compile'd vector field cannot go through the exact trace's batched vector-Jacobian products "
                "(vmap over autograd.grad fails on the compiled backward); pass the plain field and build the flow "
                "with compile=True (e.g. flowlab train -o compile=true), which compiles f and its Jacobian together"
            )
        if self._jacobian is None:
            self._jacobian = compiled_jacobian(self.field)
        key = (tuple(z.shape), z.dtype, z.device, torch.is_grad_enabled())
        fresh = key not in self._compiled_for
        started = time.monotonic()
        jacobian, f = self._jacobian(t, z)
        if fresh and self.started is not None:  # a (re)compilation is not the solve's time (max_seconds)
            self.started += time.monotonic() - started
            self._compiled_for.add(key)
        return f, *trace_and_frobenius(jacobian)

    def _eager(self, t: Tensor, z: Tensor, record: bool) -> tuple[Tensor, Tensor, Tensor]:
        with torch.enable_grad():
            if not (record and z.requires_grad):  # a fresh leaf: also for no-grad views (odeint_adjoint's forward)
                z = z.detach().requires_grad_(True)
            f = self.field(t, z)
            assert self.estimator is not None  # forward() handles the trajectory case
            trace, frobenius = self.estimator(f, z, self.probe, record)
        return f, trace, frobenius
