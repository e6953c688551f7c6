"""Hypothesis strategies for the cases of the conformance kit (also exported by :mod:`flowlab.testing`).

A case (:class:`~flowlab.spec.Case`) is drawn from:

- ``dims(spec)``: ``spec.min_dim`` to ``spec.min_dim + EXTRA_DIMS``;
- ``batches()``: 1 to ``MAX_BATCH`` rows;
- ``seeds()``: the seed of the parameters (and their perturbation) and of the inputs;
- ``option_values(spec)``: ``spec.check_options`` as given; every other option that lists ``choices`` takes one of
  them, a ``context_dim`` option (a conditional flow, ``docs/conditioning.md``) one of ``CONTEXT_DIMS``, and an
  integer option with a declared range (``Option.low``/``high``: a size) one of its ``size_grid`` (the rest keep
  their defaults): every property then runs at drawn contexts and at other sizes in some of its cases, in the same
  number of cases;
- ``scales()``: the inputs' standard deviation, up to ``MAX_SCALE`` (inputs reach several standard deviations);
- ``lives()``: what the flow went through before the property looks at it (``flowlab.checks.lives``).

Everything shrinks towards the simplest case: the smallest dim and batch, seed 0, the first choice, the default
size, scale 1, a fresh flow.

Hypothesis is imported by the functions that build strategies, not by this module: the plain helpers here
(``case_dtype``, ``drawn_sizes``, ``size_grid``) are used when building a case's flow, and registering the checks
(plugin discovery, ``flowlab list``) imports them without drawing anything (hypothesis's import is ~0.15 s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowlab.errors import OptionError
from flowlab.options import CONTEXT_OPTION_NAME, Option
from flowlab.spec import LIVES, Case

if TYPE_CHECKING:
    from hypothesis import strategies as st

    from flowlab.spec import FlowSpec

EXTRA_DIMS = 4
MAX_BATCH = 8
MAX_SEED = 2**16
MIN_SCALE, MAX_SCALE = 0.1, 4.0
#: the values the kit draws for a ``context_dim`` option: unconditional (the simplest, where shrinking ends) and
#: a two-feature context
CONTEXT_DIMS = (0, 2)


def dims(
    spec: FlowSpec | None = None, *, min_dim: int | None = None, extra: int = EXTRA_DIMS
) -> st.SearchStrategy[int]:
    """Dimensions from the flow's ``min_dim`` (or ``min_dim``, default 1) to ``extra`` more, at most its
    ``max_dim``; for a flow with ``allows_dim`` (e.g. even dimensions only) the first ``extra + 1`` dimensions it
    allows from ``min_dim`` on, so it is drawn as many dimensions as any other flow."""
    from hypothesis import strategies as st

    low = min_dim if min_dim is not None else (spec.min_dim if spec is not None else 1)
    if spec is None or spec.allows_dim is None:
        high = low + extra if spec is None or spec.max_dim is None else max(low, min(low + extra, spec.max_dim))
        return st.integers(low, high)
    return st.sampled_from(allowed_dims(spec, low, extra))


def allowed_dims(spec: FlowSpec, low: int | None = None, extra: int = EXTRA_DIMS) -> list[int]:
    """The first ``extra + 1`` dimensions from ``low`` (default ``min_dim``) that ``spec`` is defined in."""
    start = spec.min_dim if low is None else low
    top = spec.max_dim if spec.max_dim is not None else start + 64 * (extra + 1)
    allowed = [d for d in range(start, top + 1) if spec.dim_allowed(d)][: extra + 1]
    if not allowed:
        from flowlab.errors import OptionError

        raise OptionError(f"{spec.name}: allows_dim allows no dimension in {start}..{top}")
    return allowed


def batches(max_batch: int = MAX_BATCH) -> st.SearchStrategy[int]:
    """Batch sizes ``1..max_batch``."""
    from hypothesis import strategies as st

    return st.integers(1, max_batch)


def seeds() -> st.SearchStrategy[int]:
    """Seeds ``0..2**16``."""
    from hypothesis import strategies as st

    return st.integers(0, MAX_SEED)


def scales(low: float = MIN_SCALE, high: float = MAX_SCALE) -> st.SearchStrategy[float]:
    """Standard deviations of the inputs, in ``[low, high]``."""
    from hypothesis import strategies as st

    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def size_grid(spec: FlowSpec, name: str, option: Option) -> list[int]:
    """The values the kit draws for an integer option (a size: a width, a number of layers or bins, an iteration
    cap) without ``choices`` whose range is declared (``Option.low`` or ``high``): the default first (where
    shrinking ends), then the default minus one and the value halfway from the default down to ``low`` (half the
    default without ``low``), those the option allows. Never above the default, so a drawn size costs no more than
    the default; empty for any other option (it keeps its default)."""
    default = option.default
    if option.choices or (option.low is None and option.high is None) or type(default) is not int:
        return []
    halfway = (default + option.low) // 2 if option.low is not None else default // 2
    grid = [default]
    for value in (default - 1, int(halfway)):
        try:
            option.validate(spec.name, name, value)
        except OptionError:
            continue
        if value not in grid:
            grid.append(value)
    return grid if len(grid) > 1 else []


def drawn_sizes(spec: FlowSpec, options: dict[str, Any]) -> dict[str, Any]:
    """The options of a case that took a value of their :func:`size_grid` other than the default."""
    return {
        name: value
        for name, value in options.items()
        if name in spec.options
        and name not in spec.check_options
        and value != spec.options[name].default
        and value in size_grid(spec, name, spec.options[name])
    }


def option_values(spec: FlowSpec) -> st.SearchStrategy[dict[str, Any]]:
    """The spec's ``check_options`` as given, and a drawn value for every other option that lists ``choices`` (for
    ``context_dim``: one of ``CONTEXT_DIMS``) or has a :func:`size_grid`; other options are left out (they keep
    their defaults)."""
    from hypothesis import strategies as st

    drawn = {
        name: st.sampled_from(list(option.choices))
        for name, option in spec.options.items()
        if option.choices and name not in spec.check_options
    }
    for name, option in spec.options.items():
        grid = size_grid(spec, name, option)
        if grid and name not in spec.check_options and name != CONTEXT_OPTION_NAME:
            drawn[name] = st.sampled_from(grid)
    context = context_dims(spec)
    if context is not None:
        drawn[CONTEXT_OPTION_NAME] = context
    pinned = {name: st.just(value) for name, value in spec.check_options.items()}
    return st.fixed_dictionaries({**pinned, **drawn})


def context_dims(spec: FlowSpec) -> st.SearchStrategy[int] | None:
    """``CONTEXT_DIMS`` for a flow with a ``context_dim`` option the kit does not pin; ``None`` otherwise."""
    from hypothesis import strategies as st

    if CONTEXT_OPTION_NAME in spec.options and CONTEXT_OPTION_NAME not in spec.check_options:
        return st.sampled_from(CONTEXT_DIMS)
    return None


def lives() -> st.SearchStrategy[str]:
    """The lives of ``flowlab.spec.LIVES`` (``fresh`` first, where shrinking ends)."""
    from hypothesis import strategies as st

    return st.sampled_from(LIVES)


def autograd_modes() -> st.SearchStrategy[bool]:
    """Autograd recording (``True``, where shrinking ends) or off (the flow called under ``torch.no_grad()``)."""
    from hypothesis import strategies as st

    return st.sampled_from((True, False))


def case_dtype(spec: FlowSpec) -> str:
    """The dtype the kit checks ``spec`` in: float64 (where comparisons with autograd are exact to many digits)
    unless the flow does not compute in it (``FlowSpec.dtypes``), then its first declared dtype."""
    return "float64" if "float64" in spec.dtypes else spec.dtypes[0]


def cases(
    spec: FlowSpec, *, device: str = "cpu", dtype: str | None = None, profile: str = "quick"
) -> st.SearchStrategy[Case]:
    """Whole cases for ``spec`` on ``device``, drawn under ``profile``, in ``dtype`` (default
    :func:`case_dtype`), with the flow's supports (points are drawn inside them)."""
    from hypothesis import strategies as st

    return st.builds(
        Case,
        dim=dims(spec),
        batch=batches(),
        seed=seeds(),
        options=option_values(spec),
        scale=scales(),
        dtype=st.just(dtype or case_dtype(spec)),
        device=st.just(device),
        profile=st.just(profile),
        support=st.just(spec.support),
        base_support=st.just(spec.base_support_at(spec.min_dim)),
        life=lives(),
        autograd=autograd_modes(),
    )
