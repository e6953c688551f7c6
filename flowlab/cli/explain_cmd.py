"""``flowlab explain NAME [--jacobian]``: a flow's math, options and references; its Jacobian at a point. NAME may
also be a training objective (``mle``, ``cfm``, ``otcfm``, ``rectified``): its path, target and references."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from flowlab.cli.console import console, escape
from flowlab.cli.options import parse_options
from flowlab.cli.plugin_files import add_plugin_argument, load_plugin_files

if TYPE_CHECKING:
    from flowlab.jacobian import JacobianView
    from flowlab.objectives import ObjectiveSpec
    from flowlab.spec import FlowSpec, Option

#: shades from small to large magnitude; an exact zero is drawn blank
SHADES = "·░▒▓█"
#: up to this dimension the grid shows values; above it, only the shades
MAX_DIM_WITH_VALUES = 8


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="explain a flow's math; --jacobian also draws its Jacobian at a random point",
        description=(
            "Render a flow's explanation (transform, inverse, log-det and its cost, sign convention), its options "
            "and references, or a training objective's (mle, cfm, otcfm, rectified: the path, the regression "
            "target and why it has the right marginal field). With --jacobian, also compute the Jacobian ∂x/∂z at a "
            "random point and draw its structure (exact zeros blank), with log|det| from the flow and from "
            "torch.linalg.slogdet."
        ),
    )
    parser.add_argument("name", help="a registered flow (see 'flowlab list') or training objective (e.g. cfm)")
    parser.add_argument("--jacobian", action="store_true", help="draw the Jacobian at a random point")
    parser.add_argument("--dim", type=int, default=None, help="dimension for --jacobian (default: 6, or min_dim)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the parameters and the point (default 0)")
    parser.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="a flow option for --jacobian (JSON value, else a string); repeatable, e.g. --option permutation=none",
    )
    add_plugin_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flowlab.registry import flow_spec, objectives

    load_plugin_files(args.plugins)
    if args.name in objectives() and not args.jacobian:
        console().print(render_objective(objectives()[args.name]))
        return 0
    spec = flow_spec(args.name)
    view = None
    if args.jacobian:  # computed first: a bad --dim or --option is reported before anything is printed
        dim = args.dim if args.dim is not None else max(spec.min_dim, 6)
        view = compute(spec, dim, args.seed, parse_options(args.option))
    out = console()
    out.print(render_explanation(spec))
    if view is not None:
        out.print(render_jacobian(spec, view))
    return 0


def render_explanation(spec: FlowSpec) -> Panel:
    parts: list[Any] = [
        Text.from_markup(f"[bold]{escape(spec.summary)}[/]\nkind: {spec.kind}, log-det: {spec.logdet}"),
    ]
    if spec.explanation.strip():
        parts.append(Markdown(spec.explanation))
    else:
        parts.append(Text("This flow's plugin gives no explanation of its math.", style="yellow"))
    parts.extend(options_and_references("options", spec.options, spec.references))
    return Panel(Group(*parts), title=f"flowlab explain {spec.name}", title_align="left")


def render_objective(spec: ObjectiveSpec) -> Panel:
    """A training objective's summary, what it trains, its explanation, options and references."""
    trains = "/".join(sorted(spec.kinds)) + " flows" + (" with a vector field" if spec.needs_field else "")
    parts: list[Any] = [
        Text.from_markup(f"[bold]{escape(spec.summary)}[/]\ntrains: {trains}; default lr {spec.lr:g}"),
        Markdown(spec.explanation),
    ]
    parts.extend(options_and_references("options (flowlab train -O NAME=VALUE)", spec.options, spec.references))
    return Panel(Group(*parts), title=f"flowlab explain {spec.name} (training objective)", title_align="left")


def options_and_references(title: str, options: Mapping[str, Option], references: Sequence[str]) -> list[Any]:
    """A table of the options (name, default, allowed values, meaning) and the list of references, where there
    are any: the part a flow's and an objective's explanation share."""
    parts: list[Any] = []
    if options:
        table = Table(title=title, title_justify="left")
        for column in ("name", "default", "allowed", "meaning"):
            table.add_column(column, overflow="fold")
        for name, option in options.items():
            table.add_row(name, escape(repr(option.default)), escape(option.describe()), escape(option.help))
        parts.append(table)
    if references:
        parts.append(Markdown("**References**\n\n" + "\n".join(f"- {ref}" for ref in references)))
    return parts


def compute(spec: FlowSpec, dim: int, seed: int, options: dict[str, Any]) -> JacobianView:
    """The Jacobian of the kit's case bijector (built, parameters perturbed by the seed) at a random point."""
    import torch

    from flowlab.checks.cases import build_case_bijector
    from flowlab.jacobian import jacobian_view
    from flowlab.spec import Case

    if dim < spec.min_dim:
        from flowlab.errors import OptionError

        raise OptionError(f"{spec.name}: --dim must be at least {spec.min_dim}, got {dim}")
    bijector = build_case_bijector(spec, Case(dim=dim, batch=1, seed=seed, options=options))
    draw = torch.Generator().manual_seed(seed)
    point = torch.randn(dim, generator=draw, dtype=torch.float64)
    context_dim = int(getattr(bijector, "context_dim", 0))  # a conditional flow: the Jacobian in z at a drawn context
    context = torch.randn(context_dim, generator=draw, dtype=torch.float64) if context_dim else None
    return jacobian_view(bijector, point, context)


def render_jacobian(spec: FlowSpec, view: JacobianView) -> Group:
    """A grid of ``∂x_i/∂z_j`` shaded by magnitude (values shown up to d = 8), exact zeros blank; log-dets below."""
    matrix = view.matrix
    dim = matrix.shape[0]
    largest = float(matrix.abs().max()) or 1.0
    grid = Table(
        title=f"∂x/∂z of {spec.name} at a random point (d = {dim}); blank = exactly 0",
        show_header=True,
        header_style="dim",
        box=None,
        padding=(0, 1),
    )
    grid.add_column("x\\z", style="dim", justify="right")
    for j in range(dim):
        grid.add_column(str(j), justify="right")
    for i in range(dim):
        cells = []
        for j in range(dim):
            value = float(matrix[i, j])
            if value == 0.0:
                cells.append("")
                continue
            level = min(len(SHADES) - 1, int(abs(value) / largest * (len(SHADES) - 1) + 0.5))
            cells.append(f"{SHADES[level]}{value:+.2f}" if dim <= MAX_DIM_WITH_VALUES else SHADES[level])
        grid.add_row(str(i), *cells)
    zeros = int(view.zero_pattern.sum())
    summary = Text(
        f"{zeros} of {dim * dim} entries exactly zero; shade {SHADES!r} = |entry| relative to the largest.\n"
        f"log|det ∂x/∂z| from the flow:                       {view.logdet_flow:+.10f}\n"
        f"log|det| of the autograd Jacobian (torch slogdet): {view.logdet_autograd:+.10f}  "
        f"(difference {abs(view.logdet_flow - view.logdet_autograd):.1e})\n"
        f"condition number of ∂x/∂z: {view.condition:.1e}"
        + (
            ""
            if view.well_conditioned
            else " (ill-conditioned: a dense determinant loses about log10(cond) of float64's 16 digits, so the two "
            "log-dets may differ; the flow's own sum of per-layer terms does not suffer from this)"
        )
    )
    return Group(grid, summary)
