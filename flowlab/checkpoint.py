"""The checkpoint file: written atomically, read with ``torch.load(weights_only=True)`` only, checked on load.

A checkpoint is a dict of plain data and tensors (nothing that needs unpickling of arbitrary classes)::

    format          "flowlab-checkpoint"
    format_version  FORMAT_VERSION (a reader refuses other versions)
    config          the run's configuration (flow name and options, dataset, seed, budget; see TrainConfig)
    dim, step       the flow's dimension and the number of optimizer steps taken
    model           the Flow's state_dict
    optimizer       the optimizer's state_dict
    generators      states of the torch.Generators the flow holds (e.g. Hutchinson probes), for an exact resume
    history         [{"step", "loss", "test_nll", "nfe"}...] at each evaluation
    versions        library versions that wrote it (flowlab, torch, python)

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowlab.datafiles import DataFileError, resolve_dataset
from flowlab.errors import CheckpointError, OptionError, UnknownFlowError
from flowlab.flow import Flow
from flowlab.runconfig import TrainConfig, build_flow, resolve_device

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
def installed(path: str | os.PathLike[str]) -> Iterator[None]:
    """Around rebuilding a checkpoint's flow and dataset: a flow or dataset that is not installed, a data file that
    cannot be read, or options the installed flow rejects become a :class:`CheckpointError` naming ``path``."""
    try:
        yield
    except UnknownFlowError as exc:
        raise CheckpointError(f"{path}: the checkpoint needs a flow or dataset that is not installed: {exc}") from None
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
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[Flow, TrainConfig, dict[str, Any]]:
    """The trained flow saved at ``path`` (in eval mode, on ``device``), its config and the raw checkpoint; every
    problem is a :class:`CheckpointError` (nothing is written)."""
    target = resolve_device(device)
    checkpoint = read_checkpoint(path)
    config = config_from(checkpoint, path)
    with installed(path):
        flow = build_flow(config.flow, checkpoint["dim"], config.options, resolve_dataset(config.data).preprocessing())
    load_state(flow, checkpoint, path)
    return flow.to(target).eval(), config, checkpoint
