"""``flowlab eval CKPT``: held-out NLL of a trained flow, in nats and bits/dim, with its standard error."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from rich.table import Table

from flowlab.cli.console import console
from flowlab.cli.plugin_files import add_plugin_argument, load_plugin_files


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="held-out NLL of a trained flow",
        description="Draw fresh points from the dataset (the checkpoint's, or --data) and report the mean NLL in nats "
        "and bits/dim with its standard error, and the gap to the dataset's entropy. A finite dataset (digits, a "
        "data file) is evaluated on its whole test split; digits' bits/dim are those of the dequantised pixels. A "
        "conditional flow (trained with -o context_dim) is evaluated at the test rows' labels: -log q(x | label).",
    )
    parser.add_argument("checkpoint", metavar="CKPT", help="a checkpoint written by 'flowlab train'")
    parser.add_argument("--data", help="registered dataset to evaluate on (default: the one it was trained on)")
    parser.add_argument("-n", type=int, default=20000, help="held-out points (default 20000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the held-out draw (default 1)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_plugin_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowlab.checkpoint import load_flow
    from flowlab.datafiles import display_name, resolve_dataset
    from flowlab.errors import OptionError
    from flowlab.evaluation import held_out
    from flowlab.ode import continuous_flow
    from flowlab.seeding import generator, global_rng

    load_plugin_files(args.plugins)
    if args.n < 2:
        raise OptionError(f"eval: expected -n >= 2 (a standard error needs two points), got {args.n}")
    flow, config, checkpoint = load_flow(args.checkpoint, args.device)
    dataset = resolve_dataset(args.data or config.data)
    if dataset.dim != flow.dim:
        raise OptionError(f"eval: the flow is {flow.dim}-dimensional but dataset {dataset.name!r} is {dataset.dim}-d")
    # a finite dataset (digits, a file): its whole test split (dequantised by this seed), whatever -n says; a
    # conditional flow at the test rows' labels
    test = held_out(dataset, args.n, generator(args.seed, "eval"), context_dim=flow.context_dim, device=args.device)
    with global_rng(args.seed, "eval-flow"):
        nll = test.nll(flow)
    result = {
        "checkpoint": args.checkpoint,
        "flow": config.flow,
        "objective": config.objective,
        "data": display_name(dataset.name),
        "step": checkpoint["step"],
        "context_dim": flow.context_dim,
        "n": nll.n,
        "nll_nats": nll.nats,
        "se_nats": nll.se,
        "bits_per_dim": nll.bits_per_dim,
        "se_bits_per_dim": nll.se_bits_per_dim,
        "entropy_nats": dataset.entropy,
        "gap_nats": nll.gap(dataset.entropy),
        # an ODE flow's last solve (exact trace in eval mode)
        "nfe": None if (ode := continuous_flow(flow.bijector)) is None else ode.nfe,
    }
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    scored = f"the test split of {display_name(dataset.name)}" if dataset.finite else display_name(dataset.name)
    scored += " at its labels" if flow.context_dim else ""
    table = Table(title=f"{config.flow} after {checkpoint['step']} steps, held-out {scored} (n={nll.n})")
    for column in ("", "nats", "bits/dim"):
        table.add_column(column, justify="right")
    table.add_row("NLL ± SE", f"{nll.nats:.4f} ± {nll.se:.4f}", f"{nll.bits_per_dim:.4f} ± {nll.se_bits_per_dim:.4f}")
    gap = nll.gap(dataset.entropy)
    if dataset.entropy is not None and gap is not None:
        per_bit = nll.dim * math.log(2)
        table.add_row("entropy H(p)", f"{dataset.entropy:.4f}", f"{dataset.entropy / per_bit:.4f}")
        table.add_row("gap NLL − H", f"{gap:.4f}", f"{gap / per_bit:.4f}")
    if result["nfe"] is not None:
        table.add_row("NFE (last solve)", str(result["nfe"]), "")
    console().print(table)
    return 0
