"""The conformance kit: property checks any flow plugin must pass (``flowlab check``; ``docs/checks.md``).

This package is the public surface for check authors: a plugin that brings a property imports what it needs from
``flowlab.checks`` (never from its submodules), registers a :class:`CheckSpec` through
``flowlab_register_checks(register)``, and builds what a case asks for with the helpers below, so a case means the
same thing in every property and a counterexample reproduces exactly:

- records: :class:`Case`, :class:`CheckResult`, :class:`CheckSpec`, ``Status``; :class:`SkipCase` (a case the flow
  cannot be built for), :class:`Uncovered` (a flow that lacks what the property needs); the lookups
  :func:`checks`, :func:`check_spec`;
- from a case to tensors (``cases``): :func:`build_case_bijector`, :func:`build_case_flow`, :func:`case_points`,
  :func:`case_context`, :func:`float64_cpu`, :func:`seeded`, :func:`dtype_of`, :func:`context_dim_of`; what a
  case's flow went through (``lives``): :func:`other_seed` (the seed of another instance of the case);
- measuring (``measure``): :func:`apply` (shapes, and the input left unchanged), :func:`batch_jacobian`,
  :func:`row_errors`, :func:`judge`, ``Measurement``, ``Direction``, :func:`with_context`;
- the mass of a flow's density (``flow_mass``, over ``integrate``'s quadrature and proposals):
  :func:`estimate_flow_mass` -> :class:`FlowMass`, :func:`forward_logdet_is_deterministic`;
- what the ODE properties need (``continuous``): :func:`build_ode`, :func:`solver_settable`,
  :func:`continuous_protocol`;
- drawing (``strategies``): ``CONTEXT_DIMS``; ``CONTEXT_OPTION_NAME``; :func:`case_dtype`; :func:`drawn_sizes` (the
  size options a case drew other than their defaults);
- running (``runner``): :func:`run_property` -> :class:`PropertyRun`.

Submodules, one job each: ``cases``, ``lives``, ``strategies``, ``profiles``, ``measure``, ``integrate``,
``flow_mass``, ``continuous``, ``runner``, ``origin`` (where a flow under check comes from, and the command that
reproduces a case), ``pool`` (``flowlab check -n``), ``trained`` (a checkpoint's flow as a ``FlowSpec``). Importing
this package does not import torch: the names load on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Case": "flowlab.spec",
    "CheckResult": "flowlab.spec",
    "CheckSpec": "flowlab.spec",
    "Status": "flowlab.spec",
    "SkipCase": "flowlab.errors",
    "Uncovered": "flowlab.errors",
    "checks": "flowlab.registry",
    "check_spec": "flowlab.registry",
    "Side": "flowlab.checks.cases",
    "UndeclaredDtype": "flowlab.checks.cases",
    "build_case_bijector": "flowlab.checks.cases",
    "build_case_flow": "flowlab.checks.cases",
    "case_points": "flowlab.checks.cases",
    "case_context": "flowlab.checks.cases",
    "float64_cpu": "flowlab.checks.cases",
    "seeded": "flowlab.checks.cases",
    "dtype_of": "flowlab.checks.cases",
    "context_dim_of": "flowlab.checks.cases",
    "perturb_": "flowlab.checks.cases",
    "other_seed": "flowlab.checks.lives",
    "apply": "flowlab.checks.measure",
    "batch_jacobian": "flowlab.checks.measure",
    "row_errors": "flowlab.checks.measure",
    "judge": "flowlab.checks.measure",
    "Measurement": "flowlab.checks.measure",
    "Direction": "flowlab.checks.measure",
    "with_context": "flowlab.checks.measure",
    "FlowMass": "flowlab.checks.flow_mass",
    "estimate_flow_mass": "flowlab.checks.flow_mass",
    "forward_logdet_is_deterministic": "flowlab.checks.flow_mass",
    "build_ode": "flowlab.checks.continuous",
    "continuous_protocol": "flowlab.checks.continuous",
    "solver_settable": "flowlab.checks.continuous",
    "CONTEXT_DIMS": "flowlab.checks.strategies",
    "case_dtype": "flowlab.checks.strategies",
    "drawn_sizes": "flowlab.checks.strategies",
    "CONTEXT_OPTION_NAME": "flowlab.options",
    "run_property": "flowlab.checks.runner",
    "PropertyRun": "flowlab.checks.runner",
}

__all__ = [
    "CONTEXT_DIMS",
    "CONTEXT_OPTION_NAME",
    "Case",
    "CheckResult",
    "CheckSpec",
    "Direction",
    "FlowMass",
    "Measurement",
    "PropertyRun",
    "Side",
    "SkipCase",
    "Status",
    "Uncovered",
    "UndeclaredDtype",
    "apply",
    "batch_jacobian",
    "build_case_bijector",
    "build_case_flow",
    "build_ode",
    "case_context",
    "case_dtype",
    "case_points",
    "check_spec",
    "checks",
    "context_dim_of",
    "continuous_protocol",
    "drawn_sizes",
    "dtype_of",
    "estimate_flow_mass",
    "float64_cpu",
    "forward_logdet_is_deterministic",
    "judge",
    "other_seed",
    "perturb_",
    "row_errors",
    "run_property",
    "seeded",
    "solver_settable",
    "with_context",
]

if TYPE_CHECKING:
    from flowlab.checks.cases import (
        Side,
        UndeclaredDtype,
        build_case_bijector,
        build_case_flow,
        case_context,
        case_points,
        context_dim_of,
        dtype_of,
        float64_cpu,
        perturb_,
        seeded,
    )
    from flowlab.checks.continuous import build_ode, continuous_protocol, solver_settable
    from flowlab.checks.flow_mass import FlowMass, estimate_flow_mass, forward_logdet_is_deterministic
    from flowlab.checks.lives import other_seed
    from flowlab.checks.measure import Direction, Measurement, apply, batch_jacobian, judge, row_errors, with_context
    from flowlab.checks.runner import PropertyRun, run_property
    from flowlab.checks.strategies import CONTEXT_DIMS, case_dtype, drawn_sizes
    from flowlab.errors import SkipCase, Uncovered
    from flowlab.options import CONTEXT_OPTION_NAME
    from flowlab.registry import check_spec, checks
    from flowlab.spec import Case, CheckResult, CheckSpec, Status


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flowlab.checks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
