"""Exception classes. Every message says what was expected and what was given."""

from __future__ import annotations


class FlowlabError(Exception):
    """Base class of every error flowlab raises on purpose (the CLI prints these without a traceback)."""


class ShapeError(FlowlabError, ValueError):
    """A tensor has the wrong number of dimensions or the wrong event size."""


class DtypeError(FlowlabError, TypeError):
    """A tensor has an integer/complex dtype, or a dtype other than the flow's parameters."""


class DeviceError(FlowlabError, ValueError):
    """A tensor lives on another device than the flow's parameters."""


class NonFiniteError(FlowlabError, ValueError):
    """A tensor holds NaN or infinite values."""


class DomainError(FlowlabError, ValueError):
    """A point lies outside the support of a density (e.g. ``log_prob`` of a flow on ``(0, 1)^d`` at 1.5)."""


class NotABijectorError(FlowlabError, TypeError):
    """An object given where a bijector is expected (e.g. ``Flow(module)``) is not one: no ``dim``, ``forward`` and
    ``inverse``."""


class UnknownFlowError(FlowlabError, KeyError):
    """No registered flow (or dataset, or check) has the requested name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OptionError(FlowlabError, ValueError):
    """An option is unknown or has a value outside its allowed values."""


class SingularMatrixError(FlowlabError, ValueError):
    """A matrix that must be invertible is (numerically) singular."""


class PluginError(FlowlabError):
    """A plugin failed to import, its hook raised, or it registered something invalid."""


class SkipCase(FlowlabError):
    """Raised while the conformance kit builds a case that this flow cannot be built for (a trained flow in another
    dimension, an architecture its parameters do not fit): the runner lists the case as skipped, with this message
    as the reason, instead of failing it."""


class Uncovered(FlowlabError):
    """Raised by a property that applies to a flow by its kind but cannot run on it, because the flow lacks what the
    property needs (the message says what): the run is *uncovered*, which fails ``flowlab check`` unless the flow
    opts out with a reason (``FlowSpec.opt_out``) or ``--allow-uncovered`` is given."""


class DuplicateNameError(PluginError):
    """Two plugins registered a flow (dataset, check) under the same name."""


class SolverError(FlowlabError, RuntimeError):
    """An ODE solve failed: step size underflow, a non-finite state, or the maximum number of evaluations reached.

    ``solver`` is the method's name, ``time`` the integration time reached, ``hint`` what to try.
    """

    def __init__(self, message: str, *, solver: str = "", time: float | None = None, hint: str = "") -> None:
        super().__init__(message)
        self.solver = solver
        self.time = time
        self.hint = hint


class ConvergenceError(FlowlabError, ArithmeticError):
    """An iterative solve (e.g. a numerically computed inverse) did not reach its tolerance.

    ``rows`` are the batch rows that did not converge, ``residuals`` their final residuals.
    """

    def __init__(self, message: str, *, rows: list[int] | None = None, residuals: list[float] | None = None) -> None:
        super().__init__(message)
        self.rows = rows or []
        self.residuals = residuals or []


class AdapterError(FlowlabError, TypeError):
    """An object given to an adapter (``flowlab.adapters``) is not what it adapts, or cannot be adapted faithfully."""


class CheckpointError(FlowlabError):
    """A checkpoint file is missing, truncated, corrupted, not a flowlab checkpoint, or of an incompatible format."""


class MissingDependencyError(FlowlabError, ImportError):
    """An optional dependency (e.g. matplotlib for plots) is not installed; :func:`install_hint` says how to get it."""


def install_hint(extra: str) -> str:
    """How to install flowlab with the optional dependencies of ``extra`` (``"plot"``, ``"data"``, ...): from a
    checkout, since the distribution ``flowlab-nf`` is not on PyPI."""
    return f"pip install -e '.[{extra}]' from the root of a flowlab checkout (flowlab-nf is not on PyPI)"


class DivergenceError(FlowlabError, ArithmeticError):
    """Training diverged: the loss or the held-out NLL became non-finite or exploded.

    ``step`` is the step at which it was detected, ``saved_step`` the step of the last checkpoint written before
    (``None`` if none was), ``value`` the offending loss or NLL.
    """

    def __init__(self, message: str, *, step: int, saved_step: int | None, value: float) -> None:
        super().__init__(message)
        self.step = step
        self.saved_step = saved_step
        self.value = value


class ContextError(FlowlabError, ValueError):
    """A conditioning context was given to an unconditional flow (``context_dim == 0``), or none was given to a
    conditional one (``context_dim > 0``); a context of the wrong shape, dtype or device is a ``ShapeError``,
    ``DtypeError`` or ``DeviceError`` like any input (``docs/conditioning.md``)."""
