"""``flowlab train --nproc 2``: two DDP processes (gloo) on shards of the global batch take the single-process steps.

One launch (two workers and the launcher, ~10-30 s on a loaded 2-core machine) covers the launcher, the worker
entry point, the shards, DDP's gradient averaging, the global loss and the checkpoint written by rank 0.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from flowlab.distributed import launched, trainer_class
from flowlab.training import TrainConfig, Trainer

RUN = {"flow": "coupling", "data": "moons", "steps": 3, "batch_size": 16, "eval_every": 3, "eval_size": 64}


def test_outside_a_launcher_train_uses_the_plain_trainer():
    assert not launched() and trainer_class() is Trainer


@pytest.mark.slow
def test_two_processes_take_the_steps_of_one_with_the_same_global_batch(tmp_path):
    out = tmp_path / "two"
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in RUN.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "flowlab", "train", "--nproc", "2", *flags, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("checkpoint:") == 1, "only rank 0 reports"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"], "one checkpoint, no temporary file left"
    two = torch.load(out / "checkpoint.pt", weights_only=True)
    one = Trainer(TrainConfig(**RUN))
    one.fit()
    assert two["step"] == one.step == 3
    reference = one.flow.state_dict()
    assert set(two["model"]) == set(reference)
    for name, value in reference.items():
        # the same sums in another order: float32 rounding (~1e-7 relative) after 3 Adam steps of lr 1e-3
        assert torch.allclose(two["model"][name], value, rtol=1e-5, atol=1e-6), name
    # the reported loss is the global batch's (the mean of the two shard means), not rank 0's shard
    assert two["history"][-1]["loss"] == pytest.approx(one.history[-1]["loss"], rel=1e-5)
    assert two["history"][-1]["test_nll"] == pytest.approx(one.history[-1]["test_nll"], rel=1e-5)
