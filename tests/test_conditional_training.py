"""Training and using a conditional flow end to end: digits' labels as the context (``docs/conditioning.md``,
"Training a conditional flow"). Mechanics only, at tiny budgets: that conditioning *helps* is measured in
docs/benchmarks.md (too slow and noisy for a test)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import flowlab
from flowlab.checkpoint import read_checkpoint
from flowlab.cli import main
from flowlab.errors import ContextError, OptionError
from flowlab.evaluation import held_out_nll
from flowlab.registry import flow_spec, objective_spec
from flowlab.runconfig import check_dataset_context
from flowlab.seeding import generator
from flowlab.training import TrainConfig, Trainer

pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn (pip install -e '.[data]')")

TINY = {"blocks": 2, "block_options": {"hidden": 8}}
CLI_TINY = ["-o", "blocks=2", "-o", 'block_options={"hidden": 8}', "--batch-size", "16"]


def config(**changes: object) -> TrainConfig:
    base = TrainConfig(
        flow="stacked", data="digits", options={**TINY, "context_dim": 10}, steps=4, batch_size=16, eval_every=2
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def digits() -> flowlab.DatasetSpec:
    return flowlab.dataset_spec("digits")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """The run folder of a conditional stacked flow trained 2 steps on digits by ``flowlab train``."""
    out = tmp_path_factory.mktemp("conditional")
    args = ["train", "--flow", "stacked", "--data", "digits", "-o", "context_dim=10", *CLI_TINY, "--steps", "2"]
    assert main([*args, "--eval-every", "2", "--out", str(out)]) == 0
    return out


def test_train_resume_continues_a_conditional_run_and_says_so(run, tmp_path, capsys):
    shutil.copy(run / "last.pt", tmp_path / "last.pt")
    assert main(["train", "--resume", "--out", str(tmp_path), "--steps", "3"]) == 0
    assert "on digits conditional on its labels (context_dim 10) by mle" in " ".join(capsys.readouterr().out.split())
    assert read_checkpoint(str(tmp_path / "last.pt"))["step"] == 3


# -- the encoding: labels -> one-hot contexts ---------------------------------------------------------------------
def test_labels_are_encoded_as_one_hot_contexts_of_the_classes(digits):
    assert digits.context_dim == digits.num_classes == 10
    encoded = digits.encode_context(torch.tensor([0, 3, 9]))
    assert encoded.dtype == torch.float32 and torch.equal(encoded, torch.eye(10)[[0, 3, 9]])
    for bad in ([10], [-1]):
        with pytest.raises(ContextError, match=r"expected labels 0\.\.9"):
            digits.encode_context(torch.tensor(bad))
    with pytest.raises(ContextError, match="integer class labels"):
        digits.encode_context(torch.tensor([1.0]))
    with pytest.raises(ContextError, match="no context"):
        flowlab.dataset_spec("moons").encode_context(torch.tensor([0]))


def test_a_dataset_must_supply_the_flows_context(digits):
    check_dataset_context(flowlab.dataset_spec("moons"), 0)  # unconditional: nothing to supply
    having = r"dataset 'moons' has no context.*datasets with one: .*digits \(10 classes\)"
    with pytest.raises(OptionError, match=having):
        check_dataset_context(flowlab.dataset_spec("moons"), 10)
    with pytest.raises(OptionError, match="expected a flow with -o context_dim=10, got context_dim 3"):
        check_dataset_context(digits, 3)
    with pytest.raises(OptionError, match="no context"):
        Trainer(config(data="moons"))


# -- the trainer ----------------------------------------------------------------------------------------------------
def test_a_batch_is_the_unconditional_batch_with_its_rows_labels(digits):
    trainer = Trainer(config())
    x, context = trainer.batch()
    same = digits.sample(16, generator(0, "batch", 0))  # the points an unconditional run draws at step 0
    _, labels = digits.sample_with_context(16, generator(0, "batch", 0))
    assert torch.equal(x, same) and context is not None and torch.equal(context, digits.encode_context(labels))
    train, train_labels = digits.split().train.tolist(), digits.split().train_context.tolist()
    rows = {tuple(row): int(label) for row, label in zip(train, train_labels, strict=True)}
    assert [rows[tuple(row)] for row in x.floor().tolist()] == labels.tolist()  # each row beside its own label
    assert Trainer(config(options=TINY)).batch()[1] is None


def test_the_loss_gets_the_batchs_contexts_and_evaluation_the_validation_rows_labels(digits):
    trainer = Trainer(config())
    seen = []
    loss = trainer.objective.loss

    def spy(flow, x, run_context, condition=None):
        seen.append(condition)
        return loss(flow, x, run_context, condition=condition)

    trainer.objective_loss.objective = dataclasses.replace(trainer.objective, loss=spy)
    expected = trainer.batch()[1]
    trainer.train_step()
    assert expected is not None and len(seen) == 1 and torch.equal(seen[0], expected)
    labels = digits.labels("validation")
    assert len(labels) == len(trainer.held_out.points) == 180
    at_labels = held_out_nll(trainer.flow, trainer.held_out.points, context=digits.encode_context(labels))
    assert trainer.evaluate().nats == at_labels.nats
    shifted = held_out_nll(trainer.flow, trainer.held_out.points, context=digits.encode_context((labels + 1) % 10))
    assert shifted.nats != at_labels.nats  # the contexts matter, so the right ones were used


def test_flow_matching_objectives_refuse_a_conditional_flow():
    conditional_field = flowlab.build("cnf", 2)
    conditional_field.context_dim = 2  # a stand-in for a conditional ODE flow (the built-in ones are unconditional)
    for name in ("cfm", "otcfm", "rectified"):
        with pytest.raises(OptionError, match=rf"objective '{name}' fits unconditional.*context_dim 2"):
            objective_spec(name).check_flow(flow_spec("cnf"), conditional_field)
    objective_spec("mle").check_flow(flow_spec("cnf"), conditional_field)  # mle trains it


def test_a_resumed_conditional_run_takes_the_steps_of_the_uninterrupted_one(tmp_path):
    whole = Trainer(config())
    whole.fit()
    first = Trainer(config())
    first.fit(steps=2)
    first.save(str(tmp_path / "c.pt"))
    resumed = Trainer.resume(str(tmp_path / "c.pt"))
    resumed.fit()
    for (name, a), b in zip(whole.flow.state_dict().items(), resumed.flow.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert resumed.history == whole.history


# -- the CLI ----------------------------------------------------------------------------------------------------
def test_sample_at_a_label(run, tmp_path, capsys):
    draws = {}
    for label in (3, 7):
        path = tmp_path / f"s{label}.npy"
        assert main(["sample", str(run), "-n", "5", "--label", str(label), "--out", str(path)]) == 0
        assert f"at label {label}" in capsys.readouterr().out
        draws[label] = np.load(path)
        assert draws[label].shape == (5, 64) and np.isfinite(draws[label]).all()
    assert not np.array_equal(draws[3], draws[7])  # the same base draw, another context


def test_sample_errors_name_the_labels(run, tmp_path, capsys):
    out = str(tmp_path / "s.npy")
    assert main(["sample", str(run), "-n", "5", "--out", out]) == 2
    assert "expected --label K with K in 0..9, none was given" in " ".join(capsys.readouterr().err.split())
    assert main(["sample", str(run), "-n", "5", "--label", "10", "--out", out]) == 2
    assert "got --label 10" in " ".join(capsys.readouterr().err.split())


def test_label_on_an_unconditional_checkpoint_is_refused(tmp_path, capsys):
    args = ["train", "--flow", "stacked", "--data", "moons", *CLI_TINY, "--steps", "1", "--eval-size", "64"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    out = str(tmp_path / "s.npy")
    assert main(["sample", str(tmp_path / "checkpoint.pt"), "--label", "1", "--out", out]) == 2
    assert "flow is unconditional (context_dim 0)" in " ".join(capsys.readouterr().err.split())


def test_eval_of_a_conditional_checkpoint_is_at_the_test_labels(run, capsys, digits):
    assert main(["eval", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["context_dim"] == 10 and result["n"] == 359 and np.isfinite(result["nll_nats"])


def test_plot_of_a_conditional_digits_flow_has_one_row_per_label(run, tmp_path, digits):
    pytest.importorskip("matplotlib", reason="plotting needs matplotlib (the plot extra)")
    from flowlab.checkpoint import load_flow
    from flowlab.plotting import labelled_images

    flow, _, _ = load_flow(run / "best.pt")
    data, samples, classes = labelled_images(flow, digits)
    assert classes == 10 and data.shape == samples.shape == (80, 64) and torch.isfinite(samples).all()
    test, labels = digits.test_points(0, generator(0, "plot-data")), digits.test_labels()
    for k in range(10):
        assert torch.equal(data[8 * k : 8 * k + 8], test[labels == k][:8])
    assert main(["plot", str(run), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 0


def test_compare_trains_a_conditional_flow_and_draws_its_samples_at_the_labels(tmp_path):
    pytest.importorskip("matplotlib", reason="plotting needs matplotlib (the plot extra)")
    args = ["compare", "--flows", "stacked", "--data", "digits", "--steps", "1", "--batch-size", "16", "--seeds", "1"]
    options = ["-o", "stacked:context_dim=10", "-o", "stacked:blocks=2", "-o", 'stacked:block_options={"hidden": 8}']
    assert main([*args, *options, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "compare.png").stat().st_size > 0


def test_the_kit_checks_a_conditional_checkpoint_at_drawn_contexts(run, capsys):
    """The checkpoint's parameters (saved with digits' preprocessing around the learned flow) load into the learned
    flow, which the kit checks at the contexts it draws: the cases run, none is skipped."""
    properties = ["--property", "invertibility", "--property", "logdet"]
    assert main(["check", "--checkpoint", str(run), *properties, "--profile", "quick"]) == 0
    captured = capsys.readouterr()
    assert f"using {run / 'best.pt'}: the run's best checkpoint" in " ".join(captured.err.split())
    out = " ".join(captured.out.split())
    assert "stacked@" in out and "2 passed" in out and "skipped" not in out


def test_a_rank_takes_its_shard_of_the_rows_and_of_their_contexts():
    from flowlab.distributed import DistributedTrainer

    trainer = Trainer(config())
    x, context = trainer.batch()
    trainer.__class__ = DistributedTrainer  # its batch() alone, without a process group
    trainer.world, trainer.rank = 2, 1
    shard, shard_context = trainer.batch()
    assert context is not None and shard_context is not None
    assert torch.equal(shard, x[8:]) and torch.equal(shard_context, context[8:])


@pytest.mark.slow
def test_two_processes_take_the_conditional_steps_of_one(tmp_path):
    """Parameters, loss and held-out NLL as one process's (the shards: the test above)."""
    out = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    args = ["train", "--nproc", "2", "--flow", "stacked", "--data", "digits", "-o", "context_dim=10", *CLI_TINY]
    args += ["--steps", "3", "--eval-every", "3", "--out", str(out)]
    command = [sys.executable, "-m", "flowlab", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = read_checkpoint(str(out / "last.pt"))
    one = Trainer(config(steps=3, eval_every=3))
    one.fit()
    for name, value in one.flow.state_dict().items():
        # the same sums in another order: float32 rounding after 3 Adam steps (as in tests/test_distributed.py)
        assert torch.allclose(two["model"][name], value, rtol=1e-5, atol=1e-6), name
    assert two["history"][-1]["loss"] == pytest.approx(one.history[-1]["loss"], rel=1e-5)
    assert two["history"][-1]["validation_nll"] == pytest.approx(one.history[-1]["validation_nll"], rel=1e-5)
