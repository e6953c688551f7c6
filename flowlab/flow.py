"""``Flow``: a base distribution pushed through a bijector."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, distributions, nn

from flowlab.bijector import Bijector, context_dim_of
from flowlab.errors import DomainError, NonFiniteError, NotABijectorError, OptionError, ShapeError
from flowlab.support import REAL, Support
from flowlab.validation import check_context, check_points, module_dtype_device, require_context

if TYPE_CHECKING:
    from flowlab.distribution import FlowDistribution

#: ``log 2π``, for the standard normal base's log-density
LOG_2PI = math.log(2 * math.pi)


class Flow(nn.Module):
    """The density of ``x = bijector.forward(z)`` with ``z ~ base``.

    ``log p(x) = base.log_prob(z) + log|det ∂z/∂x|`` where ``(z, log|det ∂z/∂x|) = bijector.inverse(x)``.

    ``base`` defaults to the standard normal ``N(0, I_dim)``, held as buffers so it follows ``.to(device, dtype)``.
    Any ``torch.distributions.Distribution`` with ``event_shape == (dim,)`` may be given instead; it is then the
    caller's job to build it on the right device and dtype.

    ``validate=True`` checks every input (shape, dtype, device, finite values) and raises a
    :class:`~flowlab.errors.FlowlabError` that says what was expected.

    ``support`` (a :class:`~flowlab.support.Support`, default all of R^d): the set the density lives on, e.g.
    ``Support(0.0, 1.0)`` for a flow onto the unit cube (``FlowSpec.support`` says it for a registered flow). With
    ``validate``, ``log_prob`` refuses points outside it with a :class:`~flowlab.errors.DomainError` naming the
    rows, instead of handing them to an inverse that is not defined there.

    **Conditioning** (``docs/conditioning.md``). With a conditional bijector (``bijector.context_dim = k > 0``) the
    flow is the conditional density ``p(x | c)``: every method takes ``context``, of shape ``[rows, k]`` (one context
    per row: per point of ``x``, per sample) or ``[k]`` (one context for every row). The base distribution does not
    depend on ``c``. An unconditional flow (``context_dim = 0``) refuses a context, a conditional one requires it
    (:class:`~flowlab.errors.ContextError`), with or without ``validate``; ``validate`` also checks the context's
    dtype, device and values as it checks ``x``.
    """

    _loc: Tensor

    def __init__(
        self,
        bijector: Bijector,
        base: distributions.Distribution | None = None,
        *,
        validate: bool = True,
        support: Support = REAL,
    ) -> None:
        super().__init__()
        if not (
            isinstance(bijector, nn.Module)
            and hasattr(bijector, "dim")
            and callable(getattr(bijector, "inverse", None))
        ):
            raise NotABijectorError(
                "Flow: expected a flowlab Bijector (an nn.Module with .dim, forward(z) -> (x, log|det ∂x/∂z|) "
                f"and inverse(x) -> (z, log|det ∂z/∂x|)), e.g. flowlab.build('stacked', 2), got "
                f"{type(bijector).__module__}.{type(bijector).__qualname__}; another library's flow: flowlab.adapters"
            )
        self.bijector = bijector
        self.support = support
        self.dim = int(bijector.dim)
        self.context_dim = context_dim_of(bijector)
        self.validate = validate
        if base is not None:
            if tuple(base.event_shape) != (self.dim,) or tuple(base.batch_shape) != ():
                raise ShapeError(
                    f"Flow: expected a base distribution with event_shape ({self.dim},) and batch_shape (), got "
                    f"event_shape {tuple(base.event_shape)} and batch_shape {tuple(base.batch_shape)}"
                )
        self._base = base
        dtype, _ = module_dtype_device(bijector)
        self.register_buffer("_loc", torch.zeros(self.dim, dtype=dtype or torch.get_default_dtype()))

    @property
    def base(self) -> distributions.Distribution:
        """The base distribution ``p_z``."""
        if self._base is not None:
            return self._base
        return distributions.Independent(distributions.Normal(self._loc, torch.ones_like(self._loc)), 1)

    def base_log_prob(self, z: Tensor) -> Tensor:
        """``log p_z(z)``, ``[batch]``. The default standard normal is computed in closed form,
        ``−(|z|² + d·log 2π) / 2`` (one pass over ``z``, ~20× faster than ``torch.distributions.Normal``'s
        elementwise ``log_prob`` at d = 64: a profiled hot spot of every ``log_prob``); a given base is asked."""
        if self._base is not None:
            return self._base.log_prob(z)
        return -0.5 * (z.square().sum(dim=-1) + self.dim * LOG_2PI)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``log p(x)`` (``log p(x | context)``) for ``x`` of shape ``[batch, dim]``; returns ``[batch]`` (``[0]``
        for an empty batch). ``context``: ``[batch, context_dim]`` or ``[context_dim]`` (see the class docstring).

        With ``validate``, a non-finite ``z`` or log-det from ``bijector.inverse`` raises
        :class:`~flowlab.errors.NonFiniteError` naming the rows and the magnitudes reached.
        """
        if self.validate:
            check_points(x, self.dim, name="x", module=self)
            if not self.support.is_real:
                check_support(x, self.support)
        context = self.context_for(context, x.shape[0], "Flow.log_prob")
        if x.shape[0] == 0:
            return x.new_zeros(0)
        z, ladj = self.bijector.inverse(x) if context is None else self.bijector.inverse(x, context=context)
        if self.validate and self._base is not None:
            check_inverse(z, ladj, x, self)  # before a given base sees z: its support error would say less
        log_prob = self.base_log_prob(z) + ladj
        # NaN or inf in z or the log-det makes the closed-form log-density, hence its sum, non-finite: one reduction
        # over [batch] clears the common case; only a non-finite sum (or an overflow) looks closer
        if self.validate and self._base is None and not bool(torch.isfinite(log_prob.sum())):
            check_inverse(z, ladj, x, self)
        return log_prob

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        """``n`` samples, shape ``[n, dim]``; ``context``: ``[n, context_dim]`` (sample ``i`` at ``context[i]``) or
        ``[context_dim]`` (all ``n`` at the one context)."""
        z = self._draw(n)
        context = self.context_for(context, n, "Flow.sample")
        return (self.bijector(z) if context is None else self.bijector(z, context=context))[0]

    def sample_and_log_prob(self, n: int, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``n`` samples and their log-densities in one pass: ``log p(x) = log p_z(z) - log|det ∂x/∂z|``;
        ``context`` as in :meth:`sample`."""
        z = self._draw(n)
        context = self.context_for(context, n, "Flow.sample_and_log_prob")
        x, ladj = self.bijector(z) if context is None else self.bijector(z, context=context)
        return x, self.base_log_prob(z) - ladj

    def as_distribution(self, validate_args: bool | None = None, *, context: Tensor | None = None) -> FlowDistribution:
        """This flow as a ``torch.distributions.Distribution`` (``event_shape (dim,)``, ``rsample``, ...); a
        conditional flow at one ``context`` of shape ``[context_dim]``."""
        from flowlab.distribution import FlowDistribution

        return FlowDistribution(self, validate_args=validate_args, context=context)

    def context_for(self, context: Tensor | None, rows: int, owner: str) -> Tensor | None:
        """The context of ``rows`` rows as the bijector takes it: ``None``, or ``[rows, context_dim]`` (a
        ``[context_dim]`` context expanded, a view). Presence and shape are checked always, dtype, device and
        values with ``validate``; ``owner`` names the caller in the error."""
        if context is None and not self.context_dim:
            return None
        if self.validate:
            return check_context(context, self.context_dim, rows, owner=owner, module=self, shared=True)
        return require_context(context, self.context_dim, rows, owner=owner, shared=True)

    def _draw(self, n: int) -> Tensor:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise OptionError(f"sample: expected a positive integer number of samples, got {n!r}")
        return self.base.sample((n,))


def check_inverse(z: Tensor, ladj: Tensor, x: Tensor, module: nn.Module) -> None:
    """Raise :class:`NonFiniteError` if ``bijector.inverse`` returned NaN/inf in ``z`` or the log-det (of the
    inputs ``x``), naming the rows and the largest finite magnitude reached, instead of the base distribution's
    "within the support" error; and the likely cause: non-finite parameters of ``module`` (a diverged training run),
    or, where they are all finite, the range of the inputs (too large for the map, or outside a preprocessing's
    domain)."""
    z_bad = ~torch.isfinite(z).all(dim=-1)
    ladj_bad = ~torch.isfinite(ladj)
    if not bool(z_bad.any()) and not bool(ladj_bad.any()):
        return
    parts = []
    for name, values, bad in (("z", z, z_bad), ("log|det ∂z/∂x|", ladj, ladj_bad)):
        rows = bad.nonzero().flatten().tolist()
        if not rows:
            continue
        finite = values.detach()[torch.isfinite(values.detach())].abs()
        largest = f"{float(finite.max()):.3g}" if finite.numel() else "none"
        shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
        parts.append(
            f"NaN or inf in {name} in {len(rows)} of {len(bad)} row(s) ({shown}; largest finite |{name}|: {largest})"
        )
    reached = float(x.detach()[z_bad | ladj_bad].abs().max())
    if all(bool(torch.isfinite(p).all()) for p in module.parameters()):
        cause = (
            f"the flow's parameters are all finite, so the inputs are the cause: those rows reach |x| = {reached:.3g}, "
            "beyond what this flow maps to finite values (for a trained flow: far outside its training data, or "
            "outside the domain of its dataset's preprocessing, e.g. digits' pixel range [0, 17))"
        )
    else:
        cause = "the flow's parameters are not all finite (a diverged training run? try a smaller learning rate)"
    raise NonFiniteError("Flow.log_prob: the bijector's inverse returned " + " and ".join(parts) + "; " + cause)


def check_support(x: Tensor, support: Support) -> None:
    """:class:`~flowlab.errors.DomainError` naming the rows of ``x`` outside ``support``."""
    outside = (~support.contains(x)).nonzero().flatten().tolist()
    if outside:
        rows = ", ".join(map(str, outside[:8])) + (", ..." if len(outside) > 8 else "")
        raise DomainError(
            f"log_prob: {len(outside)} of {x.shape[0]} row(s) ({rows}) lie outside the flow's support "
            f"{support.describe()} (bounds excluded); the density is 0 there"
        )
