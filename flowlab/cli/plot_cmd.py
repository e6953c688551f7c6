"""``flowlab plot CKPT --out FILE.png``: data, learned density and samples (and ODE dynamics) in one picture."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flowlab.cli.console import console
from flowlab.cli.plugin_files import add_plugin_argument, load_plugin_files


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="picture of a trained 2D flow, or image grids of a flow on square images (needs matplotlib)",
        description="Draw the data, the learned density as a heatmap and samples side by side; for continuous flows "
        "also particle trajectories over t and the vector field at t = 0, 0.5, 1. For square images (digits: 64 = 8×8) "
        "a grid of 64 test images beside 64 samples. --animate FILE.gif (continuous 2D flows): samples moving from "
        "the base (t = 0) to the data (t = 1). Needs the 'plot' extra "
        "(pip install -e '.[plot]' from the root of a flowlab checkout).",
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by 'flowlab train'")
    parser.add_argument("--out", help="image file, e.g. flow.png (--out and/or --animate)")
    parser.add_argument(
        "--animate", metavar="GIF", help="also (or only) write an animation of samples moving from base to data"
    )
    parser.add_argument("--frames", type=int, default=48, help="times t of the animation (default 48)")
    parser.add_argument("--data", help="registered dataset to draw beside it (default: the one it was trained on)")
    parser.add_argument("-n", type=int, default=2000, help="points to scatter (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn points (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_plugin_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowlab.checkpoint import atomic_write, load_flow
    from flowlab.datafiles import display_name, resolve_dataset
    from flowlab.errors import OptionError
    from flowlab.plotting import image_side, plot_flow, plot_images, pyplot, run_title

    load_plugin_files(args.plugins)
    if args.out is None and args.animate is None:
        raise OptionError("plot: expected --out FILE (a picture) and/or --animate FILE.gif (an animation)")
    pyplot()  # fail early, before loading anything, if matplotlib is missing
    flow, config, checkpoint = load_flow(args.checkpoint, args.device)
    dataset = resolve_dataset(args.data or config.data)
    fmt = Path(args.out or "").suffix.lstrip(".") or "png"
    nll = next((entry["test_nll"] for entry in reversed(checkpoint["history"]) if "test_nll" in entry), None)
    title = run_title(config.flow, display_name(config.data), checkpoint["step"], nll)
    images = flow.dim != 2 and image_side(flow.dim) is not None  # square images (digits): grids of samples

    def draw(tmp: str) -> None:
        if images:
            plot_images(flow, dataset, tmp, seed=args.seed, fmt=fmt, title=title)
        else:
            plot_flow(flow, dataset, tmp, n=args.n, seed=args.seed, fmt=fmt, title=title)

    if args.out is not None:
        atomic_write(args.out, draw)
        console().print(f"wrote {args.out}")
    if args.animate is not None:
        from flowlab.plotting import animate_flow

        n = min(args.n, 1000)
        if args.frames < 2:
            raise OptionError(f"plot: expected --frames >= 2 (t = 0 and t = 1 at least), got {args.frames}")
        frames = args.frames

        def animate(tmp: str) -> None:
            animate_flow(flow, dataset, tmp, n=n, frames=frames, seed=args.seed, title=title)

        atomic_write(args.animate, animate)
        console().print(f"wrote {args.animate}")
    return 0
