"""Training: learning happens, resume is exact, Ctrl-C leaves a complete checkpoint, ODE-flow hooks are used."""

from __future__ import annotations

import math
import signal

import pytest
import torch
from torch import Tensor, nn

import flowlab
from flowlab.checkpoint import read_checkpoint, save_checkpoint
from flowlab.cli import main
from flowlab.cli.train_cmd import StopFlag
from flowlab.datafiles import canonical
from flowlab.ode import ExactTrace, SolverConfig
from flowlab.plugins import Registry, reset_registry
from flowlab.training import Outcome, TrainConfig, Trainer

TINY = ["-o", "blocks=2", "-o", 'block_options={"hidden": 8}', "--batch-size", "32", "--eval-size", "64"]


def tiny_config(**changes) -> TrainConfig:
    base = dict(flow="stacked", data="moons", options={"blocks": 2, "block_options": {"hidden": 8}}, steps=6,
                batch_size=32, eval_every=3, eval_size=64)  # fmt: skip
    return TrainConfig(**{**base, **changes})


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_lowers_the_held_out_nll():
    """From the identity map (NLL ≈ 5.96 on 8gaussians) 150 steps get well below; SEs are ≈ 0.02."""
    trainer = Trainer(tiny_config(data="8gaussians", options={"blocks": 4}, steps=150, batch_size=128, eval_every=150,
                                  eval_size=1024, lr=3e-3))  # fmt: skip
    before = trainer.evaluate()
    trainer.fit()
    after = trainer.evaluate()
    assert before.nats > 5.5
    assert after.nats < before.nats - 1.0
    assert after.nats > flowlab.dataset_spec("8gaussians").entropy - 4 * after.se


#: a learning-rate schedule with warm-up and a gradient clip that acts (the first steps' norms are above it)
SCHEDULE = {"lr_schedule": "cosine", "warmup": 2, "clip_grad_norm": 0.5}


def test_resume_gives_the_parameters_of_an_uninterrupted_run(tmp_path):
    whole = Trainer(tiny_config(options={"blocks": 2, "actnorm": True}, **SCHEDULE))
    whole.fit()
    part = Trainer(tiny_config(options={"blocks": 2, "actnorm": True}, **SCHEDULE))
    part.fit(steps=3)
    part.save(str(tmp_path / "c.pt"))
    resumed = Trainer.resume(str(tmp_path / "c.pt"))
    assert resumed.step == 3
    resumed.fit()
    assert resumed.step == whole.step == 6
    assert same_state(resumed.flow.state_dict(), whole.flow.state_dict())
    assert [h["step"] for h in resumed.history] == [3, 6]


def test_cli_resume_after_ctrl_c_matches_an_uninterrupted_run(tmp_path, monkeypatch, capsys):
    """A SIGINT during step 2 stops the run after that step; the checkpoint holds step 2; --resume finishes it."""
    assert main(["train", "--flow", "stacked", "--data", "moons", "--steps", "5", "--eval-every", "2", *TINY,
                 "--out", str(tmp_path / "whole")]) == 0  # fmt: skip
    original = Trainer.train_step

    def interrupted_step(self):
        loss = original(self)
        if self.step == 2:
            signal.raise_signal(signal.SIGINT)
        return loss

    monkeypatch.setattr(Trainer, "train_step", interrupted_step)
    out = tmp_path / "part"
    args = [
        "train",
        "--flow",
        "stacked",
        "--data",
        "moons",
        "--steps",
        "5",
        "--eval-every",
        "2",
        *TINY,
        "--out",
        str(out),
    ]
    assert main(args) == 130
    assert "continue with --resume" in capsys.readouterr().err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(Trainer, "train_step", original)
    assert main(["train", "--resume", "--out", str(out)]) == 0
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    part = torch.load(out / "checkpoint.pt", weights_only=True)
    assert part["step"] == whole["step"] == 5
    assert same_state(part["model"], whole["model"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lr", "0.01"], "made with lr=0.001, not 0.01"),
        (["--data", "8gaussians"], "made with data='moons', not '8gaussians'"),
        (["-o", "blocks=3"], "trained with options="),
    ],
)
def test_resume_refuses_a_changed_configuration(tmp_path, capsys, extra, message):
    assert main(["train", "--flow", "stacked", "--data", "moons", "--steps", "1", *TINY, "--out", str(tmp_path)]) == 0
    before = (tmp_path / "checkpoint.pt").read_bytes()
    assert main(["train", "--resume", "--out", str(tmp_path), "--steps", "2", *extra]) == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_stop_flag_restores_the_previous_handler():
    previous = signal.getsignal(signal.SIGINT)
    with StopFlag() as stop:
        assert not stop()
        signal.raise_signal(signal.SIGINT)
        assert stop()
    assert signal.getsignal(signal.SIGINT) is previous


def test_train_reports_the_final_nll_and_its_gap_to_the_entropy(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert (
        main(["train", "--flow", "stacked", "--data", "8gaussians", "--steps", "2", *TINY, "--out", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "held-out NLL" in out and "bits/dim" in out and "gap" in out and "entropy 2.830" in out
    assert "step 2: loss " in out and ", held-out NLL " in out.split("step 2: loss ")[1], "a stream: held-out draws"


def test_train_refuses_to_overwrite_a_run(tmp_path, capsys):
    args = ["train", "--flow", "stacked", "--data", "moons", "--steps", "1", *TINY, "--out", str(tmp_path)]
    assert main(args) == 0
    before = (tmp_path / "checkpoint.pt").read_bytes()
    assert main(args) == 1
    assert "checkpoint.pt already exists; continue the run with --resume" in capsys.readouterr().err
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-o", "blocks=0"], "option blocks=0 is below its minimum 1"),
        (["-o", "wings=3"], "unknown option 'wings'"),
        (["-o", "blocks"], "expected KEY=VALUE"),
        (["--lr", "-1"], "positive finite learning rate"),
        (["--data", "moon"], "unknown dataset 'moon'"),
    ],
)
def test_train_option_errors_are_one_line(tmp_path, capsys, extra, message):
    args = ["train", "--flow", "stacked", "--data", "moons", "--steps", "1", "--out", str(tmp_path), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "checkpoint.pt").exists()


class LinearODE(flowlab.Bijector):
    """A stand-in for an ODE flow: ``dz/dt = A z`` so ``x = exp(A) z`` and ``log|det ∂x/∂z| = tr A``.

    Implements :class:`flowlab.ode.ContinuousFlow` with a closed-form solution instead of a solver.
    """

    solver = SolverConfig()
    trace_estimator = ExactTrace()

    def __init__(self, dim: int, weight: float = 0.5) -> None:
        super().__init__()
        self.dim = dim
        self.a = nn.Parameter(0.1 * torch.eye(dim))
        self.weight = weight
        self.nfe = 0
        self.nfe_backward = 0
        self.calls: dict[str, int] = {"trajectory": 0, "field": 0}

    def field(self, t: Tensor, z: Tensor) -> Tensor:
        self.calls["field"] += 1
        return z @ self.a.T

    def trajectory(self, z: Tensor, times: Tensor) -> Tensor:
        self.calls["trajectory"] += 1
        return torch.stack([z @ torch.linalg.matrix_exp(t * self.a).T for t in times])

    def regularization(self) -> Tensor:
        return self.weight * self.a.square().sum()

    def integrate(self, y: Tensor, *, reverse: bool, probe: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.nfe += 1
        sign = -1.0 if reverse else 1.0
        return y @ torch.linalg.matrix_exp(sign * self.a).T, sign * torch.trace(self.a).expand(len(y))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.integrate(z, reverse=False)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.integrate(x, reverse=True)


@pytest.fixture
def linear_ode_registered():
    class Plugin:
        @flowlab.hookimpl
        def flowlab_register_flows(self, register):
            register(flowlab.FlowSpec(name="linear-ode", summary="stand-in ODE flow", build=lambda dim: LinearODE(dim),
                                      kind="continuous"))  # fmt: skip

    registry = Registry()
    registry.load_entry_points()
    registry.add_plugin(Plugin(), "linear-ode-plugin")
    reset_registry(registry)
    yield
    reset_registry(None)


def test_training_adds_the_regularization_and_reports_nfe(linear_ode_registered):
    trainer = Trainer(tiny_config(flow="linear-ode", options={}, steps=1, eval_every=1))
    x = trainer.draw(32, "batch", 0)
    with torch.no_grad():
        expected = float(-trainer.flow.log_prob(x).mean() + trainer.flow.bijector.regularization())
    reports = []
    trainer.fit(on_step=reports.append)
    assert math.isclose(reports[0].loss, expected, rel_tol=1e-6)
    assert reports[0].nfe == trainer.flow.bijector.nfe > 0 and reports[0].nfe_backward == 0


def test_train_cli_shows_nfe_for_ode_flows(linear_ode_registered, tmp_path, capsys):
    args = ["train", "--flow", "linear-ode", "--data", "moons", "--steps", "2", "--eval-every", "1",
            "--batch-size", "16", "--eval-size", "32", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    assert "NFE" in capsys.readouterr().out


def test_plot_draws_trajectories_and_the_vector_field_of_ode_flows(linear_ode_registered, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the 'plot' extra (matplotlib)")
    from flowlab.plotting import FIELD_TIMES, plot_flow

    trainer = Trainer(tiny_config(flow="linear-ode", options={}, steps=1))
    out = tmp_path / "ode.png"
    plot_flow(trainer.flow, trainer.dataset, str(out), n=100, resolution=20)
    assert trainer.flow.bijector.calls == {"trajectory": 1, "field": len(FIELD_TIMES)}
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_resume_is_exact_for_ffjord_whose_probes_come_from_its_own_generator(tmp_path):
    """FFJORD draws Hutchinson probes from a torch.Generator it holds (not in its state_dict): the checkpoint saves
    that generator's state, so the resumed run draws the probes the uninterrupted one drew."""
    if "ffjord" not in flowlab.flows():
        pytest.skip("the ffjord plugin is not installed")
    config = tiny_config(flow="ffjord", options={"hidden": 8}, steps=4, eval_every=2, **SCHEDULE)
    whole = Trainer(config)
    whole.fit()
    part = Trainer(config)
    part.fit(steps=2)
    part.save(str(tmp_path / "c.pt"))
    resumed = Trainer.resume(str(tmp_path / "c.pt"))
    resumed.fit()
    assert same_state(resumed.flow.state_dict(), whole.flow.state_dict())

    data = read_checkpoint(tmp_path / "c.pt")
    assert data["generators"], "ffjord's probe generator was not saved"
    payload = {k: v for k, v in data.items() if k not in ("format", "format_version", "versions")}
    save_checkpoint(tmp_path / "d.pt", {**payload, "generators": {}})
    with pytest.raises(flowlab.CheckpointError, match="random generators"):
        Trainer.resume(str(tmp_path / "d.pt"))


# -- the learning rate, gradient clipping, validation, the best checkpoint, early stopping -------------------------
def test_the_learning_rate_warms_up_then_follows_its_schedule():
    cosine = tiny_config(lr=1e-2, steps=10, lr_schedule="cosine", warmup=2)
    assert [cosine.lr_at(k) for k in (0, 1)] == pytest.approx([5e-3, 1e-2])
    assert cosine.lr_at(2) == pytest.approx(1e-2) and cosine.lr_at(6) == pytest.approx(5e-3)  # half-way: lr / 2
    assert cosine.lr_at(10) == pytest.approx(0.0, abs=1e-12)
    assert {tiny_config(lr=1e-2).lr_at(k) for k in range(6)} == {1e-2}
    for bad, message in (({"lr_schedule": "linear"}, "cosine"), ({"warmup": -1}, "warm-up"),
                         ({"clip_grad_norm": 0.0}, "clip-grad-norm"), ({"early_stop": 0}, "PATIENCE")):  # fmt: skip
        with pytest.raises(flowlab.OptionError, match=message):
            tiny_config(**bad)


def test_the_schedule_and_the_clip_act_and_are_recorded(tmp_path):
    plain = Trainer(tiny_config(steps=3))
    plain.fit()
    scheduled = Trainer(tiny_config(steps=3, **SCHEDULE))
    scheduled.fit()
    assert not same_state(plain.flow.state_dict(), scheduled.flow.state_dict())
    clipped_only = Trainer(tiny_config(steps=3, clip_grad_norm=0.5))
    clipped_only.fit()
    assert not same_state(plain.flow.state_dict(), clipped_only.flow.state_dict()), "the clip acted"
    scheduled.save(str(tmp_path / "c.pt"))
    assert {k: read_checkpoint(tmp_path / "c.pt")["config"][k] for k in SCHEDULE} == SCHEDULE
    assert scheduled.history[-1]["lr"] == pytest.approx(scheduled.config.lr_at(2))


@pytest.fixture
def rows_file(tmp_path):
    """A small finite dataset: 60 rows of a 2-D Gaussian (42 train, 6 validation, 12 test)."""
    import numpy as np

    path = tmp_path / "rows.npy"
    np.save(path, np.random.default_rng(0).normal(size=(60, 2)))
    return str(path)


def scripted(monkeypatch, values):
    """Make every evaluation return the next of ``values`` (validation NLLs; the training rows' NLL alike)."""
    from flowlab.evaluation import NLL

    script = iter(values)
    current = {}

    def evaluate(self, rows=None):
        if rows is None:
            current["nll"] = next(script)
        return NLL(nats=current["nll"], se=0.1, n=6, dim=2)

    monkeypatch.setattr(Trainer, "evaluate", evaluate)


def test_a_finite_dataset_keeps_the_best_checkpoint_and_stops_early(tmp_path, rows_file, monkeypatch):
    """Validation NLLs 5, 4, 4.5, 4.2 with patience 2: the best is step 2, the run stops at step 4, best.pt holds
    step 2's parameters, last.pt step 4's; resuming the stopped run takes no step."""
    scripted(monkeypatch, [5.0, 4.0, 4.5, 4.2])
    trainer = Trainer(tiny_config(data=canonical(rows_file), steps=10, eval_every=1, early_stop=2))
    assert trainer.held_out_part == "validation" and len(trainer.held_out.points) == 6
    at_best = {}

    def save(t):
        t.save_run(tmp_path / "run")
        if t.step == 2:
            at_best.update({k: v.clone() for k, v in t.flow.state_dict().items()})

    assert trainer.fit(save=save) is Outcome.STOPPED_EARLY and trainer.step == 4
    assert trainer.best == trainer.history[1] and trainer.evaluations_since_best == 2
    best, last = read_checkpoint(tmp_path / "run" / "best.pt"), read_checkpoint(tmp_path / "run" / "last.pt")
    assert (best["step"], last["step"]) == (2, 4) and same_state(best["model"], at_best)
    assert [entry["validation_nll"] for entry in last["history"]] == [5.0, 4.0, 4.5, 4.2]
    assert {"train_nll", "lr", "loss", "nfe"} <= set(last["history"][0]) and "test_nll" not in last["history"][0]
    resumed = Trainer.resume(str(tmp_path / "run" / "last.pt"))
    assert resumed.fit() is Outcome.STOPPED_EARLY and resumed.step == 4


def test_the_test_split_is_not_touched_by_training(rows_file, monkeypatch):
    """Training scores the validation rows and as many training rows, never a test row."""
    from flowlab.datafiles import file_dataset

    split = file_dataset(rows_file).split()
    trainer = Trainer(tiny_config(data=canonical(rows_file), steps=2, eval_every=1))
    assert torch.equal(trainer.held_out.points, split.validation)
    assert trainer.train_rows is not None and torch.equal(trainer.train_rows.points, split.train[:6])
    scored = []
    original = Trainer.evaluate

    def spy(self, rows=None):
        scored.append((rows or self.held_out).points)
        return original(self, rows)

    monkeypatch.setattr(Trainer, "evaluate", spy)
    trainer.fit()
    test_rows = {tuple(row) for row in split.test.tolist()}
    assert scored and all(tuple(row) not in test_rows for points in scored for row in points.tolist())


def test_a_stream_keeps_one_checkpoint_and_refuses_early_stopping(tmp_path, capsys):
    assert main(["train", "--flow", "stacked", "--data", "moons", "--steps", "1", *TINY, "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    assert "test_nll" in read_checkpoint(tmp_path / "checkpoint.pt")["history"][-1]
    args = ["train", "--flow", "stacked", "--data", "moons", "--steps", "1", "--early-stop", "3"]
    assert main([*args, "--out", str(tmp_path / "other")]) == 2
    assert "moons' is a stream" in " ".join(capsys.readouterr().err.split())


def test_resume_with_steps_below_the_runs_step_is_a_usage_error_naming_it(tmp_path, capsys):
    assert main(["train", "--flow", "stacked", "--data", "moons", "--steps", "3", *TINY, "--out", str(tmp_path)]) == 0
    before = (tmp_path / "checkpoint.pt").read_bytes()
    assert main(["train", "--resume", "--out", str(tmp_path), "--steps", "2"]) == 2
    assert "the run in" in (err := " ".join(capsys.readouterr().err.split())) and "is already at step 3" in err
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert main(["train", "--resume", "--out", str(tmp_path), "--lr-schedule", "cosine"]) == 2
    assert "made with lr_schedule='constant', not 'cosine'" in " ".join(capsys.readouterr().err.split())


def test_cli_early_stop_on_a_file_reports_the_best_checkpoint(tmp_path, rows_file, capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    scripted(monkeypatch, [5.0, 4.0, 4.5, 4.2, 4.2])  # the last: the final report
    args = ["train", "--flow", "affine", "--data", rows_file, "--steps", "10", "--eval-every", "1", "--batch-size"]
    assert main([*args, "16", "--early-stop", "2", "--out", str(tmp_path / "run")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "stopped early at step 4: the validation NLL has not improved for 2 evaluations" in out
    assert "best 4.000 at step 2" in out and f"flowlab eval {tmp_path / 'run'}" in out
