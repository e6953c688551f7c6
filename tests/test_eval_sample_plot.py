"""``flowlab eval``, ``sample`` and ``plot`` on a tiny checkpoint, and safe loading of bad checkpoint files."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flowlab.checkpoint import FORMAT_VERSION, read_checkpoint, save_checkpoint
from flowlab.cli import main

TINY = ["-o", "blocks=2", "-o", 'block_options={"hidden": 8}', "--batch-size", "32", "--eval-size", "64"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--flow", "stacked", "--data", "moons", "--steps", "3", *TINY, "--out", str(out)]) == 0
    return out / "checkpoint.pt"


def test_checkpoint_records_the_run(checkpoint):
    data = read_checkpoint(checkpoint)
    assert data["format_version"] == FORMAT_VERSION and data["step"] == 3 and data["dim"] == 2
    assert data["config"]["flow"] == "stacked" and data["config"]["data"] == "moons"
    assert data["config"]["options"] == {"blocks": 2, "block_options": {"hidden": 8}}
    assert set(data["versions"]) == {"flowlab", "torch", "python"}
    assert data["optimizer"]["state"] and data["history"][-1]["step"] == 3


def test_eval_json_reports_nats_bits_and_standard_error(checkpoint, capsys):
    assert main(["eval", str(checkpoint), "-n", "500", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"] == "moons" and result["n"] == 500 and result["step"] == 3
    assert result["bits_per_dim"] == pytest.approx(result["nll_nats"] / (2 * math.log(2)))
    assert 0 < result["se_nats"] < 1
    assert result["gap_nats"] == pytest.approx(result["nll_nats"] - result["entropy_nats"])


def test_eval_on_another_dataset_and_table(checkpoint, capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert main(["eval", str(checkpoint), "--data", "pinwheel", "-n", "100"]) == 0
    out = capsys.readouterr().out
    assert "pinwheel" in out and "NLL ± SE" in out and "gap" not in out  # pinwheel's entropy is unknown


def load_points(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix == ".csv":
        assert path.read_text().splitlines()[0] == "x0,x1"
        return np.loadtxt(path, delimiter=",", skiprows=1)
    return torch.load(path, weights_only=True).numpy()


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".pt"])
def test_sample_writes_each_format_reproducibly(checkpoint, tmp_path, suffix):
    paths = [tmp_path / f"a{suffix}", tmp_path / f"b{suffix}", tmp_path / f"c{suffix}"]
    for path, seed in zip(paths, ["2", "2", "3"], strict=True):
        assert main(["sample", str(checkpoint), "-n", "7", "--out", str(path), "--seed", seed]) == 0
    a, b, c = map(load_points, paths)
    assert a.shape == (7, 2) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sample_rejects_an_unknown_format(checkpoint, tmp_path, capsys):
    assert main(["sample", str(checkpoint), "--out", str(tmp_path / "s.txt")]) == 2
    assert "expected --out ending in .npy, .csv, .pt" in capsys.readouterr().err


def test_plot_writes_a_png(checkpoint, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the 'plot' extra (matplotlib)")
    out = tmp_path / "flow.png"
    assert main(["plot", str(checkpoint), "--out", str(out), "-n", "200"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install_it(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes 'import matplotlib' raise ImportError
    assert main(["plot", str(checkpoint), "--out", str(tmp_path / "f.png")]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "needs matplotlib" in err and "pip install -e '.[plot]' from the root" in err and "Traceback" not in err
    assert not (tmp_path / "f.png").exists()


# -- bad checkpoint files -------------------------------------------------------------------------------------------
class NotPlainData:
    pass


def truncated(good: bytes, path: Path) -> None:
    path.write_bytes(good[: len(good) // 2])


def corrupted(good: bytes, path: Path) -> None:
    data = bytearray(good)
    data[100:4000] = bytes(3900)
    path.write_bytes(bytes(data))


def text_file(good: bytes, path: Path) -> None:
    path.write_text("step,loss\n1,2.0\n")


def a_bare_tensor(good: bytes, path: Path) -> None:
    torch.save(torch.zeros(3), path)


def arbitrary_object(good: bytes, path: Path) -> None:
    torch.save({"format": "flowlab-checkpoint", "payload": NotPlainData()}, path)


def rewrite(path: Path, good_path: Path, **changes) -> None:
    data = read_checkpoint(good_path)
    data = {key: value for key, value in data.items() if key not in ("format", "format_version", "versions")}
    config = {**data["config"], **changes.pop("config", {})}
    save_checkpoint(path, {**data, "config": config, **changes})


BAD = {
    "truncated": (truncated, "not a readable checkpoint (truncated or corrupted?)"),
    "corrupted": (corrupted, "not a readable checkpoint (truncated or corrupted?)"),
    "text": (text_file, "not a readable checkpoint"),
    "tensor": (a_bare_tensor, "not a flowlab checkpoint"),
    "object": (arbitrary_object, "refused to load it"),
}


@pytest.fixture(params=[*BAD, "unknown-flow", "bad-options", "future-version", "wrong-shapes", "missing"])
def bad_checkpoint(request, checkpoint, tmp_path) -> tuple[Path, str]:
    path = tmp_path / "bad.pt"
    good = checkpoint.read_bytes()
    if request.param in BAD:
        make, message = BAD[request.param]
        make(good, path)
        return path, message
    if request.param == "unknown-flow":
        rewrite(path, checkpoint, config={"flow": "nosuchflow"})
        return path, "needs a flow or dataset that is not installed: unknown flow 'nosuchflow'"
    if request.param == "bad-options":
        rewrite(path, checkpoint, config={"options": {"blocks": 2, "wings": 1}})
        return path, "options are not valid for the installed flow"
    if request.param == "future-version":
        data = torch.load(checkpoint, weights_only=True)
        torch.save({**data, "format_version": FORMAT_VERSION + 1}, path)
        return path, f"format version {FORMAT_VERSION + 1}"
    if request.param == "wrong-shapes":
        rewrite(path, checkpoint, config={"options": {"blocks": 3}})
        return path, "saved parameters do not fit the installed flow"
    return tmp_path / "nothing-here.pt", "no such checkpoint file"


@pytest.mark.parametrize("command", ["eval", "sample", "plot", "resume"])
def test_bad_checkpoints_are_clear_errors_and_nothing_is_written(bad_checkpoint, command, tmp_path, capsys):
    path, message = bad_checkpoint
    before = path.read_bytes() if path.exists() else None
    out = tmp_path / "out.png"
    args = {
        "eval": ["eval", str(path)],
        "sample": ["sample", str(path), "--out", str(out.with_suffix(".npy"))],
        "plot": ["plot", str(path), "--out", str(out)],
        "resume": ["train", "--resume", "--out", str(path.parent)],
    }[command]
    if command == "plot":
        pytest.importorskip("matplotlib", reason="plots need the 'plot' extra (matplotlib)")
    if command == "resume" and before is not None:  # --resume reads the run folder's last checkpoint
        path = path.rename(path.parent / "checkpoint.pt")
    if command == "resume" and before is None:
        message = "no checkpoint in this run folder"
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err and err.count("error:") == 1
    assert (path.read_bytes() if path.exists() else None) == before
    assert not out.exists() and not out.with_suffix(".npy").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left behind


# -- a run folder: the best checkpoint by default, and which one was used -------------------------------------------
@pytest.fixture(scope="module")
def file_run(tmp_path_factory) -> Path:
    """The run folder of 4 steps on a file of rows, validated every 2 steps (best.pt and last.pt)."""
    folder = tmp_path_factory.mktemp("file-run")
    np.save(folder / "rows.npy", np.random.default_rng(0).normal(size=(60, 2)))
    args = ["train", "--flow", "stacked", "--data", str(folder / "rows.npy"), "--steps", "4", "--eval-every", "2"]
    assert main([*args, *TINY, "--out", str(folder / "run")]) == 0
    return folder / "run"


def test_eval_sample_and_plot_of_a_run_folder_use_its_best_checkpoint_and_say_so(file_run, tmp_path, capsys):
    best, last = read_checkpoint(file_run / "best.pt"), read_checkpoint(file_run / "last.pt")
    assert last["step"] == 4 and best["step"] in (2, 4)
    capsys.readouterr()
    assert main(["eval", str(file_run), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["checkpoint"] == str(file_run / "best.pt") and result["step"] == best["step"] and result["n"] == 12
    used = " ".join(captured.err.split())
    assert f"using {file_run / 'best.pt'}: the run's best checkpoint (lowest validation NLL): step" in used
    assert main(["eval", str(file_run), "--last", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["step"] == 4 and "the run's last checkpoint: step 4" in captured.err
    assert main(["sample", str(file_run), "-n", "3", "--out", str(tmp_path / "s.npy")]) == 0
    assert "the run's best checkpoint" in capsys.readouterr().err


def test_plot_curves_draws_the_runs_train_and_validation_nll(file_run, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="plots need the 'plot' extra (matplotlib)")
    seen = {}

    def fake_plot_curves(history, path, **kwargs):
        seen.update(history=history, **kwargs)

    monkeypatch.setattr("flowlab.plotting.plot_curves", fake_plot_curves)
    assert main(["plot", str(file_run), "--curves", str(tmp_path / "c.png")]) == 0
    assert seen["history"] == read_checkpoint(file_run / "last.pt")["history"], "the whole run, not up to best.pt"
    assert seen["title"].startswith("stacked on rows.npy: NLL every 2 steps")
    monkeypatch.undo()
    assert main(["plot", str(file_run), "--curves", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("option", ["--out", "--curves"])
def test_plot_to_an_unknown_picture_format_is_a_one_line_usage_error(checkpoint, tmp_path, capsys, option):
    pytest.importorskip("matplotlib", reason="plots need the 'plot' extra (matplotlib)")
    assert main(["plot", str(checkpoint), option, str(tmp_path / "p.jpgg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected a picture file ending in " in " ".join(err.split())
    assert ".png" in err and ".jpg" in err and "Traceback" not in err and not (tmp_path / "p.jpgg").exists()
