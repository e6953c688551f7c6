"""Records that plugins register: ``FlowSpec`` (a flow) and ``CheckSpec`` (a property of the conformance kit), with
the kit's ``Case`` (one drawn example) and ``CheckResult``; ``Option``, ``Tolerance`` and ``CONTEXT_OPTION`` come
from :mod:`flowlab.options`.

Import-light: no torch (the pytest plugin and the Hypothesis strategies read these records at start-up).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from flowlab.errors import OptionError
from flowlab.options import CONTEXT_OPTION, Option, Tolerance
from flowlab.support import REAL, Support

if TYPE_CHECKING:
    from flowlab.bijector import Bijector

__all__ = [
    "CONTEXT_OPTION",
    "LIVES",
    "Case",
    "CheckResult",
    "CheckSpec",
    "FlowSpec",
    "Kind",
    "Life",
    "LogdetKind",
    "Option",
    "Status",
    "Tolerance",
]

Kind = Literal["discrete", "continuous"]
LogdetKind = Literal["exact", "stochastic"]
#: what a case's flow went through before a property looks at it (``flowlab.checks.lives``): nothing, training
#: steps (with train → eval switches), or ``load_state_dict`` of another instance's state after being used
Life = Literal["fresh", "trained", "reloaded"]
LIVES: tuple[Life, ...] = ("fresh", "trained", "reloaded")


@dataclass(frozen=True)
class FlowSpec:
    """Everything flowlab knows about one flow, registered by a plugin through ``flowlab_register_flows``.

    - ``name``: unique registry name, e.g. ``"coupling"``.
    - ``summary``: one line for ``flowlab list``.
    - ``build``: ``build(dim, **options) -> Bijector``; receives every option, defaults filled in.
    - ``kind``: ``"discrete"`` (a composition of layers) or ``"continuous"`` (an ODE flow).
    - ``logdet``: ``"exact"`` or ``"stochastic"`` (an unbiased estimate, e.g. Hutchinson's).
    - ``options``: name -> :class:`Option` (default and allowed values).
    - ``references``: papers, as ``"Authors (year). Title. URL"`` strings.
    - ``explanation``: Markdown: the transform, its inverse, the log-det and its cost, the sign convention.
    - ``tolerances``: property name -> :class:`Tolerance` where the kit's default does not fit this flow.
    - ``min_dim``: the smallest dimension the flow supports (default 1); ``max_dim``: the largest (default ``None``:
      any), which bounds the kit's large-dimension ``stress`` case.
    - ``mixes``: whether every output coordinate depends on every input coordinate (a dense Jacobian), as a bool
      or as a predicate of the resolved options; the conformance kit's ``mixing`` check verifies a ``True`` claim
      (a stack of coupling layers without permutations claims to mix and does not). A bool is a claim about the
      flow at its default sizes (one coupling layer of a stack cannot mix, whatever the stack claims): ``mixing``
      checks it with the sizes the kit drew put back to their defaults; a predicate is asked with the drawn ones.
    - ``check_options``: options the conformance kit builds this flow with instead of drawing them (it draws every
      option with ``choices`` otherwise), e.g. a cheaper solver or a smaller network to keep ``flowlab check`` fast;
      say why in a comment, as for a tolerance.
    - ``base``: ``base(dim, dtype=..., device=...) -> torch.distributions.Distribution``, the base distribution the
      flow is meant with (``None``: the standard normal); the kit's density checks use it, so a peer library's own
      base is never silently replaced.
    - ``checked_by_default``: whether ``flowlab check`` with no names (and flowlab's own conformance tests) check
      this flow; plugins that register many flows of other libraries set it to ``False`` (name them to check them).
    - ``fixed_parameters``: the kit checks the parameters ``build`` returns as they are (a trained flow,
      ``flowlab check --checkpoint``) instead of perturbing them (``flowlab.checks.cases.perturb_``).

    What the flow *is*, for the conformance kit (``docs/checks.md``, "The flow contract"); every default describes
    the common case, a flow that differs says so:

    - ``support``: the data side's :class:`~flowlab.support.Support` (default all of R^d; e.g.
      ``Support(0.0, 1.0)`` for a flow onto the unit cube): the kit draws data points inside it and near its edges,
      and checks that samples land in it. ``base_support``: the base side's, when ``base`` is given and its
      distribution's ``support`` constraint does not say it (``None``: read from the base, else R^d).
    - ``allows_dim``: a predicate of the dimension for a flow defined only at some of ``min_dim..max_dim`` (e.g.
      ``lambda d: d % 2 == 0``); the kit draws allowed dimensions only, and a property that needs another one lists
      its case as skipped.
    - ``dtypes``: the floating dtypes the flow computes in (default float32 and float64); in any other the kit
      requires a refusal (an exception, ideally :class:`~flowlab.errors.DtypeError`) instead of a result.
    - ``min_train_batch``: the fewest rows a training-mode call needs (2 for batch statistics); the kit's
      training-mode checks use at least that many.
    - ``eval_deterministic``: whether two eval-mode calls on the same input give the same result (the kit checks
      the claim); ``False`` for a flow that draws randomness in eval mode, whose log-dets the kit then compares in
      expectation, not row by row.
    - ``opt_out``: property name -> the reason the flow is not checked by it (printed in the report); for a property
      its kind calls for but that cannot run on it. Without one, such a property is *uncovered*, and ``flowlab
      check`` exits 1 unless ``--allow-uncovered``.
    """

    name: str
    summary: str
    build: Callable[..., Bijector]
    kind: Kind = "discrete"
    logdet: LogdetKind = "exact"
    options: Mapping[str, Option] = field(default_factory=dict)
    references: Sequence[str] = ()
    explanation: str = ""
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    min_dim: int = 1
    max_dim: int | None = None
    mixes: bool | Callable[[Mapping[str, Any]], bool] = False
    check_options: Mapping[str, Any] = field(default_factory=dict)
    base: Callable[..., Any] | None = None
    checked_by_default: bool = True
    fixed_parameters: bool = False
    support: Support = REAL
    base_support: Support | None = None
    allows_dim: Callable[[int], bool] | None = None
    dtypes: tuple[str, ...] = ("float32", "float64")
    min_train_batch: int = 1
    eval_deterministic: bool = True
    opt_out: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.dtypes) - {"float16", "bfloat16", "float32", "float64"})
        if not self.dtypes or unknown:
            raise OptionError(f"{self.name}: dtypes must name floating dtypes such as 'float64', got {self.dtypes}")
        if self.min_train_batch < 1:
            raise OptionError(f"{self.name}: min_train_batch must be >= 1, got {self.min_train_batch}")

    def dim_allowed(self, dim: int) -> bool:
        """Whether the flow exists in ``dim`` dimensions: ``min_dim <= dim <= max_dim`` and ``allows_dim(dim)``."""
        if dim < self.min_dim or (self.max_dim is not None and dim > self.max_dim):
            return False
        return self.allows_dim is None or bool(self.allows_dim(dim))

    def base_support_at(self, dim: int) -> Support:
        """The base side's support: ``base_support`` if declared, else read off ``base``'s distribution in ``dim``
        dimensions (:func:`flowlab.support.support_of`), else R^d (the standard normal)."""
        if self.base_support is not None:
            return self.base_support
        if self.base is None:
            return REAL
        import torch

        from flowlab.support import support_of

        return support_of(self.base(dim, dtype=torch.float64, device=torch.device("cpu")))

    def mixes_with(self, options: Mapping[str, Any]) -> bool:
        """Whether this flow, built with the resolved ``options``, claims a dense Jacobian (see ``mixes``)."""
        return self.mixes(options) if callable(self.mixes) else bool(self.mixes)

    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults updated with ``options``; unknown names and disallowed values raise :class:`OptionError`."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, list(self.options), n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            known = ", ".join(f"{k}={o.default!r}" for k, o in self.options.items()) or "none"
            raise OptionError(f"{self.name}: unknown option {', '.join(hints)}; known options: {known}")
        resolved = {name: option.default for name, option in self.options.items()}
        for name, value in options.items():
            self.options[name].validate(self.name, name, value)
            resolved[name] = value
        return resolved


#: the outcome of a property on a flow: ``not_applicable`` (the property is not about this kind of flow),
#: ``uncovered`` (it is, but cannot run on this flow: the flow lacks what it needs), ``skipped`` (it could not run
#: here: no such device, every case skipped, opted out with a reason)
Status = Literal["passed", "failed", "inconclusive", "uncovered", "skipped", "not_applicable"]
#: the statuses that fail a gate (``flowlab check``'s exit status, ``assert_conforms``, ``conformance_tests``): a
#: failure, and a verdict that could not be reached (``inconclusive``, ``uncovered``), which is never a pass
NOT_PASSING: tuple[Status, ...] = ("failed", "inconclusive", "uncovered")


@dataclass(frozen=True)
class Case:
    """One drawn example: where and how to build the flow, and which inputs to feed it.

    ``seed`` seeds both the parameters (the kit perturbs them so identity initialisations are not trivially
    correct) and the inputs; ``scale`` is the inputs' standard deviation (several standard deviations are drawn).
    ``profile`` is the Hypothesis profile the case was drawn under: statistical checks size their samples by it
    (``quick``: CI-sized, ``thorough``: the sample sizes whose power ``docs/checks.md`` states). ``support`` and
    ``base_support`` are the flow's (``FlowSpec.support``, and its base's): points are drawn inside them. ``life``
    is what the flow went through before the property looks at it (one of :data:`LIVES`; applied by
    ``flowlab.checks.cases.build_case_bijector``, see ``flowlab.checks.lives``). ``autograd`` is the grad mode the
    property runs in (``flowlab.checks.runner.run_case``): recording, as in training, or off, as under
    ``torch.no_grad()`` when sampling or evaluating; a check that needs gradients turns them on itself.
    """

    dim: int
    batch: int
    seed: int
    options: Mapping[str, Any] = field(default_factory=dict)
    scale: float = 1.0
    dtype: str = "float64"
    device: str = "cpu"
    profile: str = "quick"
    support: Support = REAL
    base_support: Support = REAL
    life: Life = "fresh"
    autograd: bool = True

    def __post_init__(self) -> None:
        if self.life not in LIVES:
            raise OptionError(f"case: expected a life among {', '.join(LIVES)}, got {self.life!r}")


@dataclass
class CheckResult:
    """The outcome of a check on one case (or, after the runner aggregates, on all cases).

    ``max_error`` is compared with ``tolerance`` (``max_error <= tolerance`` passes). ``detail`` says in words what
    was measured, and for a failure what went wrong (e.g. which rows, which values). A statistical check states its
    power in ``detectable``: the smallest error of the quantity it estimates that this case would have detected
    (e.g. ``|Z − 1|`` for ``normalization``: 5 standard errors plus the slack), in the units of that quantity.
    """

    status: Status
    max_error: float | None = None
    tolerance: float | None = None
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    detectable: float | None = None


@dataclass(frozen=True)
class CheckSpec:
    """A property of flows, registered through ``flowlab_register_checks``.

    - ``name``: unique, e.g. ``"invertibility"``.
    - ``summary``: one line for reports.
    - ``run(spec, case) -> CheckResult``: checks one case.
    - ``applies(spec) -> bool | str``: ``True`` when the property is about this kind of flow (its ``kind``,
      ``logdet``, options); else the reason it is not (the run is *not applicable*, and the report says why).
    - ``tolerance``: the default tolerance; a FlowSpec overrides it with ``tolerances[name] = Tolerance(v, reason)``.
    - ``max_examples``: cap on drawn cases (statistical checks use few: fixed seeds and CLT-derived bounds).
    - ``needs(spec, bijector) -> bool | str``: what the check needs of the flow it applies to, asked of the flow
      itself (built once, :func:`flowlab.checks.runner.preflight`), never of a declaration: ``True``, or what is
      missing (e.g. "not a flowlab.ode.ContinuousFlow and no rtol/atol options"); then the run is *uncovered*,
      which fails ``flowlab check`` unless the flow opts out (``FlowSpec.opt_out``) or ``--allow-uncovered``.
    - ``supersedes``: names of checks this one makes redundant on the flows it covers (it verifies the same
      property more strictly: ``ode_logdet`` supersedes ``logdet`` for ODE flows); the runner skips those there,
      saying so, instead of paying for the same property twice.
    - ``builds_first``: the runner builds the flow once before the check runs (``preflight``) and does not run the
      check on a flow that cannot be built; only the ``build`` property, which reports that failure, sets it off.
    """

    name: str
    summary: str
    run: Callable[[FlowSpec, Case], CheckResult]
    applies: Callable[[FlowSpec], bool | str] = lambda spec: True
    tolerance: float = 1e-6
    max_examples: int | None = None
    needs: Callable[[FlowSpec, Any], bool | str] | None = None
    supersedes: frozenset[str] = frozenset()
    builds_first: bool = True

    def tolerance_for(self, spec: FlowSpec) -> float:
        """The tolerance for ``spec``: its own override if it declares one, else this check's default."""
        override = spec.tolerances.get(self.name)
        return self.tolerance if override is None else override.value
