"""The plugin manager: discovers plugins through entry points, collects what they register, isolates failures.

Discovery reads the ``flowlab`` entry-point group of every installed distribution, the built-in plugins included
(they are announced by flowlab's own ``pyproject.toml``; there is no private list). Switches:

- ``FLOWLAB_DISABLE_PLUGIN_AUTOLOAD=1``: load only the entry points of the ``flowlab`` distribution itself.
- ``FLOWLAB_BLOCK_PLUGINS=name1,name2``: never load the plugins with these entry-point names.

Each plugin's registrations are staged and committed together: if its import or any of its hooks raises, or it
registers a name already taken, the plugin is recorded as broken (with the error) and contributes nothing.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from flowlab import hookspecs
from flowlab.errors import DuplicateNameError, PluginError, UnknownFlowError

ENTRY_POINT_GROUP = "flowlab"
BUILTIN_DISTRIBUTION = "flowlab-nf"  # on PyPI; the import package, command and entry-point group are "flowlab"
AUTOLOAD_ENV = "FLOWLAB_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "FLOWLAB_BLOCK_PLUGINS"
#: the distribution of a plugin registered in code (a ``--plugin`` file, a test, a notebook)
IN_CODE = "(registered in code)"

#: registry category -> hook that fills it
CATEGORIES: dict[str, str] = {
    "flows": "flowlab_register_flows",
    "datasets": "flowlab_register_datasets",
    "checks": "flowlab_register_checks",
    "objectives": "flowlab_register_objectives",
}


def record_types() -> dict[str, type]:
    """Registry category -> the record type its entries must be an instance of (every category, declared here)."""
    from flowlab.data import DatasetSpec
    from flowlab.objectives import ObjectiveSpec
    from flowlab.spec import CheckSpec, FlowSpec

    return {"flows": FlowSpec, "datasets": DatasetSpec, "checks": CheckSpec, "objectives": ObjectiveSpec}


@dataclass
class PluginInfo:
    """One plugin: its entry-point name, where it comes from, and whether it loaded."""

    name: str
    distribution: str
    version: str
    module: str
    error: str | None = None
    traceback: str | None = None
    registered: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


@dataclass(frozen=True)
class Entry:
    """A registered record and the plugin it came from."""

    record: Any
    plugin: PluginInfo


class Registry:
    """Plugins and everything they registered, by category (``flows``, ``datasets``, ``checks``) and name."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager("flowlab")
        self.manager.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.entries: dict[str, dict[str, Entry]] = {category: {} for category in CATEGORIES}

    # -- discovery -------------------------------------------------------------------------------------------------
    def load_entry_points(self, *, autoload: bool | None = None, blocked: Iterable[str] | None = None) -> None:
        """Load every plugin of the ``flowlab`` entry-point group (see the module docstring for the switches)."""
        if autoload is None:
            autoload = os.environ.get(AUTOLOAD_ENV, "").strip().lower() in ("", "0", "false", "no")
        if blocked is None:
            blocked = [b.strip() for b in os.environ.get(BLOCK_ENV, "").split(",") if b.strip()]
        blocked = set(blocked)
        points = []
        read: dict[int, tuple[str, str]] = {}  # the entry points of one distribution share its Distribution object
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if id(ep.dist) not in read:
                read[id(ep.dist)] = _name_and_version(ep.dist)
            dist, version = read[id(ep.dist)]
            if ep.name in blocked or (not autoload and dist != BUILTIN_DISTRIBUTION):
                continue
            points.append((dist != BUILTIN_DISTRIBUTION, ep.name, dist, version, ep))
        for _, name, dist, version, ep in sorted(points, key=lambda p: (p[0], p[1])):
            info = PluginInfo(name=name, distribution=dist, version=version, module=ep.value)
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not break the others
                self._fail(info, f"import of {ep.value!r} failed: {type(exc).__name__}: {exc}")
                continue
            self.add_plugin(plugin, info)

    def add_plugin(self, plugin: object, info: PluginInfo | str) -> PluginInfo:
        """Register a plugin object (a module or any object with hookimpls) and collect its registrations.

        ``info`` may be just a name, for plugins registered programmatically (tests, notebooks).
        """
        if isinstance(info, str):
            info = PluginInfo(name=info, distribution=IN_CODE, version="", module=repr(plugin))
        if info.name in self.plugins:
            raise DuplicateNameError(f"a plugin named {info.name!r} is already registered")
        try:
            self.manager.register(plugin, name=info.name)
        except Exception as exc:
            return self._fail(info, f"invalid plugin: {type(exc).__name__}: {exc}")
        staged: dict[str, list[Any]] = {category: [] for category in CATEGORIES}
        for category, hook_name in CATEGORIES.items():
            caller = getattr(self.manager.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                try:
                    impl.function(register=self._stager(category, staged[category], info))
                except Exception as exc:
                    self.manager.unregister(plugin)
                    return self._fail(info, f"{hook_name} raised {type(exc).__name__}: {exc}")
        clash = self._first_clash(staged, info)
        if clash is not None:
            self.manager.unregister(plugin)
            return self._fail(info, clash)
        for category, records in staged.items():
            for record in records:
                self.entries[category][record.name] = Entry(record, info)
            info.registered[category] = [record.name for record in records]
        self.plugins[info.name] = info
        return info

    def remove_plugin(self, name: str) -> None:
        """Forget the plugin ``name`` and everything it registered."""
        info = self.plugins.pop(name)
        if self.manager.has_plugin(name):
            self.manager.unregister(name=name)
        for entries in self.entries.values():
            for record_name in [key for key, entry in entries.items() if entry.plugin is info]:
                del entries[record_name]

    # -- queries ---------------------------------------------------------------------------------------------------
    def records(self, category: str) -> dict[str, Any]:
        """``name -> record`` for one category, in registration order."""
        return {name: entry.record for name, entry in self.entries[category].items()}

    def get(self, category: str, name: str) -> Entry:
        """The entry called ``name``; :class:`~flowlab.errors.UnknownFlowError` listing the known names if none."""
        try:
            return self.entries[category][name]
        except KeyError:
            known = sorted(self.entries[category])
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            singular = category[:-1]
            raise UnknownFlowError(
                f"unknown {singular} {name!r}; known {category}: {', '.join(known) or '(none registered)'}.{hint}"
            ) from None

    @property
    def broken(self) -> list[PluginInfo]:
        return [info for info in self.plugins.values() if not info.ok]

    # -- internals -------------------------------------------------------------------------------------------------
    def _stager(self, category: str, bucket: list[Any], info: PluginInfo) -> Callable[[Any], None]:
        def register(record: Any) -> None:
            expected = record_types()[category]
            if not isinstance(record, expected):
                raise PluginError(
                    f"register() for {category} expects a {expected.__name__}, got {type(record).__name__}"
                )
            name = getattr(record, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"register() for {category} expects a record with a non-empty str .name")
            bucket.append(record)

        return register

    def _first_clash(self, staged: Mapping[str, list[Any]], info: PluginInfo) -> str | None:
        for category, records in staged.items():
            seen: set[str] = set()
            for record in records:
                if record.name in seen:
                    return f"registers two {category} named {record.name!r}"
                seen.add(record.name)
                taken = self.entries[category].get(record.name)
                if taken is not None:
                    other = taken.plugin
                    return (
                        f"{category[:-1]} {record.name!r} is registered by two plugins: {other.name!r} "
                        f"({other.distribution}) and {info.name!r} ({info.distribution}); rename one or block one "
                        f"with {BLOCK_ENV}"
                    )
        return None

    def _fail(self, info: PluginInfo, message: str) -> PluginInfo:
        info.error = message
        info.traceback = traceback.format_exc()
        self.plugins[info.name] = info
        return info


def _name_and_version(dist: metadata.Distribution | None) -> tuple[str, str]:
    """A distribution's name and version from one parse of its metadata (every ``Distribution.metadata`` access
    parses the file again, 1-2 ms)."""
    if dist is None:
        return "?", "?"
    meta = dist.metadata
    return meta["Name"], meta["Version"]


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built from the entry points on first use."""
    global _registry
    if _registry is None:
        registry = Registry()
        registry.load_entry_points()
        _registry = registry
    return _registry


@contextmanager
def transient_plugins() -> Iterator[None]:
    """Plugins registered in code inside the block (a command's ``--plugin`` files) are removed from the
    process-wide registry when it ends, so one command's plugins never show up in the next command run in the same
    process (tests, notebooks, ``flowlab.cli.main``)."""
    before = set() if _registry is None else set(_registry.plugins)
    try:
        yield
    finally:
        registry = _registry
        if registry is not None:
            for name, info in list(registry.plugins.items()):
                if name not in before and info.distribution == IN_CODE:
                    registry.remove_plugin(name)


def reset_registry(registry: Registry | None = None) -> None:
    """Forget the process-wide registry (it is rebuilt on next use), or replace it with ``registry``."""
    global _registry
    _registry = registry


def import_file(path: str | os.PathLike[str]) -> ModuleType:
    """Import the Python file ``path`` as a module (:class:`~flowlab.errors.PluginError` if missing or failing)."""
    file = Path(path)
    spec = importlib.util.spec_from_file_location(f"flowlab_plugin_file_{file.stem}", file)
    if not file.is_file() or spec is None or spec.loader is None:
        raise PluginError(f"plugin file {str(file)!r} not found (expected a .py file with @flowlab.hookimpl hooks)")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise PluginError(f"plugin file {str(file)!r} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def load_plugin_file(path: str | os.PathLike[str]) -> object:
    """The plugin in the Python file ``path``: its ``PLUGIN`` attribute if it has one, else the module itself.

    For plugins that are not installed (tests, experiments, ``flowlab check --plugin FILE``); register the result
    with :meth:`Registry.add_plugin`.
    """
    module = import_file(path)
    return getattr(module, "PLUGIN", module)


def load_plugin_files(paths: Sequence[str]) -> None:
    """Register the plugin of each Python file in ``paths`` with the process-wide registry (``--plugin FILE`` of
    every command, and the workers of ``flowlab check -n``); :class:`~flowlab.errors.PluginError` (a usage error:
    exit 2) naming the file if one does not load or its hooks fail."""
    registry = get_registry()
    for path in paths:
        info = registry.add_plugin(load_plugin_file(path), f"file:{path}")
        if not info.ok:
            raise PluginError(f"plugin file {path!r}: {info.error}")
