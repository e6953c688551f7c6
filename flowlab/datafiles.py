"""Datasets from the user's own files: ``--data PATH`` for a ``.npy`` array or a ``.csv`` table of rows.

A file becomes a finite :class:`~flowlab.data.DatasetSpec`: its rows (float32) are split once into train and test
rows (:meth:`flowlab.data.Split.of`, a fixed permutation: the same file always gives the same split), the
training batches are rows drawn with replacement, and the flow learns the standardised points
``y = (x − mean) / std`` (train rows' column means and sample standard deviations,
:class:`~flowlab.preprocess.Standardize`) with the log-det ``−Σ_j log std_j`` counted, so NLLs are densities of
the rows in the file's own units.

Which file a run used is recorded in its configuration as ``ABSOLUTE_PATH#sha256=DIGEST`` (:func:`canonical`):
``eval``, ``sample``, ``plot`` and ``train --resume`` read the same file and refuse one whose content changed. The
file is only ever read.

A file that cannot be used is a :class:`DataFileError` in one line: missing or unreadable, another suffix, not
numeric (the field and its line), ragged rows, NaN or inf (where), not 2-D, too few rows for a held-out split, a
constant column (no standardisation).
"""

from __future__ import annotations

import csv
import hashlib
import math
from functools import partial
from pathlib import Path

import numpy as np
import torch

from flowlab.data import MIN_TEST, DatasetSpec, Split, finite_dataset
from flowlab.errors import OptionError
from flowlab.preprocess import Standardize
from flowlab.registry import dataset_spec, datasets

SUFFIXES = (".npy", ".csv")
FINGERPRINT = "#sha256="


class DataFileError(OptionError):
    """A data file that cannot be used: missing, unreadable, malformed, or changed since a run recorded it."""


def is_path(data: str) -> bool:
    """Whether ``data`` names a file rather than a registered dataset: a registered name wins; otherwise a
    recorded fingerprint, a data-file suffix or a path separator makes it a path."""
    if data in datasets():
        return False
    return FINGERPRINT in data or Path(data).suffix.lower() in SUFFIXES or "/" in data


def resolve_dataset(data: str) -> DatasetSpec:
    """The dataset ``data`` names: a registered one, or the file at a path (with a recorded fingerprint checked)."""
    if not is_path(data):
        return dataset_spec(data)
    path, _, expected = data.partition(FINGERPRINT)
    digest = fingerprint(path)
    if expected and digest != expected:
        raise DataFileError(
            f"{path}: the file changed since the run was made (sha256 {expected[:12]}… then, {digest[:12]}… now); "
            "restore it or train a new run on it"
        )
    return file_dataset(path)


def canonical(data: str) -> str:
    """How a run records ``data``: a registered name as it is; a file as ``ABSOLUTE_PATH#sha256=DIGEST``."""
    if not is_path(data) or FINGERPRINT in data:
        return data
    path = str(Path(data).resolve())
    return f"{path}{FINGERPRINT}{fingerprint(path)}"


def display_name(data: str) -> str:
    """``data`` without its fingerprint, for titles and tables."""
    return data.partition(FINGERPRINT)[0]


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


def read_rows(path: str) -> np.ndarray:
    """The file's rows as a float64 array ``[n, dim]``, or a :class:`DataFileError` saying what is wrong."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise DataFileError(f"{path}: expected a .npy or .csv file, got {suffix or 'no suffix'}")
    array = _read_npy(path) if suffix == ".npy" else _read_csv(path)
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


def _read_npy(path: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataFileError(f"{path}: not a readable .npy array ({str(exc).strip().splitlines()[0]})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        kind = getattr(array, "dtype", type(array).__name__)
        raise DataFileError(f"{path}: expected a numeric array (integers or floats), got dtype {kind}")
    return array.astype(np.float64)


def _read_csv(path: str) -> np.ndarray:
    """Comma-separated numbers, one row per line; a first line with no number in it is a header; blank lines are
    skipped."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            lines = [(number, row) for number, row in enumerate(csv.reader(handle), 1) if any(f.strip() for f in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(f"{path}: not a readable .csv file ({exc})") from None
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


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def file_dataset(path: str) -> DatasetSpec:
    """The finite dataset of the rows of the file at ``path``, standardised by its train split."""
    rows = read_rows(path)
    if len(rows) < 2 * MIN_TEST:
        raise DataFileError(
            f"{path}: expected at least {2 * MIN_TEST} rows ({MIN_TEST} to train on, {MIN_TEST} held out), got "
            f"{len(rows)}"
        )
    split = Split.of(torch.from_numpy(rows))
    scale = split.train.std(dim=0)
    flat = [j + 1 for j, s in enumerate(scale.tolist()) if not (s > 0 and math.isfinite(s))]
    if flat:
        raise DataFileError(
            f"{path}: column(s) {', '.join(map(str, flat[:5]))} are constant over the training rows: a "
            "standardised density needs every column to vary (drop them)"
        )
    return finite_dataset(
        path,
        f"{len(rows)} rows × {rows.shape[1]} columns from {Path(path).name} (standardised)",
        int(rows.shape[1]),
        lambda: split,
        transform=lambda: Standardize.fit(split.train),
        description=f"Rows of `{path}`: {len(split.train)} to train on, {len(split.test)} held out (fixed split); "
        "the flow learns the standardised points, its NLL is in the file's units.",
    )
