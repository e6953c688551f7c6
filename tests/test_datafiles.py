"""Datasets from files (``--data PATH``): reading .npy/.npz/.csv/.txt, one-line errors for malformed files, the
fixed split, standardisation with its log-det counted, the path and content hash recorded for eval and resume, a
run whose file moved found again by ``--data NEW_PATH``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import flowlab
from flowlab.checkpoint import read_checkpoint
from flowlab.checks.measure import batch_jacobian
from flowlab.cli import main
from flowlab.datafiles import FINGERPRINT, DataFileError, canonical, file_dataset, resolve_dataset, short_name
from flowlab.ode import continuous_flow
from flowlab.preprocess import Preprocessed, Standardize

TINY = ["--flow", "affine", "--steps", "2", "--batch-size", "16", "--eval-every", "2"]


def rows(n: int = 60, seed: int = 0) -> np.ndarray:
    """Points of very different scales and offsets per column (so standardisation matters)."""
    return np.random.default_rng(seed).normal(size=(n, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -50.0]


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "my.npy"
    np.save(path, rows())
    return path


def test_npy_npz_csv_and_txt_give_the_same_dataset(tmp_path, npy):
    csv, txt, npz, several = (tmp_path / name for name in ("my.csv", "my.txt", "my.npz", "several.npz"))
    np.savetxt(csv, rows(), delimiter=",", header="a,b,c", comments="", fmt="%.17g")
    np.savetxt(txt, rows(), header="a b c  (whitespace-separated, a comment line)", fmt="%.17g")
    np.savez(npz, rows())
    np.savez(several, labels=np.arange(60), x=rows())
    a = file_dataset(str(npy))
    for other in (
        file_dataset(str(csv)),
        file_dataset(str(txt)),
        file_dataset(str(npz)),
        file_dataset(str(several), "x"),
    ):
        assert other.dim == a.dim == 3 and other.finite and not other.discrete
        for part in ("train", "validation", "test"):
            assert torch.equal(other.split().part(part)[0], a.split().part(part)[0]), (other.name, part)
    assert (len(a.split().train), len(a.split().validation), len(a.split().test)) == (42, 6, 12)


def test_training_draws_are_training_rows_and_test_points_the_test_rows(npy):
    spec = file_dataset(str(npy))
    x = spec.sample(500, torch.Generator().manual_seed(0))
    train = {tuple(r) for r in spec.split().train.tolist()}
    assert all(tuple(r) in train for r in x.tolist())
    assert torch.equal(spec.test_points(99, torch.Generator()), spec.split().test)


@given(seed=st.integers(0, 2**16), dim=st.integers(1, 4), batch=st.integers(1, 6))
def test_standardize_inverts_and_its_log_dets_are_the_autograd_jacobians(seed, dim, batch):
    g = torch.Generator().manual_seed(seed)
    bijector = Standardize(
        torch.randn(dim, generator=g, dtype=torch.float64), torch.rand(dim, generator=g).double() + 0.1
    )
    x = 10 * torch.randn(batch, dim, generator=g, dtype=torch.float64)
    y, inverse_ladj = bijector.inverse(x)
    back, forward_ladj = bijector(y)
    assert torch.allclose(back, x, atol=1e-10, rtol=1e-12)
    expected = torch.linalg.slogdet(batch_jacobian(lambda v: bijector.inverse(v)[0], x))[1]
    assert torch.allclose(inverse_ladj, expected, atol=1e-12) and torch.allclose(forward_ladj, -inverse_ladj)


def test_the_density_of_the_file_is_the_model_density_of_the_standardised_rows_over_prod_std(npy):
    """``log q(x) = log q_y((x − m)/s) − Σ log s``: the standardisation's log-det is counted (NLL in file units)."""
    spec = file_dataset(str(npy))
    transform = spec.preprocessing()
    assert isinstance(transform, Standardize)
    learned = flowlab.build("affine", 3)
    x = spec.split().test
    expected = flowlab.Flow(learned).log_prob((x - transform.mean) / transform.std) - transform.std.log().sum()
    assert torch.allclose(flowlab.Flow(Preprocessed(learned, transform)).log_prob(x), expected, atol=1e-4)


def write(tmp_path, name: str, content: object) -> str:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, dict):
        np.savez(path, **content)
    else:
        np.save(path, content)
    return str(path)


MALFORMED = {
    "one_row.npy": (rows(1), "expected at least 6 rows"),
    "nan.npy": (
        np.array([[1.0, np.nan], [2, 3], [4, 5], [6, 7]]),
        "expected finite numbers, got nan at row 1, column 2",
    ),
    "inf.csv": ("1,2\n3,inf\n5,6\n7,8\n", "expected finite numbers, got inf at row 2, column 2"),
    "strings.npy": (np.array([["a", "b"]] * 5), "expected a numeric array"),
    "ragged.csv": ("1,2\n3,4,5\n6,7\n8,9\n", "ragged rows: line 2 has 3 fields, the first row 2"),
    "text.csv": ("x,y\n1,2\n3,oops\n5,6\n7,8\n", "expected numbers, got 'oops' on line 3"),
    "flat.npy": (np.arange(10.0), r"expected a 2-D array \[rows, columns\], got shape \(10,\)"),
    "constant.npy": (np.c_[np.arange(10.0), np.ones(10)], r"column\(s\) 2 are constant"),
    "header_only.csv": ("a,b\n", "got no data rows"),
    "table.json": ("[1, 2]\n", "expected a .npy, .npz, .csv, .txt file, got .json"),
    "broken.npy": ("not an npy file", "not a readable .npy array"),
    "broken.npz": ("not an npz file", "not a readable .npz archive"),
    "two.npz": ({"a": rows(), "b": rows()}, r"holds 2 arrays \(a, b\): choose one with --key NAME"),
    "text.txt": ("1 2\n3 oops\n5 6\n7 8\n9 10\n11 12\n", "expected numbers, got 'oops' on line 2"),
    # beyond float32 (flowlab trains in float32): not "constant" as a float32 standard deviation of inf made it
    "huge.npy": (
        np.c_[np.arange(10.0), np.arange(10.0) * 1e300],
        r"column 2 has values up to 9e\+300 \(row 10\), beyond float32's range",
    ),
    "float32_max.csv": (
        "\n".join(f"{i},{i}e39" for i in range(10)),
        r"column 2 has values up to 9e\+39 .*beyond float32's range",
    ),
    "tiny.npy": (np.c_[np.arange(10.0), np.arange(10.0) * 1e-50], r"column 2 standardised in float32.*is not finite"),
    "offset.npy": (
        np.c_[np.arange(10.0), 1e10 + np.arange(10.0) * 1e-3],
        r"column 2 varies by 0.00286 around 1e\+10, finer than float32 resolves",
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_file_is_a_one_line_usage_error_and_nothing_is_written(tmp_path, capsys, name):
    content, message = MALFORMED[name]
    path = write(tmp_path, name, content)
    before = (tmp_path / name).read_bytes()
    with pytest.raises(DataFileError, match=message):
        file_dataset(path)
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", path, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and path in err
    assert not out.exists() and (tmp_path / name).read_bytes() == before


def test_a_missing_file_is_named(tmp_path, capsys):
    assert main(["train", *TINY, "--data", str(tmp_path / "nope.npy"), "--out", str(tmp_path / "r")]) == 2
    assert "nope.npy: cannot read the data file" in capsys.readouterr().err


def test_key_names_an_array_of_an_npz_and_is_recorded(tmp_path, capsys):
    several = tmp_path / "several.npz"
    np.savez(several, labels=np.arange(60), x=rows())
    assert main(["train", *TINY, "--data", str(several), "--key", "x", "--out", str(tmp_path / "run")]) == 0
    data = read_checkpoint(tmp_path / "run" / "last.pt")["config"]["data"]
    assert data.startswith(f"{several}#key=x{FINGERPRINT}") and short_name(data) == "several.npz[x]"
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == f"{several}[x]"
    for key, message in (("y", "no array 'y'; it holds labels, x"), (None, "choose one with --key NAME")):
        with pytest.raises(DataFileError, match=message):
            file_dataset(str(several), key)
    with pytest.raises(DataFileError, match=r"--key x selects an array of an \.npz file"):
        file_dataset(str(tmp_path / "x.npy"), "x")


def test_train_on_a_file_records_it_and_eval_finds_it_from_elsewhere_until_it_changes(
    tmp_path, npy, capsys, monkeypatch
):
    before = npy.read_bytes()
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, "--data", "my.npy", "--out", "run"]) == 0
    assert npy.read_bytes() == before, "the data file is only read"
    checkpoint = str(tmp_path / "run" / "last.pt")
    data = torch.load(checkpoint, weights_only=True)["config"]["data"]
    assert data == canonical(str(npy)) and data.startswith(str(npy.resolve()) + FINGERPRINT)
    monkeypatch.chdir(tmp_path.parent)
    capsys.readouterr()
    assert main(["eval", checkpoint, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 12 and result["data"] == str(npy.resolve())
    assert result["bits_per_dim"] == pytest.approx(result["nll_nats"] / (3 * math.log(2)))
    np.save(npy, rows(seed=1))
    assert main(["eval", checkpoint]) == 1
    assert "the file changed since the run was made" in capsys.readouterr().err
    with pytest.raises(DataFileError, match="changed"):
        resolve_dataset(data)


def test_a_run_whose_file_moved_is_found_again_by_data_new_path(tmp_path, npy, capsys):
    run = str(tmp_path / "run")
    assert main(["train", *TINY, "--data", str(npy), "--out", run]) == 0
    moved = tmp_path / "elsewhere" / "renamed.npy"
    moved.parent.mkdir()
    npy.rename(moved)
    capsys.readouterr()
    assert main(["eval", run]) == 1  # without --data: where is it?
    err = " ".join(capsys.readouterr().err.split())
    assert "is not there (moved or deleted?); if it moved, give its new path with --data PATH" in err
    assert main(["eval", run, "--data", str(moved), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == str(moved)
    assert main(["sample", run, "--data", str(moved), "-n", "5", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (5, 3)
    assert main(["train", "--resume", "--out", run, "--steps", "4", "--data", str(moved)]) == 0
    assert read_checkpoint(tmp_path / "run" / "last.pt")["config"]["data"] == canonical(str(moved))
    other = tmp_path / "other.npy"
    np.save(other, rows(seed=1))
    capsys.readouterr()
    for command in (["eval", run], ["train", "--resume", "--out", run, "--steps", "5"]):
        assert main([*command, "--data", str(other)]) == 2, command
        assert "not the file the run was made with" in " ".join(capsys.readouterr().err.split())


def test_an_ode_flow_behind_a_transform_is_found_as_the_continuous_flow_it_runs():
    """The trainer, the CLI and the checks read an ODE flow's regulariser, NFE and field through
    ``flowlab.ode.continuous_flow``: behind ``Preprocessed`` that is the learned flow (model space); a discrete
    flow behind it is not continuous."""
    learned = flowlab.build("cnf", 2)
    wrapped = Preprocessed(learned, Standardize(torch.zeros(2), torch.full((2,), 2.0)))
    flowlab.Flow(wrapped).log_prob(torch.randn(3, 2))
    assert continuous_flow(wrapped) is learned and learned.nfe > 0
    assert continuous_flow(Preprocessed(flowlab.build("affine", 2), Standardize(torch.zeros(2), torch.ones(2)))) is None
    assert not hasattr(wrapped, "nfe"), "nothing is forwarded by attribute: the protocol says what is read"


def test_a_column_of_huge_values_within_float32_trains(tmp_path):
    """Values ~1e30 used to overflow the float32 standard deviation ("constant"); standardised in float64 they
    train like any column, in the file's units."""
    path = tmp_path / "huge.npy"
    np.save(path, rows() * [1.0, 1e30, 1.0])
    spec = file_dataset(str(path))
    transform = spec.preprocessing()
    assert transform is not None and 5e30 < float(transform.std[1]) < 2e31
    y, _ = transform.inverse(spec.split().test)
    assert bool(torch.isfinite(y).all()) and float(y.abs().max()) < 10
