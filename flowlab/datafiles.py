"""Datasets from the user's own files: ``--data PATH`` for a ``.npy`` array, an ``.npz`` archive (its one array, or
the one ``--key NAME`` names), a ``.csv`` table or a whitespace-separated ``.txt`` table of rows.

A file becomes a finite :class:`~flowlab.data.DatasetSpec`: its rows (float32) are split once into train,
validation and test rows (:meth:`flowlab.data.Split.of`, a fixed permutation: the same file always gives the same
split), the training batches are rows drawn with replacement, and the flow learns the standardised points
``y = (x − mean) / std`` (train rows' column means and sample standard deviations, computed in float64,
:class:`~flowlab.preprocess.Standardize`) with the log-det ``−Σ_j log std_j`` counted, so NLLs are densities of
the rows in the file's own units.

Which file a run used is recorded in its configuration as ``ABSOLUTE_PATH[#key=NAME]#sha256=DIGEST``
(:func:`canonical`): ``eval``, ``sample``, ``plot`` and ``train --resume`` read the same file and refuse one whose
content changed; a file that moved is found again by ``--data NEW_PATH``, accepted when its SHA-256 is the
recorded one (:func:`relocated`). The file is only ever read.

A file that cannot be used is a :class:`DataFileError` in one line: missing or unreadable, another suffix, not
numeric (the field and its line), ragged rows, NaN or inf (where), not 2-D, an ``.npz`` with several arrays and no
``--key`` (or a key it does not have), too few rows for the split, a constant column, a column beyond float32's
range (flowlab trains in float32), a column that standardised in float32 is not finite or loses its variation.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch

from flowlab.data import DatasetSpec, Split, finite_dataset, min_rows, split_indices, split_sizes_text
from flowlab.errors import OptionError
from flowlab.preprocess import Standardize
from flowlab.registry import dataset_spec, datasets

SUFFIXES = (".npy", ".npz", ".csv", ".txt")
FINGERPRINT = "#sha256="
#: how a recorded reference names the array of an ``.npz`` file: ``PATH#key=NAME#sha256=DIGEST``
KEY = "#key="
#: the largest float32: flowlab trains in float32, so every value and every standardised value must fit
FLOAT32_MAX = float(np.finfo(np.float32).max)


class DataFileError(OptionError):
    """A data file that cannot be used: missing, unreadable, malformed, or changed since a run recorded it."""


def is_path(data: str) -> bool:
    """Whether ``data`` names a file rather than a registered dataset: a registered name wins; otherwise a
    recorded fingerprint or key, a data-file suffix or a path separator makes it a path."""
    if data in datasets():
        return False
    path, key, _ = parse(data)
    return key is not None or FINGERPRINT in data or Path(path).suffix.lower() in SUFFIXES or "/" in data


def parse(data: str) -> tuple[str, str | None, str | None]:
    """``PATH[#key=NAME][#sha256=DIGEST]`` -> ``(PATH, NAME or None, DIGEST or None)``."""
    rest, _, digest = data.partition(FINGERPRINT)
    path, has_key, key = rest.partition(KEY)
    return path, (key if has_key else None), (digest or None)


def resolve_dataset(data: str) -> DatasetSpec:
    """The dataset ``data`` names: a registered one, or the file at a path (with a recorded fingerprint checked)."""
    if not is_path(data):
        return dataset_spec(data)
    path, key, expected = parse(data)
    if expected is not None and not Path(path).is_file():
        raise DataFileError(
            f"{path}: the run's data file is not there (moved or deleted?); if it moved, give its new path with "
            f"--data PATH (accepted if its sha256 is the recorded {expected[:12]}…)"
        )
    digest = fingerprint(path)
    if expected is not None and digest != expected:
        raise DataFileError(
            f"{path}: the file changed since the run was made (sha256 {expected[:12]}… then, {digest[:12]}… now); "
            "restore it or train a new run on it"
        )
    return file_dataset(path, key)


def canonical(data: str, key: str | None = None) -> str:
    """How a run records ``data``: a registered name as it is; a file as ``ABSOLUTE_PATH[#key=NAME]#sha256=DIGEST``
    (``key``: the array of an ``.npz`` file, ``--key NAME``)."""
    if not is_path(data):
        if key is not None:
            raise DataFileError(f"--key {key}: selects an array of an .npz file; {data!r} is a registered dataset")
        return data
    if FINGERPRINT in data:
        return data
    path, named, _ = parse(data)
    key = named if key is None else key
    absolute = str(Path(path).resolve())
    return f"{absolute}{'' if key is None else KEY + key}{FINGERPRINT}{fingerprint(absolute)}"


def relocated(recorded: str, given: str) -> str:
    """The reference a run made on the file ``recorded`` uses when told its data are ``given`` (a canonical
    reference): a file that moved (the same SHA-256 and key at another path) is accepted at its new path; anything
    else is a :class:`DataFileError` (the run was made on other data)."""
    path, key, digest = parse(recorded)
    new_path, new_key, new_digest = parse(given)
    if not is_path(given) or new_digest != digest or new_key != key:
        what = f"sha256 {digest and digest[:12]}… recorded, {new_digest and new_digest[:12]}… given"
        what += "" if new_key == key else f"; array {key!r} recorded, {new_key!r} given"
        raise DataFileError(f"{new_path}: not the file the run was made with ({path}; {what})")
    return given


def display_name(data: str) -> str:
    """``data`` without its fingerprint, for tables and JSON: the name, or the file's absolute path (with
    ``[NAME]`` for an ``.npz`` array)."""
    path, key, _ = parse(data)
    return path if key is None else f"{path}[{key}]"


def short_name(data: str) -> str:
    """``data`` for a picture's title or a run's default folder: a registered name, or the file's name (with
    ``[NAME]`` for an ``.npz`` array), never its directories."""
    if not is_path(data):
        return data
    path, key, _ = parse(data)
    return Path(path).name if key is None else f"{Path(path).name}[{key}]"


def fingerprint(path: str) -> str:
    """The SHA-256 of the file's bytes (hex)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(partial(handle.read, 1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read the data file ({exc.strerror or exc})") from None
    return digest.hexdigest()


def read_rows(path: str, key: str | None = None) -> np.ndarray:
    """The file's rows as a float64 array ``[n, dim]``, or a :class:`DataFileError` saying what is wrong."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise DataFileError(f"{path}: expected a {', '.join(SUFFIXES)} file, got {suffix or 'no suffix'}")
    if key is not None and suffix != ".npz":
        raise DataFileError(f"{path}: --key {key} selects an array of an .npz file, this is a {suffix} file")
    if suffix == ".npy":
        array = numeric(path, _load_npy(path))
    elif suffix == ".npz":
        array = _read_npz(path, key)
    else:
        array = _read_table(path, suffix)
    if array.ndim != 2:
        raise DataFileError(f"{path}: expected a 2-D array [rows, columns], got shape {tuple(array.shape)}")
    bad = ~np.isfinite(array)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise DataFileError(
            f"{path}: expected finite numbers, got {array[row, column]} at row {row + 1}, column {column + 1} "
            f"({int(bad.sum())} non-finite value(s) in all)"
        )
    return array


def _load_npy(path: str) -> object:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataFileError(f"{path}: not a readable .npy array ({_first_line(exc)})") from None


def numeric(path: str, array: object, what: str = "a numeric array") -> np.ndarray:
    """``array`` as float64 if it is an array of integers or floats, else a :class:`DataFileError`."""
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        kind = getattr(array, "dtype", type(array).__name__)
        raise DataFileError(f"{path}: expected {what} (integers or floats), got dtype {kind}")
    return array.astype(np.float64)


def _read_npz(path: str, key: str | None) -> np.ndarray:
    """The one array of an ``.npz`` archive, or the one called ``key``."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if key is None and len(names) != 1:
                raise DataFileError(
                    f"{path}: holds {len(names)} arrays ({', '.join(names) or 'none'}): choose one with --key NAME"
                )
            if key is not None and key not in names:
                raise DataFileError(f"{path}: no array {key!r}; it holds {', '.join(names) or 'none'}")
            chosen = names[0] if key is None else key
            return numeric(path, archive[chosen], f"array {chosen!r} to be numeric")
    except (OSError, ValueError, EOFError) as exc:
        raise DataFileError(f"{path}: not a readable .npz archive ({_first_line(exc)})") from None


def _read_table(path: str, suffix: str) -> np.ndarray:
    """Numbers in rows, one row per line: comma-separated (``.csv``) or separated by whitespace (``.txt``, where
    ``#`` starts a comment); a first line with no number in it is a header; blank lines are skipped."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            fields = csv.reader(handle) if suffix == ".csv" else _whitespace_fields(handle)
            lines = [(number, row) for number, row in enumerate(fields, 1) if any(f.strip() for f in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"{path}: not a readable {suffix} file ({exc})") from None
    if lines and not any(_is_number(field) for field in lines[0][1]):
        lines = lines[1:]
    if not lines:
        raise DataFileError(f"{path}: expected rows of numbers, got no data rows")
    width = len(lines[0][1])
    values = []
    for number, row in lines:
        if len(row) != width:
            raise DataFileError(f"{path}: ragged rows: line {number} has {len(row)} fields, the first row {width}")
        try:
            values.append([float(field) for field in row])
        except ValueError:
            field = next(f for f in row if not _is_number(f))
            raise DataFileError(f"{path}: expected numbers, got {field.strip()!r} on line {number}") from None
    return np.asarray(values, dtype=np.float64)


def _whitespace_fields(lines: Iterable[str]) -> Iterator[list[str]]:
    for line in lines:
        yield line.partition("#")[0].split()


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def file_dataset(path: str, key: str | None = None) -> DatasetSpec:
    """The finite dataset of the rows of the file at ``path`` (the array ``key`` of an ``.npz``), standardised by
    its train split."""
    rows = read_rows(path, key)
    name = path if key is None else f"{path}[{key}]"
    if len(rows) < min_rows():
        raise DataFileError(f"{name}: expected at least {min_rows()} rows ({split_sizes_text()}), got {len(rows)}")
    _check_float32_range(name, rows)
    split = Split.of(torch.from_numpy(rows))
    transform = _standardization(name, rows[split_indices(len(rows))[0].numpy()], split)
    sizes = f"{len(split.train)} to train on, {len(split.validation)} to validate, {len(split.test)} to test"
    return finite_dataset(
        name,
        f"{len(rows)} rows × {rows.shape[1]} columns from {short_name(name)} (standardised)",
        int(rows.shape[1]),
        lambda: split,
        transform=lambda: Standardize(transform.mean, transform.std),
        description=f"Rows of `{name}`: {sizes} (fixed split); the flow learns the standardised points, its NLL is "
        "in the file's units.",
    )


def _check_float32_range(name: str, rows: np.ndarray) -> None:
    """A :class:`DataFileError` naming the first column with a value float32 cannot hold."""
    huge = np.abs(rows) > FLOAT32_MAX
    if huge.any():
        column = int(np.argwhere(huge.any(axis=0))[0][0])
        row = int(np.argmax(np.abs(rows[:, column])))
        value = rows[row, column]
        raise DataFileError(
            f"{name}: column {column + 1} has values up to {value:.3g} (row {row + 1}), beyond float32's range "
            f"(±{FLOAT32_MAX:.3g}), in which flowlab trains: rescale that column (e.g. divide it by "
            f"1e{int(np.log10(abs(value)))})"
        )


def _standardization(name: str, train: np.ndarray, split: Split) -> Standardize:
    """The standardisation of the training rows ``train`` (float64, as read: their means and sample standard
    deviations, then in float32), or a :class:`DataFileError` naming the first column that cannot be standardised:
    constant over the training rows, not finite once standardised in float32 (the rows of ``split``), or varying
    finer than float32 resolves at its values."""
    mean64, std64 = torch.from_numpy(train.mean(axis=0)), torch.from_numpy(train.std(axis=0, ddof=1))
    flat = [j + 1 for j, s in enumerate(std64.tolist()) if not s > 0]
    if flat:
        raise DataFileError(
            f"{name}: column(s) {', '.join(map(str, flat[:5]))} are constant over the training rows: a standardised "
            "density needs every column to vary (drop them)"
        )
    mean, std = mean64.float(), std64.float()
    for j in range(len(std)):
        scaled = torch.cat([(part[:, j] - mean[j]) / std[j] for part in (split.train, split.validation, split.test)])
        if not bool(torch.isfinite(scaled).all()):
            raise DataFileError(
                f"{name}: column {j + 1} standardised in float32, (x − {mean64[j]:.3g}) / {std64[j]:.3g}, is not "
                "finite (its spread is below what float32 represents): rescale that column"
            )
        if float(scaled[: len(split.train)].double().std()) < 0.5:
            spacing = float(np.spacing(np.float32(abs(float(mean[j])))))
            raise DataFileError(
                f"{name}: column {j + 1} varies by {std64[j]:.3g} around {mean64[j]:.3g}, finer than float32 "
                f"resolves there (values {spacing:.3g} apart): subtract an offset from that column"
            )
    return Standardize(mean, std)
