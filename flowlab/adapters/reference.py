"""``flow_from_reference``: a flow defined in Python, named ``MODULE:ATTR``, as a flowlab ``Flow`` (``flowlab eval
--model``).

``MODULE`` is a dotted module name (importable from the current directory too) or a path to a ``.py`` file; ``ATTR``
a (dotted) attribute of it. The object found, or what it returns when called with no argument (a factory that
loads trained parameters), is taken as:

- a :class:`~flowlab.Flow`: as it is;
- a :class:`~flowlab.Bijector`: ``Flow(bijector)`` (the standard-normal base);
- any other ``nn.Module``: a velocity field, made a CNF by :func:`~flowlab.adapters.from_velocity_field` with the
  given ``time`` convention and solver (a torchcfm or Meta ``flow_matching`` model trained elsewhere).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from torch import nn

from flowlab.adapters.velocity import from_velocity_field
from flowlab.bijector import Bijector
from flowlab.errors import OptionError
from flowlab.flow import Flow
from flowlab.ode import SolverConfig


def _module(name: str) -> Any:
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise OptionError(f"--model: expected MODULE:ATTR with MODULE a module or a .py file, got no file {name!r}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise OptionError(f"--model: cannot load {name!r} as a Python module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if "" not in sys.path:
        sys.path.insert(0, "")  # the current directory, as `python -m` does
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise OptionError(f"--model: cannot import module {name!r} ({error})") from error


def flow_from_reference(reference: str, dim: int, *, time: str = "t_first", solver: SolverConfig | None = None) -> Flow:
    """The flow ``MODULE:ATTR`` names, on ``R^dim`` (see the module docstring); :class:`OptionError` otherwise."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise OptionError(f"--model: expected MODULE:ATTR (e.g. my_models:field), got {reference!r}")
    obj: Any = _module(module_name)
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise OptionError(f"--model: {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    if callable(obj) and not isinstance(obj, nn.Module):
        obj = obj()
    if isinstance(obj, Flow):
        flow = obj
    elif isinstance(obj, Bijector):
        flow = Flow(obj)
    elif isinstance(obj, nn.Module):
        flow = Flow(from_velocity_field(obj, dim, time=time, solver=solver))
    else:
        raise OptionError(
            f"--model: expected {reference} to be a flowlab Flow, a Bijector or an nn.Module velocity field (or a "
            f"function returning one), got {type(obj).__name__}"
        )
    if flow.dim != dim:
        raise OptionError(f"--model: {reference} is {flow.dim}-dimensional, the data {dim}-dimensional")
    return flow
