"""Public lookups over the plugin registry: ``flows()``, ``flow_spec()``, ``build()``, ``datasets()``,
``dataset_spec()``, ``checks()``, ``check_spec()``, ``objectives()``, ``objective_spec()``."""

from __future__ import annotations

from typing import Any

from torch import nn

from flowlab.data import DatasetSpec
from flowlab.errors import OptionError, PluginError
from flowlab.objectives import ObjectiveSpec
from flowlab.plugins import get_registry
from flowlab.spec import CheckSpec, FlowSpec


def flows() -> dict[str, FlowSpec]:
    """The registered flows, ``name -> FlowSpec``, built-ins first."""
    return get_registry().records("flows")


def flow_spec(name: str) -> FlowSpec:
    """The FlowSpec called ``name`` (:class:`~flowlab.errors.UnknownFlowError` listing the known ones if none)."""
    spec: FlowSpec = get_registry().get("flows", name).record
    return spec


def build(name: str, dim: int, **options: Any) -> nn.Module:
    """Build the bijector of the registered flow ``name`` on ``R^dim``.

    Options not given take their defaults; an unknown option or a value outside the allowed ones raises
    :class:`~flowlab.errors.OptionError` naming it and the allowed values.
    """
    return build_from_spec(flow_spec(name), dim, **options)


def build_from_spec(spec: FlowSpec, dim: int, **options: Any) -> nn.Module:
    """:func:`build` for a FlowSpec at hand (registered or not: the kit checks specs a test made up)."""
    name = spec.name
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < spec.min_dim:
        raise OptionError(f"{name}: expected an integer dim >= {spec.min_dim}, got {dim!r}")
    if not spec.dim_allowed(dim):
        top = "" if spec.max_dim is None else f", max_dim {spec.max_dim}"
        rule = ", allows_dim" if spec.allows_dim is not None else ""
        raise OptionError(f"{name} is not defined in {dim} dimensions (min_dim {spec.min_dim}{top}{rule})")
    resolved = spec.resolve_options(options)
    bijector = spec.build(dim, **resolved)
    if not isinstance(bijector, nn.Module) or getattr(bijector, "dim", None) != dim:
        raise PluginError(
            f"{name}: build() must return an nn.Module bijector with .dim == {dim}, got "
            f"{type(bijector).__name__} with dim {getattr(bijector, 'dim', None)!r}"
        )
    return bijector


def datasets() -> dict[str, DatasetSpec]:
    """The registered datasets, ``name -> DatasetSpec``, built-ins first."""
    return get_registry().records("datasets")


def dataset_spec(name: str) -> DatasetSpec:
    """The DatasetSpec called ``name`` (:class:`~flowlab.errors.UnknownFlowError` listing the known ones if none)."""
    spec: DatasetSpec = get_registry().get("datasets", name).record
    return spec


def checks() -> dict[str, CheckSpec]:
    """The registered checks, ``name -> CheckSpec``, in registration order (built-ins first)."""
    return get_registry().records("checks")


def check_spec(name: str) -> CheckSpec:
    """The check called ``name`` (:class:`~flowlab.errors.UnknownFlowError` listing the known ones if none)."""
    spec: CheckSpec = get_registry().get("checks", name).record
    return spec


def objectives() -> dict[str, ObjectiveSpec]:
    """The registered objectives, ``name -> ObjectiveSpec``, built-ins first."""
    return get_registry().records("objectives")


def objective_spec(name: str) -> ObjectiveSpec:
    """The objective called ``name`` (:class:`~flowlab.errors.UnknownFlowError` listing the known ones if none)."""
    spec: ObjectiveSpec = get_registry().get("objectives", name).record
    return spec
