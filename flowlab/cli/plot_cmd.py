"""``flowlab plot RUN --out FILE.png``: data, learned density and samples (and ODE dynamics) in one picture;
``--animate``, ``--curves``."""

from __future__ import annotations

import argparse
from typing import Any

from flowlab.cli.console import console
from flowlab.cli.plugin_files import add_plugin_argument, load_plugin_files
from flowlab.cli.runs import add_run_arguments, load_run


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="picture of a trained 2D flow, image grids of a flow on square images, a run's learning curves "
        "(needs matplotlib)",
        description="Draw the data, the learned density as a heatmap and samples side by side; for continuous flows "
        "also particle trajectories over t and the vector field at t = 0, 0.5, 1. For square images (digits: 64 = 8×8) "
        "a grid of 64 test images beside 64 samples. --animate FILE.gif (continuous 2D flows): samples moving from "
        "the base (t = 0) to the data (t = 1). --curves FILE.png: the run's train and validation NLL per step with "
        "the best step marked (a stream: batch loss and held-out NLL). RUN is a run folder (its best.pt by default) "
        "or a checkpoint file. Needs the 'plot' extra (pip install -e '.[plot]' from the root of a flowlab checkout).",
    )
    add_run_arguments(parser)
    parser.add_argument("--out", help="image file, e.g. flow.png (--out, --animate and/or --curves)")
    parser.add_argument(
        "--animate", metavar="GIF", help="also (or only) write an animation of samples moving from base to data"
    )
    parser.add_argument("--frames", type=int, default=48, help="times t of the animation (default 48)")
    parser.add_argument(
        "--curves", metavar="FILE", help="also (or only) write the run's learning curves, e.g. curves.png"
    )
    parser.add_argument(
        "--data",
        help="registered dataset to draw beside it (default: the run's); for a run made on a data file, where that "
        "file is now if it moved",
    )
    parser.add_argument("-n", type=int, default=2000, help="points to scatter (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn points (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_plugin_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowlab.checkpoint import atomic_write, run_history, step_score
    from flowlab.datafiles import canonical, resolve_dataset, short_name
    from flowlab.errors import OptionError
    from flowlab.plotting import check_picture_path, image_side, plot_curves, plot_flow, plot_images, run_title

    load_plugin_files(args.plugins)
    if args.out is None and args.animate is None and args.curves is None:
        raise OptionError(
            "plot: expected --out FILE (a picture), --animate FILE.gif (an animation) and/or --curves FILE (the "
            "learning curves)"
        )
    # fail early, before loading anything, if matplotlib is missing or cannot write the files' formats
    fmt = check_picture_path(args.out, "--out") if args.out is not None else "png"
    curves_fmt = check_picture_path(args.curves, "--curves") if args.curves is not None else "png"
    if args.frames < 2:
        raise OptionError(f"plot: expected --frames >= 2 (t = 0 and t = 1 at least), got {args.frames}")
    flow, config, checkpoint, _ = load_run(args, args.data)
    dataset = resolve_dataset(canonical(args.data) if args.data else config.data)
    step = checkpoint["step"]
    scored = step_score(checkpoint)
    nll, held_out = (None, "held-out") if scored is None else (scored[1], scored[0])
    title = run_title(config.flow, config.data, step, nll, held_out)
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

        def animate(tmp: str) -> None:
            animate_flow(flow, dataset, tmp, n=n, frames=args.frames, seed=args.seed, title=title)

        atomic_write(args.animate, animate)
        console().print(f"wrote {args.animate}")
    if args.curves is not None:
        history = run_history(args.run)
        heading = f"{config.flow} on {short_name(config.data)}: NLL every {config.eval_every} steps"

        def draw_curves(tmp: str) -> None:
            plot_curves(history, tmp, fmt=curves_fmt, title=heading)

        atomic_write(args.curves, draw_curves)
        console().print(f"wrote {args.curves}")
    return 0
