"""flowlab: a testbed to learn, build and verify normalizing flows.

The public API is imported lazily (PEP 562), so ``import flowlab`` and ``flowlab --version`` do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flowlab.hookspecs import hookimpl

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Bijector": "flowlab.bijector",
    "Compose": "flowlab.bijector",
    "Permutation": "flowlab.bijector",
    "VectorField": "flowlab.vector_field",
    "JacobianField": "flowlab.vector_field",
    "JVPField": "flowlab.vector_field",
    "Flow": "flowlab.flow",
    "FlowSpec": "flowlab.spec",
    "Support": "flowlab.support",
    "DomainError": "flowlab.errors",
    "Option": "flowlab.options",
    "Tolerance": "flowlab.options",
    "CONTEXT_OPTION": "flowlab.options",
    "CheckSpec": "flowlab.spec",
    "SkipCase": "flowlab.errors",
    "flows": "flowlab.registry",
    "flow_spec": "flowlab.registry",
    "build": "flowlab.registry",
    "datasets": "flowlab.registry",
    "dataset_spec": "flowlab.registry",
    "DatasetSpec": "flowlab.data",
    "grade": "flowlab.grading",
    "Grade": "flowlab.grading",
    "AdapterError": "flowlab.errors",
    "CheckpointError": "flowlab.errors",
    "ContextError": "flowlab.errors",
    "ConvergenceError": "flowlab.errors",
    "DivergenceError": "flowlab.errors",
    "MissingDependencyError": "flowlab.errors",
    "check_points": "flowlab.validation",
    "FlowlabError": "flowlab.errors",
    "ShapeError": "flowlab.errors",
    "DtypeError": "flowlab.errors",
    "DeviceError": "flowlab.errors",
    "NonFiniteError": "flowlab.errors",
    "UnknownFlowError": "flowlab.errors",
    "OptionError": "flowlab.errors",
    "SingularMatrixError": "flowlab.errors",
    "SolverError": "flowlab.errors",
    "PluginError": "flowlab.errors",
    "DuplicateNameError": "flowlab.errors",
}

__all__ = [
    "CONTEXT_OPTION",
    "AdapterError",
    "Bijector",
    "CheckSpec",
    "CheckpointError",
    "Compose",
    "ContextError",
    "ConvergenceError",
    "DatasetSpec",
    "DeviceError",
    "DivergenceError",
    "DomainError",
    "DtypeError",
    "DuplicateNameError",
    "Flow",
    "FlowSpec",
    "FlowlabError",
    "Grade",
    "JVPField",
    "JacobianField",
    "MissingDependencyError",
    "NonFiniteError",
    "Option",
    "OptionError",
    "Permutation",
    "PluginError",
    "ShapeError",
    "SingularMatrixError",
    "SkipCase",
    "SolverError",
    "Support",
    "Tolerance",
    "UnknownFlowError",
    "VectorField",
    "__version__",
    "build",
    "check_points",
    "dataset_spec",
    "datasets",
    "flow_spec",
    "flows",
    "grade",
    "hookimpl",
]

if TYPE_CHECKING:
    from flowlab.bijector import Bijector, Compose, Permutation
    from flowlab.data import DatasetSpec
    from flowlab.errors import (
        AdapterError,
        CheckpointError,
        ContextError,
        ConvergenceError,
        DeviceError,
        DivergenceError,
        DomainError,
        DtypeError,
        DuplicateNameError,
        FlowlabError,
        MissingDependencyError,
        NonFiniteError,
        OptionError,
        PluginError,
        ShapeError,
        SingularMatrixError,
        SkipCase,
        SolverError,
        UnknownFlowError,
    )
    from flowlab.flow import Flow
    from flowlab.grading import Grade, grade
    from flowlab.options import CONTEXT_OPTION, Option, Tolerance
    from flowlab.registry import build, dataset_spec, datasets, flow_spec, flows
    from flowlab.spec import CheckSpec, FlowSpec
    from flowlab.support import Support
    from flowlab.validation import check_points
    from flowlab.vector_field import JacobianField, JVPField, VectorField


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flowlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
