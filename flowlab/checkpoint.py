"""The checkpoint file: written atomically, read with ``torch.load(weights_only=True)`` only, checked on load.

A checkpoint is a dict of plain data and tensors (nothing that needs unpickling of arbitrary classes)::

    format          "flowlab-checkpoint"
    format_version  FORMAT_VERSION (a reader refuses other versions)
    config          the run's configuration (flow name and options, dataset, seed, budget; see TrainConfig)
    dim, step       the flow's dimension and the number of optimizer steps taken
    model           the Flow's state_dict
    optimizer       the optimizer's state_dict
    generators      states of the torch.Generators the flow holds (e.g. Hutchinson probes), for an exact resume
    history         [{"step", "loss", "validation_nll", "train_nll", "lr", "nfe"}...] at each evaluation
                    ("test_nll" instead of the two NLLs for a stream, which has no validation split)
    plugin_files    absolute paths of the --plugin files the run's flow, dataset or objective came from (may be
                    absent: older checkpoints)
    versions        library versions that wrote it (flowlab, torch, python)

A run folder (``flowlab train --out DIR``) holds ``last.pt`` and ``best.pt`` (the lowest validation NLL) for a
run on a finite dataset, ``checkpoint.pt`` for a run on a stream; :func:`resolve_run` says which file a command
reads.

Every problem with a file (missing, truncated, corrupted, not a checkpoint, another format version) raises
:class:`~flowlab.errors.CheckpointError` saying what was expected; reading never modifies the file.

Loading a trained flow (:func:`load_flow`) rebuilds it from the recorded configuration
(:func:`flowlab.runconfig.build_flow`) and loads the saved parameters; a flow, dataset or option that the installed
flowlab does not have, or parameters that do not fit, are :class:`~flowlab.errors.CheckpointError` too
(:func:`installed`, :func:`load_state`).
"""

from __future__ import annotations

import os
import platform
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowlab.datafiles import DataFileError, is_path, relocated, resolve_dataset
from flowlab.errors import CheckpointError, OptionError, UnknownFlowError
from flowlab.flow import Flow
from flowlab.runconfig import TrainConfig, build_flow, resolve_device

#: a run folder's checkpoints: on a finite dataset the last and the best (by validation NLL); on a stream the last
LAST, BEST, CHECKPOINT = "last.pt", "best.pt", "checkpoint.pt"
#: how the registry names a plugin loaded from a file (``flowlab.plugins.load_plugin_files``)
FILE_PLUGIN = "file:"
FORMAT = "flowlab-checkpoint"
FORMAT_VERSION = 1
#: what flowlab says instead of torch's advice to retry with weights_only=False
WEIGHTS_ONLY = (
    "flowlab reads checkpoints with torch.load(weights_only=True) only: unpickling anything else can run arbitrary "
    "code, so do not load such a file otherwise unless you trust its source"
)
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "config": dict,
    "dim": int,
    "step": int,
    "model": dict,
    "optimizer": dict,
    "generators": dict,
    "history": list,
    "versions": dict,
}


def library_versions() -> dict[str, str]:
    """The versions a checkpoint records."""
    from flowlab import __version__

    return {"flowlab": __version__, "torch": str(torch.__version__), "python": platform.python_version()}


def atomic_write(path: str | os.PathLike[str], write: Any) -> None:
    """Call ``write(tmp_path)`` for a temporary file beside ``path``, then rename it onto ``path`` (``os.replace``
    is atomic on POSIX and Windows): readers see the old file or the new one, never a partial one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the mode open() would
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` (the keys of :data:`REQUIRED`) with the format header and library versions, atomically."""
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload, "versions": library_versions()}
    atomic_write(path, lambda tmp: torch.save(data, tmp))


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and check a checkpoint (tensors on the CPU). Raises :class:`CheckpointError` on any problem."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"{source}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # e.g. torch's warning about an unexpected pickle protocol
            warnings.simplefilter("ignore")
            data = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # an untrusted file can make the unpickler fail in any way
        if "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{source}: refused to load it: it holds objects other than tensors and plain data, so it is not a "
                f"flowlab checkpoint ({_unpickler_reason(exc)}); {WEIGHTS_ONLY}"
            ) from None
        if "Weights only load failed" in str(exc):  # torch's message goes on to suggest weights_only=False
            raise CheckpointError(
                f"{source}: not a readable checkpoint (truncated or corrupted?): {_unpickler_reason(exc)}; "
                f"{WEIGHTS_ONLY}"
            ) from None
        raise CheckpointError(
            f"{source}: not a readable checkpoint (truncated or corrupted?): {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{source}: not a flowlab checkpoint (expected a dict with format={FORMAT!r}, got {type(data).__name__})"
        )
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        written_by = data.get("versions", {}).get("flowlab", "?") if isinstance(data.get("versions"), dict) else "?"
        raise CheckpointError(
            f"{source}: checkpoint format version {version!r} (written by flowlab {written_by}); this flowlab reads "
            f"version {FORMAT_VERSION} only"
        )
    for key, kind in REQUIRED.items():
        if not isinstance(data.get(key), kind):
            raise CheckpointError(
                f"{source}: damaged checkpoint: expected {key!r} to be a {kind}, got {data.get(key)!r}"
            )
    return data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unpickler_reason(exc: BaseException) -> str:
    """What torch's long weights-only message says was refused, without its advice on loading the file anyway."""
    _, found, rest = str(exc).partition("WeightsUnpickler error:")
    reason = " ".join(rest.split(". Please use")[0].split("Check the documentation")[0].split()).rstrip(".")
    return reason if found and reason else "the weights-only unpickler rejected it"


def config_from(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> TrainConfig:
    """The :class:`~flowlab.runconfig.TrainConfig` stored in a checkpoint (:class:`CheckpointError` if it is not a
    valid one)."""
    try:
        return TrainConfig.from_dict(checkpoint["config"])
    except (TypeError, OptionError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint config: {exc}") from None


@contextmanager
def installed(path: str | os.PathLike[str], plugin_files: Sequence[str] = ()) -> Iterator[None]:
    """Around rebuilding a checkpoint's flow and dataset: a flow or dataset that is not installed, a data file that
    cannot be read, or options the installed flow rejects become a :class:`CheckpointError` naming ``path``; for a
    missing flow it says how to bring it back (``plugin_files``: the ``--plugin`` files the run was trained with,
    the checkpoint's ``plugin_files``)."""
    try:
        yield
    except UnknownFlowError as exc:
        again = " ".join(f"--plugin {file}" for file in plugin_files)
        hint = (
            f"it was trained with {again}: give that again"
            if plugin_files
            else "a flow from a plugin file needs that file again (--plugin FILE); one from an installed plugin needs "
            "that plugin installed"
        )
        raise CheckpointError(
            f"{path}: the checkpoint needs a flow or dataset that is not installed: {exc} ({hint})"
        ) from None
    except DataFileError as exc:
        raise CheckpointError(f"{path}: the checkpoint's data file: {exc}") from None
    except OptionError as exc:
        raise CheckpointError(f"{path}: the checkpoint's options are not valid for the installed flow: {exc}") from None


def load_state(flow: Flow, checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Load the checkpoint's parameters into ``flow`` (:class:`CheckpointError` if they do not fit)."""
    try:
        flow.load_state_dict(checkpoint["model"])
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: the saved parameters do not fit the installed flow ({first})") from None


def generator_states(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state of every ``torch.Generator`` a submodule holds as an attribute (e.g. the generator an ODE flow
    draws its Hutchinson probes from), keyed ``"submodule.attribute"``. Not part of ``state_dict``, yet needed for
    an exact resume."""
    return {
        f"{name}.{attribute}": value.get_state()
        for name, submodule in module.named_modules()
        for attribute, value in vars(submodule).items()
        if isinstance(value, torch.Generator)
    }


def set_generator_states(module: nn.Module, states: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """Restore what :func:`generator_states` saved (:class:`CheckpointError` if the generators do not match)."""
    current = generator_states(module)
    if set(current) != set(states):
        raise CheckpointError(
            f"{path}: the checkpoint has random generators {sorted(states)}, the installed flow {sorted(current)}"
        )
    submodules = dict(module.named_modules())
    for key, state in states.items():
        name, attribute = key.rsplit(".", 1)
        getattr(submodules[name], attribute).set_state(state)


def load_flow(
    path: str | os.PathLike[str], device: str | torch.device = "cpu", data: str | None = None
) -> tuple[Flow, TrainConfig, dict[str, Any]]:
    """The trained flow saved at ``path`` (a checkpoint file; in eval mode, on ``device``), its config and the raw
    checkpoint; every problem is a :class:`CheckpointError` (nothing is written). ``data``: where the data file of a
    run made on a file is now, if it moved (canonical, :func:`flowlab.datafiles.canonical`; accepted when its
    SHA-256 is the recorded one, and the config then names it); ignored for a run on a registered dataset."""
    target = resolve_device(device)
    checkpoint = read_checkpoint(path)
    config = config_from(checkpoint, path)
    if data is not None and is_path(config.data):
        config = replace(config, data=relocated(config.data, data))
    with installed(path, recorded_plugin_files(checkpoint)):
        flow = build_flow(config.flow, checkpoint["dim"], config.options, resolve_dataset(config.data).preprocessing())
    load_state(flow, checkpoint, path)
    return flow.to(target).eval(), config, checkpoint


def recorded_plugin_files(checkpoint: dict[str, Any]) -> list[str]:
    """The ``--plugin`` files a checkpoint says its run was trained with (none for an older checkpoint)."""
    files = checkpoint.get("plugin_files", [])
    return [str(file) for file in files] if isinstance(files, list) else []


def plugin_files(plugins: Iterable[str]) -> list[str]:
    """The absolute paths of the plugin files among the registry's plugin names ``plugins`` (``file:PATH``)."""
    return sorted({str(Path(name[len(FILE_PLUGIN) :]).resolve()) for name in plugins if name.startswith(FILE_PLUGIN)})


def resolve_run(path: str | os.PathLike[str], which: str = "best") -> tuple[Path, str]:
    """The checkpoint file a command reads for ``path``, and which it is: a file as it is (``"file"``); in a run
    folder its ``best.pt`` (``"best"``, the default, where the run has one: a finite dataset's, by validation NLL),
    else its last checkpoint (``"last"``: ``last.pt``, or the ``checkpoint.pt`` of a run on a stream), also when
    ``which="last"``. A :class:`CheckpointError` if there is none."""
    if which not in ("best", "last"):
        raise OptionError(f"expected the best or the last checkpoint of a run, got {which!r}")
    source = Path(path)
    if not source.is_dir():
        if not source.exists():
            raise CheckpointError(f"{source}: no such checkpoint file or run folder")
        return source, "file"
    if which == "best" and (source / BEST).is_file():
        return source / BEST, "best"
    return latest_checkpoint(source), "last"


def step_score(checkpoint: dict[str, Any]) -> tuple[str, float] | None:
    """What the run scored at the checkpoint's step: ``("validation", NLL)`` on a finite dataset, ``("held-out",
    NLL)`` on a stream (its held-out draws); ``None`` where it was not evaluated at that step."""
    entry: dict[str, Any] = next(
        (entry for entry in checkpoint["history"] if entry.get("step") == checkpoint["step"]), {}
    )
    for key, name in (("validation_nll", "validation"), ("test_nll", "held-out")):
        if key in entry:
            return name, float(entry[key])
    return None


def run_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The evaluations of a whole run: the history of a run folder's last checkpoint (its best one stops at the best
    step), or of the checkpoint file ``path``."""
    source = Path(path)
    history: list[dict[str, Any]] = read_checkpoint(latest_checkpoint(source) if source.is_dir() else source)["history"]
    return history


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path:
    """A run folder's last checkpoint (``last.pt``, or a stream run's ``checkpoint.pt``); a
    :class:`CheckpointError` if the folder has none."""
    folder = Path(directory)
    for name in (LAST, CHECKPOINT):
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(
        f"{folder}: no checkpoint in this run folder (expected {LAST} or {CHECKPOINT}, written by flowlab train)"
    )
