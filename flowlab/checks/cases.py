"""From a drawn :class:`~flowlab.spec.Case` to tensors: the bijector under test and its input points.

Every check builds what it needs through these helpers, so a case means the same thing in every property and a
counterexample reproduces exactly:

- :func:`build_case_bijector`: the flow built with the case's options (and those a check pins) under
  ``torch.manual_seed(seed)``, every parameter perturbed by noise of scale ``PERTURBATION`` from the same seed (see
  :func:`perturb_`; identity initialisations would make many bugs invisible: a zero log-scale has the right log-det
  whatever the formula), after the case's life (``Case.life``: fresh, trained or reloaded, see
  :mod:`flowlab.checks.lives`), converted to the case's dtype and device, in eval mode (``train=True``: training
  mode, for the properties of training such as ``gradients``). Each call is a new instance, the same for the same
  case (first-call checks build two).
- :func:`case_points`: ``[batch, dim]`` standard-normal points times ``scale``, drawn on the CPU from a generator
  seeded by ``(seed, salt)`` and then moved, so CPU and CUDA cases see the same numbers.
- :func:`case_context`: for a case of a conditional flow (its options hold ``context_dim = k > 0``), the
  ``[batch, k]`` normal contexts of its points, at the case's scale, drawn like them from ``(seed, salt)`` (another
  stream);
  ``None`` for an unconditional case. Every check passes it wherever it passes points, so each property holds
  at a drawn context (``docs/conditioning.md``).
- :func:`float64_cpu`: the case moved to float64 on the CPU, for checks whose reference needs the precision.
- :func:`inputs`: a Hypothesis strategy of ``[batch, dim]`` input tensors drawn like :func:`case_points` (for plugin
  authors' own property tests, through :mod:`flowlab.testing`).
- :func:`seeded`: a block where the global RNG (used by ``nn.Linear`` initialisation and ``Flow.sample``) is seeded,
  restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from torch import Tensor

from flowlab.bijector import Bijector
from flowlab.checks.lives import live
from flowlab.checks.strategies import batches, dims, drawn_sizes, scales, seeds
from flowlab.errors import OptionError, SkipCase
from flowlab.flow import Flow
from flowlab.options import CONTEXT_OPTION_NAME
from flowlab.registry import build_from_spec
from flowlab.seeding import manual_seed_
from flowlab.spec import Case, FlowSpec

if TYPE_CHECKING:
    from hypothesis import strategies as st

#: standard deviation of the noise added to every parameter of a case's bijector
PERTURBATION = 0.3
#: offset of the contexts' seeds from the points' (``case_context`` and ``case_points`` draw independently)
CONTEXT_STREAM = 500_009


#: which side of the flow a point set is for: data (``inverse``, ``log_prob``) or base (``forward``)
Side = Literal["data", "base"]


class UndeclaredDtype(SkipCase):
    """A case asked for a dtype the flow does not declare (``FlowSpec.dtypes``): a skipped case, except where a
    check verifies that the flow refuses it (``dtype_device``)."""


def dtype_of(case: Case) -> torch.dtype:
    """The case's dtype as a ``torch.dtype`` (``"float64"`` -> ``torch.float64``)."""
    dtype = getattr(torch, case.dtype, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        from flowlab.errors import DtypeError

        raise DtypeError(f"case: expected a floating dtype name such as 'float64', got {case.dtype!r}")
    return dtype


@contextmanager
def seeded(seed: int, device: str = "cpu") -> Iterator[None]:
    """Seed the global RNG (CPU, and ``device`` if it is a CUDA device) inside the block; restore it after."""
    target = torch.device(device)
    devices = [target.index or 0] if target.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # initialises the case's CUDA device, which is then seeded too
        manual_seed_(seed)
        yield


def perturb_(module: torch.nn.Module, seed: int, scale: float = PERTURBATION) -> torch.nn.Module:
    """Add Gaussian noise (a CPU generator seeded by ``seed``) to every trainable floating-point parameter, in place.

    The noise's standard deviation is ``scale`` for vectors and ``scale / √fan_in`` for weight matrices (``fan_in``:
    the product of all but the first dimension), so a layer's output moves by about ``scale`` whatever its width.
    Frozen parameters (``requires_grad=False``) and integer ones are left alone: they are structure the flow holds
    fixed (FrEIA's permutation and its inverse, stored as a pair of frozen parameters, must stay each other's
    inverse), not what training moves.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            if not (parameter.requires_grad and parameter.is_floating_point()):
                continue
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            fan_in = parameter[0].numel() if parameter.dim() >= 2 else 1
            parameter.add_(noise.to(dtype=parameter.dtype, device=parameter.device) * (scale / fan_in**0.5))
    return module


def build_case_bijector(spec: FlowSpec, case: Case, *, train: bool = False, **pinned: Any) -> Bijector:
    """The bijector of ``spec`` for ``case``: built, perturbed, after the case's life, on the case's dtype and
    device, in eval mode (training mode with ``train=True``).

    ``pinned`` are options a check needs whatever the case drew (tight solver tolerances, the exact trace): they
    override the case's options where ``spec`` has an option of that name and are ignored where it has none. A
    bijector built with options pinned that way is fresh whatever the case's life: it is the check's own
    configuration (a life would train an ODE flow at the check's tight tolerances, or move an unnormalised flow's
    weights out of the bound it must then refuse).
    """
    if not spec.dim_allowed(case.dim):
        raise SkipCase(
            f"{spec.name} is not defined in {case.dim} dimensions (FlowSpec min_dim={spec.min_dim}, "
            f"max_dim={spec.max_dim}{', allows_dim' if spec.allows_dim is not None else ''})"
        )
    if case.dtype not in spec.dtypes:
        raise UndeclaredDtype(
            f"{spec.name} computes in {', '.join(spec.dtypes)} only (FlowSpec.dtypes), not {case.dtype}"
        )
    options = {**case.options, **{name: value for name, value in pinned.items() if name in spec.options}}

    def built(seed: int) -> torch.nn.Module:
        with seeded(seed):
            bijector = build_from_spec(spec, case.dim, **options)
        if not spec.fixed_parameters:  # a trained flow is checked as it is (flowlab.checks.trained)
            perturb_(bijector.double(), seed)
        return bijector

    if options != dict(case.options):  # a check's own configuration (tight solver tolerances ...) is checked fresh
        case = replace(case, life="fresh")
    try:
        bijector = live(spec, case, options, built)
    except OptionError as exc:  # a drawn size the flow refuses with its other options: its declared range is wider
        if not (sizes := drawn_sizes(spec, dict(case.options))):
            raise
        raise SkipCase(f"{spec.name} refuses the drawn size {sizes} with its other options: {exc}") from None
    return cast(Bijector, bijector.to(device=case.device, dtype=dtype_of(case)).train(train))


def build_case_flow(spec: FlowSpec, case: Case, *, train: bool = False) -> Flow:
    """``Flow(build_case_bijector(spec, case))`` with the flow's own base (``FlowSpec.base``; the standard normal
    if it names none), on the case's dtype and device."""
    bijector = build_case_bijector(spec, case, train=train)
    base = None if spec.base is None else spec.base(case.dim, dtype=dtype_of(case), device=torch.device(case.device))
    flow = Flow(bijector, base, support=spec.support)
    return flow.to(device=case.device, dtype=dtype_of(case)).train(train)


def float64_cpu(case: Case, dim: int | None = None) -> Case:
    """``case`` in float64 on the CPU (in ``dim`` dimensions if given): for checks whose reference needs the
    precision (autograd Jacobians, quadrature, CLT bounds) and does not depend on the device."""
    return replace(case, dim=case.dim if dim is None else dim, dtype="float64", device="cpu")


def context_dim_of(case: Case) -> int:
    """The number of context features of the case's flow: its ``context_dim`` option, 0 if it has none."""
    return int(case.options.get(CONTEXT_OPTION_NAME, 0))


def case_context(case: Case, salt: int = 0, *, batch: int | None = None, scale: float | None = None) -> Tensor | None:
    """``[batch, k]`` contexts ``N(0, scale²)`` (default: the case's scale, the points' range of magnitudes) for a case
    with ``context_dim = k > 0`` (``None`` when ``k = 0``): one per point of ``case_points(case, salt,
    batch=batch)``, from a stream of their own (the points do not change)."""
    k = context_dim_of(case)
    if not k:
        return None
    generator = torch.Generator().manual_seed(case.seed * 1_000_003 + CONTEXT_STREAM + salt)
    rows = case.batch if batch is None else batch
    context = torch.randn(rows, k, generator=generator, dtype=torch.float64) * (case.scale if scale is None else scale)
    return context.to(device=case.device, dtype=dtype_of(case))


def case_points(
    case: Case, salt: int = 0, *, batch: int | None = None, scale: float | None = None, side: Side = "data"
) -> Tensor:
    """``[batch, dim]`` points for ``case``: ``N(0, scale²)`` draws carried into the support of ``side`` (``"data"``:
    what ``inverse`` and ``log_prob`` take; ``"base"``: what ``forward`` takes) by
    :meth:`~flowlab.support.Support.from_real` (on all of R^d: the draws themselves; on a bounded support, large
    draws land near its edges). Another ``salt`` gives independent points."""
    generator = torch.Generator().manual_seed(case.seed * 1_000_003 + salt)
    rows = case.batch if batch is None else batch
    points = torch.randn(rows, case.dim, generator=generator, dtype=torch.float64)
    points = points * (case.scale if scale is None else scale)
    points = points.to(dtype=dtype_of(case))
    support = case.support if side == "data" else case.base_support
    if not support.is_real:  # in the case's dtype, so that rounding cannot put a point on a bound
        points = support.from_real(points)
    return points.to(device=case.device)


def inputs(
    dim: int | st.SearchStrategy[int],
    *,
    batch: int | st.SearchStrategy[int] | None = None,
    scale: float | st.SearchStrategy[float] | None = None,
    dtype: str = "float64",
    device: str = "cpu",
) -> st.SearchStrategy[Tensor]:
    """``[batch, dim]`` tensors of ``N(0, scale²)`` points drawn from a seed (so they shrink well)."""
    from hypothesis import strategies as st  # here, as in flowlab.checks.strategies: registering checks needs none

    def fixed(value: Any, default: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        if value is None:
            return default
        return value if isinstance(value, st.SearchStrategy) else st.just(value)

    drawn = st.builds(
        Case,
        dim=fixed(dim, dims()),
        batch=fixed(batch, batches()),
        seed=seeds(),
        scale=fixed(scale, scales()),
        dtype=st.just(dtype),
        device=st.just(device),
    )
    return drawn.map(case_points)
