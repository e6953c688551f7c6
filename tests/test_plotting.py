"""``flowlab plot``'s figure reads on its own: a title naming the run, axis labels, colour bars, no empty panel."""

from __future__ import annotations

import re

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


def test_a_file_is_titled_by_its_name_and_its_rows_counted_as_training_rows(tmp_path):
    """A plot of a user's CSV: the file's name (not a clipped absolute path), and the 42 training rows it has
    counted as such (not "2000 points")."""
    import numpy as np

    from flowlab.datafiles import canonical, resolve_dataset

    path = tmp_path / "deeply" / "nested" / "folder" / "table.csv"
    path.parent.mkdir(parents=True)
    np.savetxt(path, np.random.default_rng(0).normal(size=(60, 2)), delimiter=",", header="a,b", comments="")
    data = canonical(str(path))
    assert (
        run_title("stacked", data, 3, 1.5, "validation")
        == "stacked fitted to table.csv: 3 steps, validation NLL 1.500 nats"
    )
    flow = flowlab.Flow(flowlab.build("stacked", 2, blocks=1)).eval()
    fig = figure(flow, resolve_dataset(data), n=2000, resolution=12)
    try:
        titles = [ax.get_title() for ax in fig.get_axes()]
        assert "data: table.csv (42 training rows)" in titles and "samples x = f(z) (2000 draws)" in titles
        assert not any(str(tmp_path) in title for title in titles)
    finally:
        pyplot().close(fig)


def test_the_learning_curves_mark_the_best_step():
    from flowlab.plotting import curves_figure

    history = [
        {"step": step, "loss": 9.0, "train_nll": train, "validation_nll": validation}
        for step, train, validation in ((2, 5.0, 5.5), (4, 4.0, 4.6), (6, 3.0, 4.9))
    ]
    fig = curves_figure(history, title="stacked on digits")
    try:
        (ax,) = fig.get_axes()
        assert ax.get_title() and ax.get_xlabel() == "step" and ax.get_ylabel() == "NLL (nats)"
        labels = [line.get_label() for line in ax.get_lines()]
        assert "train NLL (fixed training rows)" in labels and "validation NLL" in labels
        best = next(line for line in ax.get_lines() if line.get_label().startswith("best:"))
        assert list(best.get_xdata()) == [4] and list(best.get_ydata()) == [4.6]
    finally:
        pyplot().close(fig)


def test_an_image_grid_has_a_colour_bar_for_its_pixel_values():
    from flowlab.plotting import image_figure

    pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn")
    flow = flowlab.Flow(flowlab.build("affine", 64)).eval()
    fig = image_figure(flow, flowlab.dataset_spec("digits"), count=8, title="affine fitted to digits")
    try:
        _, bars = panels_and_colorbars(fig)
        assert len(bars) == 1 and "pixel value" in (bars[0].get_ylabel() or bars[0].get_xlabel())
    finally:
        pyplot().close(fig)


def test_the_paths_figure_labels_each_flow_with_its_straightness_and_nfe():
    from flowlab.plotting import paths_figure

    torch.manual_seed(0)
    flows = [(name, flowlab.Flow(flowlab.build("cnf", 2, hidden=4, depth=1)).eval()) for name in ("a", "b")]
    fig = paths_figure(flows, torch.randn(20, 2, generator=torch.Generator().manual_seed(0)), title="two fields")
    try:
        assert fig.get_suptitle() == "two fields"
        assert_readable(fig, panels=2, colorbars=0)
        assert all(re.fullmatch(r"[ab]: straightness \d\.\d{3}, NFE \d+", ax.get_title()) for ax in fig.get_axes())
    finally:
        pyplot().close(fig)
