"""``flowlab plot``'s figure reads on its own: a title naming the run, axis labels, colour bars, no empty panel."""

from __future__ import annotations

import pytest
import torch

import flowlab
from flowlab.cli import main

pytest.importorskip("matplotlib", reason="plots need the 'plot' extra (matplotlib)")

from flowlab.plotting import figure, pyplot, run_title


def panels_and_colorbars(fig) -> tuple[list, list]:
    axes = fig.get_axes()
    colorbars = [ax for ax in axes if ax.get_label() == "<colorbar>"]
    return [ax for ax in axes if ax not in colorbars], colorbars


def assert_readable(fig, panels: int, colorbars: int) -> None:
    drawn, bars = panels_and_colorbars(fig)
    assert len(drawn) == panels and len(bars) == colorbars
    for ax in drawn:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), ax
        assert ax.collections or ax.images or ax.lines, f"empty panel {ax.get_title()!r}"
    for bar in bars:
        assert bar.get_ylabel() or bar.get_xlabel()


@pytest.mark.parametrize(("name", "options", "panels", "colorbars"), [
    ("stacked", {"blocks": 1}, 3, 1),
    ("cnf", {"hidden": 4, "depth": 1}, 7, 2),
])  # fmt: skip
def test_every_panel_is_labelled_and_drawn(name, options, panels, colorbars):
    torch.manual_seed(0)
    flow = flowlab.Flow(flowlab.build(name, 2, **options)).eval()
    title = run_title(name, "moons", 1500, 2.949)
    fig = figure(flow, flowlab.dataset_spec("moons"), n=100, resolution=12, title=title)
    try:
        assert fig.get_suptitle() == f"{name} fitted to moons: 1500 steps, held-out NLL 2.949 nats"
        assert_readable(fig, panels, colorbars)
    finally:
        pyplot().close(fig)


def test_the_cli_titles_the_picture_with_the_run(tmp_path, monkeypatch):
    seen = {}

    def fake_plot_flow(flow, dataset, path, **kwargs):
        seen.update(kwargs)

    run = ["--out", str(tmp_path), "-o", "blocks=1", "--batch-size", "16", "--eval-size", "32"]
    assert main(["train", "--flow", "stacked", "--data", "moons", "--steps", "2", *run]) == 0
    monkeypatch.setattr("flowlab.plotting.plot_flow", fake_plot_flow)
    assert main(["plot", str(tmp_path / "checkpoint.pt"), "--out", str(tmp_path / "p.png")]) == 0
    assert seen["title"].startswith("stacked fitted to moons: 2 steps, held-out NLL ")
