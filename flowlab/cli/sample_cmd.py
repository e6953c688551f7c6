"""``flowlab sample RUN -n N --out FILE``: draw points from a trained flow into .npy, .csv or .pt (of a conditional
flow: ``--label K``, all ``N`` at the label's context)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flowlab.cli.console import console
from flowlab.cli.plugin_files import add_plugin_argument, load_plugin_files
from flowlab.cli.runs import add_run_arguments, load_run

FORMATS = (".npy", ".csv", ".pt")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="draw points from a trained flow",
        description="Draw N points x = f(z), z ~ N(0, I) from a trained flow and write them (atomically) as .npy, "
        ".csv (one row per point, header x0,x1,...) or .pt (a float tensor of shape [N, dim]). For a continuous "
        "flow, --method and --steps choose the ODE solver (e.g. --method rk4 --steps 8: eight fixed steps, 32 "
        "function evaluations; default: the flow's own, adaptive dopri5) and the NFE of the solve is printed. A "
        "conditional flow (trained with -o context_dim on a dataset with labels, e.g. digits) samples x ~ p(x | "
        "label): --label K. RUN is a run folder (its best.pt by default) or a checkpoint file.",
    )
    add_run_arguments(parser)
    parser.add_argument("-n", type=int, default=1000, help="number of points (default 1000)")
    parser.add_argument("--out", required=True, help="output file: .npy, .csv or .pt")
    parser.add_argument("--seed", type=int, default=0, help="seed of the base draw (default 0)")
    parser.add_argument(
        "--label", type=int, metavar="K", help="class label to sample at (conditional flows only, e.g. 0..9 for digits)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--data", metavar="PATH", help="for a run made on a data file: where that file is now, if it moved"
    )
    add_solver_arguments(parser)
    add_plugin_argument(parser)
    parser.set_defaults(func=run)


def add_solver_arguments(parser: Any) -> None:
    """``--method`` and ``--steps`` for the ODE solve of a continuous flow (``sample`` and ``plot``)."""
    parser.add_argument(
        "--method",
        choices=("dopri5", "bosh3", "adaptive_heun", "rk4", "midpoint", "euler"),
        help="ODE solver of a continuous flow (default: the flow's own)",
    )
    parser.add_argument("--steps", type=int, help="equal steps of a fixed-step --method (rk4, midpoint, euler)")


def configure_solver(flow: Any, args: argparse.Namespace) -> None:
    """Apply ``--method``/``--steps`` to a continuous flow (:class:`OptionError` for a flow without a solver)."""
    if args.method is not None or args.steps is not None:
        from flowlab.ode import set_solver

        set_solver(flow.bijector, method=args.method, steps=args.steps)


def run(args: argparse.Namespace) -> int:
    import torch

    from flowlab.checkpoint import atomic_write
    from flowlab.datafiles import short_name
    from flowlab.errors import OptionError
    from flowlab.evaluation import uses_autograd
    from flowlab.ode import continuous_flow
    from flowlab.seeding import global_rng

    load_plugin_files(args.plugins)
    suffix = Path(args.out).suffix.lower()
    if suffix not in FORMATS:
        raise OptionError(f"sample: expected --out ending in {', '.join(FORMATS)}, got {args.out!r}")
    if args.n < 1:
        raise OptionError(f"sample: expected a positive -n, got {args.n}")
    flow, config, _, _ = load_run(args, args.data)
    configure_solver(flow, args)
    context = label_context(flow, config.data, args.label, args.device)
    with global_rng(args.seed, "sample"), torch.set_grad_enabled(uses_autograd(flow)):
        points = flow.sample(args.n, context=context).detach().cpu()
    atomic_write(args.out, lambda tmp: write_points(points, tmp, suffix))
    ode = continuous_flow(flow.bijector)
    how = "" if ode is None else f" with {ode.solver.describe()}, NFE {ode.nfe}"
    how += "" if args.label is None else f" at label {args.label}"
    data = short_name(config.data)
    console().print(f"wrote {args.n} samples of {config.flow} ({data}) to {args.out}{how}", soft_wrap=True)
    return 0


def label_context(flow: Any, data: str, label: int | None, device: str) -> Any:
    """The ``[context_dim]`` context of ``--label`` for a conditional flow trained on ``data`` (``None`` for an
    unconditional flow without ``--label``); an :class:`OptionError` for a label without a conditional flow, a
    conditional flow without a label, or a label the dataset does not have."""
    import torch

    from flowlab.datafiles import resolve_dataset
    from flowlab.errors import OptionError
    from flowlab.runconfig import check_dataset_context, dataset_context

    if not flow.context_dim:
        if label is not None:
            raise OptionError(
                f"sample --label {label}: the checkpoint's flow is unconditional (context_dim 0); --label needs a "
                "flow trained with -o context_dim=K on a dataset with labels (e.g. digits, -o context_dim=10)"
            )
        return None
    dataset = resolve_dataset(data)
    check_dataset_context(dataset, flow.context_dim)
    if label is None or not 0 <= label < dataset.num_classes:
        given = "none was given" if label is None else f"got --label {label}"
        raise OptionError(
            f"sample: the checkpoint's flow is conditional (context_dim {flow.context_dim}: the labels of "
            f"{dataset.name}); expected --label K with K in 0..{dataset.num_classes - 1}, {given}"
        )
    return dataset_context(dataset, torch.tensor([label]), device)[0]


def write_points(points: Any, path: str, suffix: str) -> None:
    """Write a ``[n, dim]`` tensor as ``suffix`` says (``path`` itself may have any name)."""
    import numpy as np
    import torch

    if suffix == ".pt":
        torch.save(points, path)
        return
    array = points.numpy()
    with open(path, "wb") as handle:
        if suffix == ".npy":
            np.save(handle, array)
        else:
            header = ",".join(f"x{i}" for i in range(array.shape[1]))
            np.savetxt(handle, array, delimiter=",", header=header, comments="", fmt="%.7g")
