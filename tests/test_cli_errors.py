"""Errors of the CLI and of the runs it starts: each answered by one clean line (no traceback) and a consistent
exit code — unavailable devices, diverging training, refused checkpoints, interrupts, unknown flows, piped output.

Exit codes: 0 ok, 1 a check or run failed, 2 usage (``flowlab --help`` says so).
"""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from flowlab.checkpoint import read_checkpoint
from flowlab.cli import EXIT_FAILED, EXIT_USAGE, main
from flowlab.cli.train_cmd import StopFlag
from flowlab.errors import DivergenceError
from flowlab.training import TrainConfig, Trainer

TINY = ["-o", "blocks=2", "-o", 'block_options={"hidden": 8}', "--batch-size", "32", "--eval-size", "64"]
#: a CNF small enough that a step takes a fraction of a second
TINY_CNF = ["--flow", "cnf", "--data", "moons", "-o", "hidden=4", "-o", "depth=1", "--batch-size", "16"]
TINY_CNF += ["--eval-size", "32", "--eval-every", "1"]


def one_clean_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """The error printed, asserted to be a single ``error:`` message holding every needle and no traceback."""
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err and err.count("error:") == 1, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--flow", "stacked", "--data", "moons", "--steps", "1", *TINY, "--out", str(out)]) == 0
    return out / "checkpoint.pt"


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out and "0    success" in out and "2    usage error" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is about a torch without CUDA")
@pytest.mark.parametrize("command", ["train", "eval", "sample", "plot"])
def test_device_cuda_without_cuda_is_a_usage_error(command, checkpoint, tmp_path, capsys):
    argv = {
        "train": ["train", "--flow", "stacked", "--data", "moons", "--out", str(tmp_path)],
        "eval": ["eval", str(checkpoint)],
        "sample": ["sample", str(checkpoint), "--out", str(tmp_path / "s.npy")],
        "plot": ["plot", str(checkpoint), "--out", str(tmp_path / "p.png")],
    }[command]
    if command == "plot":
        pytest.importorskip("matplotlib")
    assert main([*argv, "--device", "cuda"]) == EXIT_USAGE
    one_clean_line(capsys, "device 'cuda': CUDA is not available")
    assert list(tmp_path.iterdir()) == []


def test_a_bogus_device_is_a_usage_error(checkpoint, capsys):
    assert main(["eval", str(checkpoint), "--device", "bogus"]) == EXIT_USAGE
    one_clean_line(capsys, "expected cpu, cuda or cuda:N", "got 'bogus'")


def test_a_huge_learning_rate_is_a_divergence_not_a_tensor_dump(tmp_path, capsys):
    argv = [
        "train",
        "--flow",
        "stacked",
        "--data",
        "8gaussians",
        "--steps",
        "50",
        "--lr",
        "1e6",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == EXIT_FAILED
    err = one_clean_line(capsys, "train: diverged at step", "smaller learning rate", "no checkpoint was written")
    assert "Real()" not in err and "tensor(" not in err


def test_an_exploding_loss_stops_the_run_with_exit_1(tmp_path, capsys):
    argv = [
        "train",
        "--flow",
        "stacked",
        "--data",
        "8gaussians",
        "--steps",
        "50",
        "--lr",
        "1000",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == EXIT_FAILED
    one_clean_line(capsys, "train: diverged at step")
    assert not (tmp_path / "checkpoint.pt").exists()


def test_divergence_names_the_last_good_checkpoint_and_keeps_it(tmp_path, monkeypatch):
    path = str(tmp_path / "checkpoint.pt")
    config = TrainConfig(flow="stacked", data="moons", options={"blocks": 1}, steps=6, batch_size=16, eval_every=2,
                         eval_size=32)  # fmt: skip
    trainer = Trainer(config)
    real_step = trainer.train_step

    def step() -> float:
        loss = real_step()
        return float("nan") if trainer.step == 3 else loss

    monkeypatch.setattr(trainer, "train_step", step)
    with pytest.raises(DivergenceError, match=r"diverged at step 3: the loss became nan") as error:
        trainer.fit(save=lambda t: t.save(path))
    assert f"the last good checkpoint is {path} (step 2)" in str(error.value)
    assert error.value.saved_step == 2 and read_checkpoint(path)["step"] == 2


def test_resume_may_change_the_solver_limits_and_says_how(tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    assert main(["train", *TINY_CNF, "--steps", "1", *out]) == 0
    assert main(["train", "--resume", *out, "--steps", "2", "-o", "max_nfe=1"]) == EXIT_FAILED
    one_clean_line(capsys, "max_nfe=1", f"flowlab train --resume --out {tmp_path} -o max_nfe=2 -o max_seconds=120")
    assert main(["train", "--resume", *out, "--steps", "2", "-o", "max_nfe=500", "-o", "rtol=1e-4"]) == 0
    saved = read_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["step"] == 2 and saved["config"]["options"]["max_nfe"] == 500
    capsys.readouterr()
    assert main(["train", "--resume", *out, "--steps", "3", "-o", "hidden=8"]) == EXIT_USAGE
    one_clean_line(capsys, "hidden=8 would change the model", "max_nfe, max_seconds, rtol, atol, compile may change")


def test_a_pickle_weights_only_refuses_gets_flowlabs_words_not_torchs_advice(tmp_path, capsys):
    path = tmp_path / "foreign.pt"
    path.write_bytes(pickle.dumps({"weights": [1.0]}, protocol=4))
    assert main(["eval", str(path)]) == EXIT_FAILED
    err = one_clean_line(capsys, "not a readable checkpoint", "weights_only=True) only", "Unsupported operand")
    assert "weights_only` set to `False" not in err and "will likely succeed" not in err
    assert "UserWarning" not in err


def test_a_second_ctrl_c_aborts_and_ignores_further_ones():
    previous = signal.getsignal(signal.SIGINT)
    with StopFlag() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is previous


def test_a_ctrl_c_during_shutdown_prints_no_atexit_traceback():
    script = textwrap.dedent(
        """
        import atexit, os, signal, sys, time
        atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(0.2)))  # Ctrl-C while exiting
        from flowlab.cli import main
        sys.exit(main([]))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr


@pytest.mark.parametrize("command", ["train", "check", "explain"])
def test_an_unknown_flow_is_exit_2_everywhere(command, tmp_path, capsys):
    argv = {
        "train": ["train", "--flow", "nope", "--data", "moons", "--out", str(tmp_path)],
        "check": ["check", "nope"],
        "explain": ["explain", "nope"],
    }[command]
    assert main(argv) == EXIT_USAGE
    one_clean_line(capsys, "unknown flow 'nope'")


def test_a_piped_training_run_prints_plain_progress_lines_on_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("flowlab.cli.train_cmd.Heartbeat.every", 0.0)  # a line at every step
    argv = ["train", "--flow", "stacked", "--data", "moons", "--steps", "3", *TINY, "--out", str(tmp_path)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "step 2/3: loss " in err and " it/s" in err and "\x1b[" not in err
