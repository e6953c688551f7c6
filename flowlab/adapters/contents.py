"""What a peer object holds: its tensors, found by walking its attributes, and the learnable ones among them.

Peer libraries keep learnable tensors in many places: ``nn.Parameter``\\ s of an ``nn.Module``, plain attributes
of a torch ``Transform`` (``AffineTransform(loc, scale)``), the parameters of a ``Distribution`` a transform holds
(``CumulativeDistributionTransform(Normal(loc, scale))``), lists and dicts of them. An adapter must expose every
learnable tensor as a parameter of the adapted module, or training and the conformance kit's ``gradients`` check
would silently leave it out. This module finds them:

- :func:`walk`, :func:`tensors_in`: every tensor reachable from an object through attributes (``vars``), ``nn.Module``
  parameters, buffers and submodules, list/tuple/dict items, with a readable path (``peer.distribution.loc``);
- :func:`require_exposed`: raise :class:`~flowlab.errors.AdapterError` naming every learnable tensor of the peer
  that is not a parameter of the adapted module, or that was computed from one (a constructor's ``exp()``);
- :func:`derived_tensors`: the non-leaf tensors held as attributes (caches such as a transform's
  ``_cached_x_y``, or values computed in ``__init__``): ``copy.deepcopy`` refuses them, so
  :meth:`flowlab.adapters.Adapted.__deepcopy__` copies them detached instead.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from flowlab.errors import AdapterError

#: objects never walked into: they hold no tensor of the peer's (code, classes, scalars)
OPAQUE = (
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.ModuleType,
    str,
    bytes,
    int,
    float,
    complex,
    bool,
    type(None),
)
#: ``nn.Module`` internals whose names are left out of a path (``peer._modules.net._parameters.weight`` -> ``peer.net
#: .weight``)
MODULE_SLOTS = ("_parameters", "_buffers", "_modules")


@dataclass(frozen=True)
class Found:
    """One object reached by :func:`walk`: ``owner[key]`` (an attribute or an item) at ``path``."""

    path: str
    owner: Any
    key: Any
    value: Any


def walk(
    root: Any, prefix: str = "peer", *, report: tuple[type, ...] = (), stop: tuple[type, ...] = ()
) -> Iterator[Found]:
    """Every tensor reachable from ``root`` and every object of a ``report`` type (``root`` included), each once at
    the first path found; objects of a ``stop`` type other than ``root`` are not walked into."""
    seen: set[int] = set()
    stack: list[Found] = [Found(prefix, None, None, root)]
    while stack:
        found = stack.pop()
        obj = found.value
        if id(obj) in seen or isinstance(obj, OPAQUE):
            continue
        seen.add(id(obj))
        if isinstance(obj, Tensor) or isinstance(obj, report):
            yield found
        if isinstance(obj, Tensor) or (isinstance(obj, stop) and obj is not root):
            continue
        if isinstance(obj, dict):
            items: Any = obj.items()
        elif isinstance(obj, (list, tuple, set, frozenset)):
            items = enumerate(obj)
        elif hasattr(obj, "__dict__"):
            items = vars(obj).items()
        else:
            continue
        for key, value in reversed(list(items)):
            path = found.path if key in MODULE_SLOTS else f"{found.path}.{key}"
            stack.append(Found(path, obj, key, value))


def tensors_in(root: Any, prefix: str = "peer") -> Iterator[tuple[str, Tensor]]:
    """``(path, tensor)`` for every tensor reachable from ``root`` (each tensor once, first path found)."""
    for found in walk(root, prefix):
        yield found.path, found.value


def is_cache(path: str) -> bool:
    """Whether ``path`` names a peer's cache of a previous call (torch's ``_cached_x_y``, Pyro's
    ``_cached_logDetJ``), which holds results, not the flow's state."""
    return any(part.startswith("_cached") for part in path.split("."))


def derived_tensors(root: Any) -> list[tuple[str, Tensor]]:
    """The non-leaf tensors (computed, with a ``grad_fn``) reachable from ``root``: caches or derived values."""
    return [(path, tensor) for path, tensor in tensors_in(root) if not tensor.is_leaf]


def require_exposed(adapter: nn.Module, peer: Any, *, source: str) -> None:
    """Raise :class:`AdapterError` unless every learnable tensor reachable from ``peer`` (outside its caches) is a
    parameter of ``adapter``, naming each lost one by its path. A tensor computed from learnable ones (a non-leaf
    held as an attribute, e.g. ``self.scale = self.log_scale.exp()`` in ``__init__``) is lost too: it keeps its
    value when the parameters move (an optimizer step, ``.to()``, the kit's perturbation)."""
    exposed = {id(parameter) for parameter in adapter.parameters()}
    lost: list[str] = []
    for path, tensor in tensors_in(peer):
        if is_cache(path) or not tensor.requires_grad:
            continue
        if tensor.grad_fn is not None:  # computed once from learnable tensors: it would not follow them
            lost.append(f"{path} {list(tensor.shape)} (computed by {type(tensor.grad_fn).__name__})")
        elif id(tensor) not in exposed:
            lost.append(f"{path} {list(tensor.shape)}")
    if lost:
        raise AdapterError(
            f"{source}: expected every learnable tensor of the peer to be a parameter of the adapted module, got "
            f"{len(lost)} that would be lost (not trained, not moved by .to(), not checked): {'; '.join(lost)}; hold "
            "learnable tensors as nn.Parameters (of an nn.Module, or as plain attributes of a transform), and compute "
            "what depends on them at call time, not once in a constructor"
        )
