"""``flowlab eval RUN`` (or ``--model MODULE:ATTR --data D``): test NLL of a trained flow (a run's best checkpoint by
default), in nats and bits/dim, with its standard error."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING, Any

from rich.table import Table

from flowlab.cli.console import console
from flowlab.cli.plugin_files import add_plugin_argument, load_plugin_files
from flowlab.cli.runs import add_run_arguments, load_run

if TYPE_CHECKING:
    from flowlab.evaluation import NLL


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="held-out NLL of a trained flow",
        description="Report the mean NLL of held-out points in nats and bits/dim with its standard error, and the "
        "gap to the dataset's entropy. A finite dataset (digits, a data file) is evaluated on its whole test split, "
        "which training never touches (it validates on another split); digits' bits/dim are those of the "
        "dequantised pixels. A stream (the 2D toys) is evaluated on -n fresh draws. A conditional flow (trained "
        "with -o context_dim) is evaluated at the test rows' labels: -log q(x | label). RUN is a run folder (its "
        "best.pt by default) or a checkpoint file; the command says which checkpoint it used (on stderr). "
        "--model MODULE:ATTR evaluates a flow defined in Python instead (a Flow, a Bijector, or a velocity field "
        "trained elsewhere, e.g. by torchcfm, made a CNF with the exact trace: docs/adapters.md).",
    )
    add_run_arguments(parser, required=False)
    parser.add_argument(
        "--model",
        metavar="MODULE:ATTR",
        help="instead of RUN: a Flow, Bijector or velocity field (nn.Module, or a function returning one) in a "
        "module or .py file; needs --data",
    )
    parser.add_argument(
        "--time",
        choices=("t_first", "t_last", "concat"),
        default="t_first",
        help="how a --model velocity field takes time: model(t, x), model(x, t) (flow_matching), "
        "model(cat([x, t])) (torchcfm's MLP) (default t_first)",
    )
    parser.add_argument("--rtol", type=float, default=1e-5, help="a --model velocity field's solver rtol (1e-5)")
    parser.add_argument("--atol", type=float, default=1e-5, help="a --model velocity field's solver atol (1e-5)")
    parser.add_argument(
        "--data",
        help="a registered dataset to evaluate on (default: the run's; needed with --model); for a run made on a "
        "data file, where that file is now if it moved (the same content: its SHA-256 is checked)",
    )
    parser.add_argument("-n", type=int, default=20000, help="held-out points (default 20000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the held-out draw (default 1)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_plugin_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowlab.datafiles import canonical, display_name, resolve_dataset, short_name
    from flowlab.errors import OptionError
    from flowlab.evaluation import test_nll

    load_plugin_files(args.plugins)
    if args.n < 2:
        raise OptionError(f"eval: expected -n >= 2 (a standard error needs two points), got {args.n}")
    if (args.run is None) == (args.model is None):
        raise OptionError("eval: expected RUN (a run folder or a checkpoint file) or --model MODULE:ATTR, one of them")
    if args.model is not None:
        return run_model(args)
    flow, config, checkpoint, file = load_run(args, args.data)
    dataset = resolve_dataset(canonical(args.data) if args.data else config.data)
    if dataset.dim != flow.dim:
        raise OptionError(f"eval: the flow is {flow.dim}-dimensional but dataset {dataset.name!r} is {dataset.dim}-d")
    # a finite dataset (digits, a file): its whole test split (dequantised by this seed), whatever -n says; a
    # conditional flow at the test rows' labels
    nll = test_nll(flow, dataset, n=args.n, seed=args.seed, device=args.device)
    head = {
        "checkpoint": str(file),
        "flow": config.flow,
        "objective": config.objective,
        "data": display_name(dataset.name),
        "step": checkpoint["step"],
        "context_dim": flow.context_dim,
    }
    name = short_name(dataset.name)
    scored = f"the test split of {name}" if dataset.finite else f"{nll.n} fresh draws of {name}"
    scored += " at its labels" if flow.context_dim else ""
    title = f"{config.flow} at step {checkpoint['step']}: NLL on {scored} ({nll.n} points)"
    return report(args, head, nll, dataset.entropy, flow, title)


def run_model(args: argparse.Namespace) -> int:
    """``flowlab eval --model MODULE:ATTR --data D``: the held-out NLL of a flow defined in Python."""
    from flowlab.adapters.reference import flow_from_reference
    from flowlab.datafiles import display_name, resolve_dataset
    from flowlab.errors import OptionError
    from flowlab.evaluation import held_out, held_out_nll
    from flowlab.ode import SolverConfig
    from flowlab.seeding import generator, global_rng

    if args.data is None:
        raise OptionError("eval: --model needs --data (the dataset to evaluate on)")
    dataset = resolve_dataset(args.data)
    solver = SolverConfig(rtol=args.rtol, atol=args.atol)
    flow = flow_from_reference(args.model, dataset.dim, time=args.time, solver=solver).to(args.device)
    if flow.context_dim:
        raise OptionError("eval: --model evaluates unconditional flows; train a conditional one with flowlab train")
    test = held_out(dataset, args.n, generator(args.seed, "eval"), context_dim=0, device=args.device)
    parameter = next(flow.parameters(), None)
    points = test.points if parameter is None else test.points.to(parameter.dtype)
    with global_rng(args.seed, "eval-flow"):
        nll = held_out_nll(flow, points)
    head = {"model": args.model, "data": display_name(dataset.name)}
    title = f"{args.model}, held-out {display_name(dataset.name)} (n={nll.n})"
    return report(args, head, nll, dataset.entropy, flow, title)


def report(
    args: argparse.Namespace, head: dict[str, Any], nll: NLL, entropy: float | None, flow: Any, title: str
) -> int:
    """Print ``head`` and the NLL's numbers as JSON (``--json``) or as a table titled ``title``; exit 0."""
    from flowlab.ode import continuous_flow

    result = {
        **head,
        "n": nll.n,
        "nll_nats": nll.nats,
        "se_nats": nll.se,
        "bits_per_dim": nll.bits_per_dim,
        "se_bits_per_dim": nll.se_bits_per_dim,
        "entropy_nats": entropy,
        "gap_nats": nll.gap(entropy),
        # an ODE flow's last solve (exact trace in eval mode)
        "nfe": None if (ode := continuous_flow(flow.bijector)) is None else ode.nfe,
    }
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    table = Table(title=title)
    for column in ("", "nats", "bits/dim"):
        table.add_column(column, justify="right")
    table.add_row("NLL ± SE", f"{nll.nats:.4f} ± {nll.se:.4f}", f"{nll.bits_per_dim:.4f} ± {nll.se_bits_per_dim:.4f}")
    gap = nll.gap(entropy)
    if entropy is not None and gap is not None:
        per_bit = nll.dim * math.log(2)
        table.add_row("entropy H(p)", f"{entropy:.4f}", f"{entropy / per_bit:.4f}")
        table.add_row("gap NLL − H", f"{gap:.4f}", f"{gap / per_bit:.4f}")
    if result["nfe"] is not None:
        table.add_row("NFE (last solve)", str(result["nfe"]), "")
    console().print(table)
    return 0
