"""Pictures of a trained 2D flow: the data, the learned density ``q(x) = exp(log q(x))`` on a grid, samples
``x = f(z)``; for ODE flows also particle trajectories ``z(t)`` from ``t = 0`` (base) to ``t = 1`` (data) and the
vector field ``f(t, ·)`` at a few times; image grids of a flow on square images; a run's learning curves (train
and validation NLL per step, the best step marked). Needs matplotlib (the ``plot`` extra).

Every picture reads on its own: a title naming the flow and the dataset (its registered name, or the data file's
name, never its directories), axis labels, colour bars for colours, and counts that say what was drawn (draws of a
stream, or which split's rows of a finite dataset)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import torch

from flowlab.data import DatasetSpec
from flowlab.datafiles import short_name
from flowlab.errors import MissingDependencyError, OptionError, install_hint
from flowlab.evaluation import log_probs, uses_autograd
from flowlab.flow import Flow
from flowlab.ode import continuous_flow
from flowlab.seeding import generator, global_rng
from flowlab.validation import module_dtype_device

FIELD_TIMES = (0.0, 0.5, 1.0)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or a clear error if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(
            f"plotting needs matplotlib, which is not installed: {install_hint('plot')}, or pip install matplotlib"
        ) from None
    return plt


def image_formats() -> list[str]:
    """The file suffixes matplotlib writes pictures in (``png``, ``pdf``, ``svg``, ...)."""
    pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_picture_path(path: str, option: str) -> str:
    """The format of the picture file ``path`` (its suffix; ``png`` without one), or an :class:`OptionError`
    naming ``option`` and the formats matplotlib writes."""
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    formats = image_formats()
    if fmt not in formats:
        raise OptionError(f"plot {option} {path}: expected a picture file ending in .{', .'.join(formats)}")
    return fmt


def reference(flow: Flow) -> torch.Tensor:
    """An empty tensor with the flow's dtype and device, for allocating grids and times like it."""
    dtype, device = module_dtype_device(flow)
    return torch.empty(0, dtype=dtype, device=device)


def square_limits(points: torch.Tensor, pad: float = 0.15) -> tuple[float, float]:
    """A square window holding the central 99% of ``points`` on each axis, padded by ``pad`` of its width."""
    low = float(points.quantile(0.005, dim=0).min())
    high = float(points.quantile(0.995, dim=0).max())
    margin = pad * (high - low)
    return low - margin, high + margin


def grid(limits: tuple[float, float], size: int, like: torch.Tensor) -> torch.Tensor:
    """``size × size`` points covering the square ``limits²``, row-major from the bottom left, as ``[size², 2]``."""
    axis = torch.linspace(*limits, size, dtype=like.dtype, device=like.device)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=-1)


def run_title(flow: str, data: str, step: int, nll: float | None, scored: str = "held-out") -> str:
    """The figure's title: which flow, fitted to which dataset (``data``: a run's recorded dataset, shown by its
    name, :func:`~flowlab.datafiles.short_name`), after how many steps, and how well (``scored``: on what)."""
    score = f"{scored} NLL {nll:.3f} nats" if nll is not None else f"{scored} NLL not measured"
    return f"{flow} fitted to {short_name(data)}: {step} steps, {score}"


def data_points(dataset: DatasetSpec, n: int, seed: int) -> tuple[torch.Tensor, str]:
    """Points of ``dataset`` to draw beside a flow, and what they are: ``n`` draws of a stream, or (a finite
    dataset) its training rows, the first ``n`` of them (dequantised where the data are integers)."""
    stream = generator(seed, "plot-data")
    if not dataset.finite:
        return dataset.sample(n, stream), f"{n} draws"
    points = dataset.held_out_points("train", n, stream)[:n]
    return points, f"{len(points)} training rows"


def plot_flow(
    flow: Flow,
    dataset: DatasetSpec,
    path: str,
    *,
    n: int = 2000,
    resolution: int = 160,
    seed: int = 0,
    fmt: str | None = None,
    title: str | None = None,
) -> None:
    """Save :func:`figure` to ``path`` in format ``fmt`` (default: from the suffix of ``path``, e.g. .png)."""
    fig = figure(flow, dataset, n=n, resolution=resolution, seed=seed, title=title)
    fig.savefig(path, dpi=72, format=fmt)
    pyplot().close(fig)


def figure(
    flow: Flow, dataset: DatasetSpec, *, n: int = 2000, resolution: int = 160, seed: int = 0, title: str | None = None
) -> Any:
    """The data, the learned density ``q(x)`` (with its colour bar) and samples in one row; for ODE flows a second
    row with the trajectories and the vector field at :data:`FIELD_TIMES` (one colour bar for the speed). Every
    panel has axis labels; ``title`` (e.g. :func:`run_title`) heads the figure."""
    if flow.dim != 2 or dataset.dim != 2:
        raise OptionError(f"plot: pictures are drawn for 2D flows and data only, got dim {flow.dim} and {dataset.dim}")
    plt = pyplot()
    like = reference(flow)
    drawn, count = data_points(dataset, n, seed)
    data = drawn.numpy()
    with global_rng(seed, "plot-flow"), torch.set_grad_enabled(uses_autograd(flow)):
        samples = flow.sample(n).detach().cpu().numpy()
    limits = square_limits(torch.from_numpy(data))
    points = grid(limits, resolution, like)
    density = log_probs(flow, points).exp().reshape(resolution, resolution).numpy()
    continuous = continuous_flow(flow.bijector) is not None
    fig = plt.figure(figsize=(12, 7.6 if continuous else 4.2), layout="constrained")
    rows = fig.subfigures(2, 1, height_ratios=(1, 1)) if continuous else [fig]
    top = rows[0].subplots(1, 3)
    scatter = {"s": 1.5, "alpha": 0.5, "linewidths": 0}
    top[0].scatter(data[:, 0], data[:, 1], color="tab:blue", **scatter)
    top[0].set_title(f"data: {short_name(dataset.name)} ({count})")
    image = top[1].imshow(density, origin="lower", extent=(*limits, *limits), cmap="magma", aspect="equal")
    fig.colorbar(image, ax=top[1], label="q(x)", shrink=0.85)
    top[1].set_title("learned density q(x)")
    top[2].scatter(samples[:, 0], samples[:, 1], color="tab:orange", **scatter)
    top[2].set_title(f"samples x = f(z) ({n} draws)")
    panels = list(top)
    if continuous:
        bottom = rows[1].subplots(1, 1 + len(FIELD_TIMES))
        draw_dynamics(flow, bottom, limits, seed)
        panels += list(bottom)
    for ax in panels:
        ax.set_xlim(*limits)
        ax.set_ylim(*limits)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
        if not ax.get_xlabel():
            ax.set_xlabel("x₁", fontsize=8)
            ax.set_ylabel("x₂", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def draw_dynamics(flow: Flow, axes: Any, limits: tuple[float, float], seed: int, particles: int = 150) -> None:
    """Trajectories ``z(t)``, ``t ∈ [0, 1]``, of base points (``axes[0]``) and ``f(t, ·)`` at FIELD_TIMES, the
    arrows coloured by the speed ``‖f‖`` on one scale (one colour bar for the three)."""
    bijector: Any = flow.bijector
    like = reference(flow)
    times = torch.linspace(0, 1, 21, dtype=like.dtype, device=like.device)
    with global_rng(seed, "plot-trajectory"), torch.enable_grad():
        z = flow.base.sample((particles,))
        paths = bijector.trajectory(z, times).detach().cpu().numpy()
    for k in range(particles):
        axes[0].plot(paths[:, k, 0], paths[:, k, 1], color="0.6", linewidth=0.4)
    axes[0].scatter(paths[0, :, 0], paths[0, :, 1], s=3, color="tab:blue", label="t=0 (base)")
    axes[0].scatter(paths[-1, :, 0], paths[-1, :, 1], s=3, color="tab:orange", label="t=1 (data)")
    axes[0].legend(fontsize=6, loc="upper right")
    axes[0].set_title("trajectories z(t)")
    axes[0].set_xlabel("z₁(t)", fontsize=8)
    axes[0].set_ylabel("z₂(t)", fontsize=8)
    points = grid(limits, 17, like)
    fields = []
    for t in FIELD_TIMES:
        with torch.enable_grad():
            velocity = bijector.field(torch.tensor(t, dtype=like.dtype, device=like.device), points).detach().cpu()
        fields.append(velocity)
    xy = points.cpu().numpy()
    fastest = max(float(v.norm(dim=-1).max()) for v in fields) or 1.0
    for ax, t, velocity in zip(axes[1:], FIELD_TIMES, fields, strict=True):
        speed = velocity.norm(dim=-1).numpy()
        arrows = ax.quiver(
            xy[:, 0], xy[:, 1], velocity[:, 0].numpy(), velocity[:, 1].numpy(), speed, cmap="viridis", clim=(0, fastest)
        )
        ax.set_title(f"vector field f(t={t:g}, z)")
        ax.set_xlabel("z₁", fontsize=8)
        ax.set_ylabel("z₂", fontsize=8)
    axes[-1].figure.colorbar(arrows, ax=list(axes[1:]), label="speed ‖f(t, z)‖", shrink=0.85)


def image_side(dim: int) -> int | None:
    """The side of a square image of ``dim`` pixels (8 for the 64 of digits), or ``None`` if ``dim`` is no square."""
    side = round(dim**0.5)
    return side if side * side == dim and side > 1 else None


def mosaic(images: torch.Tensor, side: int, columns: int = 8) -> torch.Tensor:
    """``[n, side²]`` images tiled ``columns`` to a row, one blank pixel between them, as one 2-D array."""
    n = len(images)
    rows = -(-n // columns)
    out = torch.full((rows * (side + 1) - 1, columns * (side + 1) - 1), float("nan"))
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        out[r * (side + 1) : r * (side + 1) + side, c * (side + 1) : c * (side + 1) + side] = image.reshape(side, side)
    return out


def labelled_images(flow: Flow, dataset: DatasetSpec, *, columns: int = 8, seed: int = 0) -> tuple[Any, Any, int]:
    """For a flow conditioned on a dataset's class labels: one row per label ``k``, ``columns`` test images of label
    ``k`` (the first ones of the test split; NaN, drawn blank, where it has fewer) and ``columns`` samples
    ``x ~ p(x | k)``: ``(data, samples, classes)``, the images as two ``[classes · columns, dim]`` tensors."""
    from flowlab.runconfig import check_dataset_context, dataset_context

    check_dataset_context(dataset, flow.context_dim)
    classes = dataset.num_classes
    test, labels = dataset.test_points(0, generator(seed, "plot-data")), dataset.test_labels()
    data = torch.full((classes * columns, dataset.dim), float("nan"))
    for k in range(classes):
        rows = test[labels == k][:columns]
        data[k * columns : k * columns + len(rows)] = rows
    like = reference(flow)
    context = dataset_context(dataset, torch.arange(classes).repeat_interleave(columns), like.device).to(like.dtype)
    with global_rng(seed, "plot-flow"), torch.set_grad_enabled(uses_autograd(flow)):
        samples = flow.sample(len(context), context=context).detach().cpu().to(torch.float32)
    return data, samples, classes


def image_figure(flow: Flow, dataset: DatasetSpec, *, count: int = 64, seed: int = 0, title: str | None = None) -> Any:
    """Square-image data (digits): ``count`` test images beside ``count`` samples ``x = f(z)``, each as a grid of
    8 to a row, on one grey scale from the data's range (samples clamped to it, as pixels are). A flow conditioned
    on the dataset's labels: one row per label instead (:func:`labelled_images`), data and samples of that label."""
    side = image_side(flow.dim)
    if side is None or dataset.dim != flow.dim:
        raise OptionError(
            f"plot: an image grid needs square images (dim = side²) of the flow's dimension, got dim {flow.dim} "
            f"and data of dim {dataset.dim}"
        )
    plt = pyplot()
    if flow.context_dim:
        data, samples, classes = labelled_images(flow, dataset, seed=seed)
        what = (
            f"test data, one row per label 0..{classes - 1}",
            f"samples x ~ p(x | label), rows: labels 0..{classes - 1}",
        )
    else:
        data = dataset.test_points(count, generator(seed, "plot-data"))[:count]
        with global_rng(seed, "plot-flow"), torch.set_grad_enabled(uses_autograd(flow)):
            samples = flow.sample(count).detach().cpu().to(torch.float32)
        what = ("test data", "samples x = f(z)")
    low, high = float(data.nan_to_num(float("inf")).min()), float(data.nan_to_num(float("-inf")).max())
    fig, axes = plt.subplots(1, 2, figsize=(10.6, 5.4), layout="constrained")
    for ax, images, heading in ((axes[0], data, what[0]), (axes[1], samples.clamp(low, high), what[1])):
        shown = ax.imshow(mosaic(images, side).numpy(), cmap="gray_r", vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(f"{heading} ({len(images)} images, {side}×{side} pixels)", fontsize=9)
        ax.set_axis_off()
    fig.colorbar(shown, ax=list(axes), label="pixel value (samples clamped to the data's range)", shrink=0.7)
    if title:
        fig.suptitle(title)
    return fig


def plot_images(
    flow: Flow,
    dataset: DatasetSpec,
    path: str,
    *,
    count: int = 64,
    seed: int = 0,
    fmt: str | None = None,
    title: str | None = None,
) -> None:
    """Save :func:`image_figure` to ``path`` in format ``fmt`` (default: from the suffix of ``path``)."""
    fig = image_figure(flow, dataset, count=count, seed=seed, title=title)
    fig.savefig(path, dpi=72, format=fmt)
    pyplot().close(fig)


def animate_flow(
    flow: Flow,
    dataset: DatasetSpec,
    path: str,
    *,
    n: int = 1000,
    frames: int = 48,
    fps: int = 12,
    seed: int = 0,
    title: str | None = None,
) -> None:
    """A GIF of ``n`` base points ``z ~ N(0, I)`` carried by a continuous flow's ODE from t = 0 (base) to t = 1
    (data), one frame per time of ``frames`` equally spaced ones (then held), over the data in grey; written with
    matplotlib's ``PillowWriter`` (pillow comes with matplotlib). 2D continuous flows only."""
    bijector = continuous_flow(flow.bijector)
    if bijector is None:
        raise OptionError(
            f"plot --animate: an animation follows the ODE of a continuous flow; this flow's bijector "
            f"({type(bijector).__name__}) has no trajectory"
        )
    if flow.dim != 2 or dataset.dim != 2:
        raise OptionError(f"plot --animate: 2D flows and data only, got dim {flow.dim} and {dataset.dim}")
    plt = pyplot()
    from matplotlib.animation import FuncAnimation, PillowWriter

    like = reference(flow)
    times = torch.linspace(0, 1, frames, dtype=like.dtype, device=like.device)
    with global_rng(seed, "plot-animate"), torch.enable_grad():
        z = flow.base.sample((n,))
        paths = bijector.trajectory(z, times).detach().cpu().numpy()
    drawn, count = data_points(dataset, n, seed)
    data = drawn.numpy()
    limits = square_limits(torch.from_numpy(data))
    fig, ax = plt.subplots(figsize=(4.8, 4.8))  # a layout engine would re-run at every frame: placed once instead
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.07, top=0.88)
    label = f"data: {short_name(dataset.name)} ({count})"
    ax.scatter(data[:, 0], data[:, 1], s=2, color="0.82", linewidths=0, label=label)
    points = ax.scatter(paths[0, :, 0], paths[0, :, 1], s=2, color="tab:orange", linewidths=0, label="z(t)")
    ax.set_xlim(*limits)
    ax.set_ylim(*limits)
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="upper right")
    heading = ax.set_title("")
    if title:
        fig.suptitle(title, fontsize=8)
    held = frames + max(1, fps // 2)  # the last frame held for half a second

    def draw(frame: int) -> Any:
        k = min(frame, frames - 1)
        points.set_offsets(paths[k])
        heading.set_text(f"t = {float(times[k]):.2f} (0: base, 1: data)")
        return (points, heading)

    animation = FuncAnimation(fig, draw, frames=held, blit=False)
    # pillow picks the format from the file name: write a .gif beside ``path`` (which may be a temporary name)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(path))) as folder:
        gif = os.path.join(folder, "animation.gif")
        animation.save(gif, writer=PillowWriter(fps=fps), dpi=72)
        os.replace(gif, path)
    plt.close(fig)


def plot_curves(history: list[dict[str, Any]], path: str, *, fmt: str | None = None, title: str) -> None:
    """Save :func:`curves_figure` to ``path`` in format ``fmt`` (default: from the suffix of ``path``)."""
    fig = curves_figure(history, title=title)
    fig.savefig(path, dpi=72, format=fmt)
    pyplot().close(fig)


def curves_figure(history: list[dict[str, Any]], *, title: str) -> Any:
    """A run's learning curves from its checkpoint's ``history``: the NLL of as many training rows as the
    validation split and the validation NLL at every evaluation (a finite dataset), with the best step marked; a
    stream's batch loss and held-out NLL."""
    plt = pyplot()
    steps = [entry["step"] for entry in history]
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    validated = any("validation_nll" in entry for entry in history)
    curves = (
        (("train_nll", "train NLL (fixed training rows)", "tab:blue"), ("validation_nll", "validation NLL", "tab:red"))
        if validated
        else (("loss", "training loss (the step's batch)", "tab:blue"), ("test_nll", "held-out NLL", "tab:red"))
    )
    for key, label, colour in curves:
        points = [(entry["step"], entry[key]) for entry in history if key in entry]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", markersize=2.5, linewidth=1.2, color=colour, label=label)
    if validated:
        best = min((entry for entry in history if "validation_nll" in entry), key=lambda e: e["validation_nll"])
        ax.axvline(best["step"], color="0.4", linestyle="--", linewidth=1)
        ax.plot(
            [best["step"]],
            [best["validation_nll"]],
            marker="*",
            markersize=12,
            color="tab:red",
            linestyle="none",
            label=f"best: step {best['step']}, {best['validation_nll']:.2f} nats (best.pt)",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("NLL (nats)")
    ax.set_xlim(0, max(steps, default=1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def paths_figure(flows: Sequence[tuple[str, Flow]], z: torch.Tensor, *, title: str) -> Any:
    """The ODE paths ``z(t)``, ``t ∈ [0, 1]``, of the base points ``z`` (``[n, 2]``) under each continuous flow of
    ``flows`` (``(label, flow)`` pairs), one panel each, titled with the label, the paths' straightness (mean
    distance from their chords over the chords' mean length, :func:`flowlab.ode.straightness`; 0: straight) and the
    NFE of the solve."""
    from flowlab.ode import straightness

    plt = pyplot()
    fig, axes = plt.subplots(1, len(flows), figsize=(4.2 * len(flows), 4.4), layout="constrained", squeeze=False)
    times = torch.linspace(0.0, 1.0, 33)
    for ax, (label, flow) in zip(axes[0], flows, strict=True):
        ode = continuous_flow(flow.bijector)
        if ode is None:
            raise OptionError(f"plot: {label} is not a continuous flow: it has no paths")
        like = reference(flow)
        start = z.to(like)
        with torch.no_grad():
            paths = ode.trajectory(start, times.to(like)).cpu()
        nfe = ode.nfe
        bend = straightness(ode, start) / float((paths[-1] - paths[0]).norm(dim=1).mean())
        for k in range(len(z)):
            ax.plot(paths[:, k, 0], paths[:, k, 1], color="0.6", linewidth=0.4)
        ax.scatter(paths[0, :, 0], paths[0, :, 1], s=3, color="tab:blue", label="t = 0 (base)")
        ax.scatter(paths[-1, :, 0], paths[-1, :, 1], s=3, color="tab:orange", label="t = 1 (data)")
        ax.set_title(f"{label}: straightness {bend:.3f}, NFE {nfe}", fontsize=10)
        ax.set_xlabel("z₁(t)", fontsize=8)
        ax.set_ylabel("z₂(t)", fontsize=8)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    return fig
