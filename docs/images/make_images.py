"""Regenerate every picture the README and the docs show, with the commands they describe.

    OMP_NUM_THREADS=1 python docs/images/make_images.py [--only NAME ...] [--runs DIR]

Each picture comes from ``flowlab`` itself (``flowlab plot``, ``flowlab plot --curves``, ``flowlab compare``'s
picture, :func:`flowlab.plotting.paths_figure`), so it carries what those draw: a title naming the flow and the
dataset, axis labels, a colour bar for every colour scale, counts that say what was drawn. The runs it trains are
kept under ``--runs`` (default ``runs/images``) and reused when the script runs again; delete them to retrain.
``tests/test_docs_images.py`` checks that every picture a page shows is made here.

Time on the shared 2-core machine (one thread, load average 8-14): 44 minutes for the runs and pictures (the
2000-step FFJORD run 22 of them), plus the early-stopped digits run (2.5-10 minutes); from existing runs, redrawing
every picture takes about a minute.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent


def flowlab(*argv: str) -> None:
    """Run one ``flowlab`` command as its own process would; stop on failure."""
    from flowlab.cli import main

    print("flowlab", " ".join(argv), flush=True)
    if main(list(argv)) != 0:
        sys.exit(f"failed: flowlab {' '.join(argv)}")


def trained(runs: Path, name: str, *argv: str) -> str:
    """The run folder ``runs/name``, trained by ``flowlab train ARGV --out runs/name`` unless it is there."""
    folder = runs / name
    if not folder.exists():
        flowlab("train", *argv, "--out", str(folder))
    return str(folder)


def quickstart(runs: Path, out: Path) -> None:
    """README, Learn: stacked fitted to 8gaussians (its run folder's checkpoint.pt: a stream)."""
    run = trained(runs, "demo", "--flow", "stacked", "--data", "8gaussians", "--steps", "1500")
    flowlab("plot", run, "--out", str(out))


def validation_curves(runs: Path, out: Path) -> None:
    """README, Learn, and docs/data.md: train and validation NLL of stacked on digits, stopped early."""
    args = ["--flow", "stacked", "--data", "digits", "-o", "context_dim=10", "--steps", "3000", "--early-stop", "5"]
    flowlab("plot", trained(runs, "digits-early-stop", *args), "--curves", str(out))


def conditional_digits(runs: Path, out: Path) -> None:
    """docs/conditioning.md: test images and samples per label of a conditional stacked flow (its best.pt)."""
    args = ["--flow", "stacked", "--data", "digits", "-o", "context_dim=10", "--steps", "500"]
    run = trained(runs, "cond", *args)
    flowlab("eval", run)
    flowlab("plot", run, "--out", str(out))


def ffjord(runs: Path, out: Path) -> None:
    """docs/tutorial/03: FFJORD fitted to 8gaussians, with its trajectories and vector field."""
    run = trained(runs, "ffjord", "--flow", "ffjord", "--data", "8gaussians", "--steps", "2000")
    flowlab("plot", run, "--out", str(out))


def families(runs: Path, out: Path) -> None:
    """docs/tutorial/04: stacked, maf, nsf and residual on the checkerboard at one budget (flowlab compare)."""
    folder = runs / "families"
    flowlab("compare", "--flows", "stacked", "maf", "nsf", "residual", "--data", "checkerboard", "--steps", "1000",
            "--out", str(folder))  # fmt: skip
    out.write_bytes((folder / "compare.png").read_bytes())


def flow_matching_paths(runs: Path, out: Path) -> None:
    """docs/tutorial/05: the paths of FFJORD (maximum likelihood), cfm and otcfm on 8gaussians."""
    import torch

    from flowlab.checkpoint import load_flow, resolve_run
    from flowlab.plotting import paths_figure, pyplot

    common = ["--data", "8gaussians", "--eval-size", "512"]
    matching = ["--steps", "2000", "--eval-every", "1000"]
    folders = {
        "FFJORD (mle)": trained(runs, "tut-mle", "--flow", "ffjord", *common, "--steps", "1000", "--eval-every", "500"),
        "cfm": trained(runs, "tut-cfm", "--flow", "cnf", "--objective", "cfm", *common, *matching),
        "otcfm": trained(runs, "tut-ot", "--flow", "cnf", "--objective", "otcfm", *common, *matching),
    }
    flows = [(label, load_flow(resolve_run(folder)[0])[0]) for label, folder in folders.items()]
    z = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))  # the tutorial's base points
    fig = paths_figure(flows, z, title="8gaussians: the paths of 300 base points from t = 0 to t = 1")
    fig.savefig(out, dpi=72)
    pyplot().close(fig)


#: file name -> what draws it (a function of the runs' folder and the file to write)
IMAGES: dict[str, Callable[[Path, Path], None]] = {
    "quickstart-8gaussians.png": quickstart,
    "validation-curves.png": validation_curves,
    "conditional-digits.png": conditional_digits,
    "tutorial-ffjord-8gaussians.png": ffjord,
    "families-checkerboard.png": families,
    "tutorial-flow-matching-paths.png": flow_matching_paths,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(IMAGES), help="draw only these pictures")
    parser.add_argument("--runs", default="runs/images", help="where the runs are trained and kept")
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    for name in args.only or IMAGES:
        start = time.perf_counter()
        IMAGES[name](runs, HERE / name)
        print(f"wrote {HERE / name} ({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
