"""The conformance kit on the flows of other libraries (the ``peers`` plugin), written up as ``docs/peers.md``.

    OMP_NUM_THREADS=1 python benchmarks/peers.py                       # every peer flow, quick profile -> docs/peers.md
    OMP_NUM_THREADS=1 python benchmarks/peers.py zuko.nsf --out -      # some flows, the page on stdout
    OMP_NUM_THREADS=1 python benchmarks/peers.py --json peers.json     # also the raw runs

Every registered property runs on every peer flow (``flowlab.checks.runner.run_property``, CPU, the ``quick``
profile unless ``--profile``), exactly as ``flowlab check <flow>`` would. Each failure is classified from
:data:`KNOWN`, keyed by ``(flow, property)``: a bug of the peer, a limitation (by design, or of the adaptation), or
the solver's tolerance, with a sentence its maintainers can act on; a failure not in :data:`KNOWN` is reported as
*unclassified*, and a known one that no longer fails is listed as such. :func:`probes` adds findings of peer APIs the
adapters do not go through (checked directly, not by the kit).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import flowlab
from flowlab.adapters import peer_version
from flowlab.checks import checks
from flowlab.checks.runner import PropertyRun, run_property

LIBRARIES = ("torch", "zuko", "nflows", "normflows")
SYMBOLS = {"passed": "✓", "failed": "✗", "skipped": "–", "inconclusive": "?"}


@dataclass(frozen=True)
class Finding:
    """What a failure means: ``kind`` (``peer bug``, ``limitation``, ``solver tolerance``), why, and what to do."""

    kind: str
    reason: str
    action: str


PLANAR_FLOAT32 = Finding(
    "peer bug",
    "`Planar(act='leaky_relu').forward` builds h'(·) as `(x < 0) * (slope - 1.0) + 1.0`: a bool tensor times a Python "
    "float is a float32 tensor (the default dtype), so the forward log-det is float32 for float64 input (and off by "
    "float32 rounding, ~3e-8, where the kit compares it in float64)",
    "normflows, `flows/planar.py`: compute `h_` as `torch.where(x < 0, slope, 1.0)` on `lin`'s dtype, e.g. "
    "`(x < 0).to(lin.dtype) * (slope - 1) + 1`, so the log-det keeps the input's dtype.",
)
COMPOSITE_FLOAT32 = Finding(
    "peer bug",
    "`Composite._cascade` accumulates the log-dets into `torch.zeros(batch_size)`: default dtype (float32) on the "
    "CPU, so the log-det is float32 for float64 input (rounded: ~4e-8 errors in float64 comparisons) and on the CPU "
    "for CUDA input",
    "normflows, `flows/base.py`: start the sum with `inputs.new_zeros(batch_size)`, as `AffineCouplingBlock` and "
    "nflows' `CompositeTransform` do.",
)
MASKED_AFFINE_OVERFLOW = Finding(
    "peer bug",
    "`MaskedAffineFlow` exponentiates the conditioner's unbounded output for every coordinate and multiplies by "
    "`(1 - b)`: a few units from the data (|x| ≈ 30 here) `exp(-s)` overflows, and in the kept coordinates "
    "`0 · inf = NaN`, so coordinates that should pass through unchanged become NaN",
    "normflows, `flows/affine/coupling.py`: compute the kept part as `torch.where(b.bool(), z, ...)` (no `0 · exp`), "
    "and offer a bounded log-scale (e.g. a tanh soft clamp) for `MaskedAffineFlow`.",
)
ACTNORM_BATCH_OF_ONE = Finding(
    "peer bug",
    "`ActNorm`'s first call sets `s = -log(std + 1e-6)` from its batch; on a batch of one `z.std(dim=0)` is NaN "
    "(Bessel's correction divides by n - 1 = 0), so every output is NaN",
    "normflows, `flows/normalization.py`: refuse (or skip) the data-dependent initialisation on a batch of fewer "
    "than two rows, or use `std(unbiased=False)`.",
)
ACTNORM_EVAL_INIT = Finding(
    "peer bug",
    "`ActNorm` initialises `s` and `t` from the first batch it sees in eval mode too (`data_dep_init_done` is "
    "checked in `forward` and `inverse` whatever `self.training` is): a fresh model's first evaluation depends on "
    "the other rows of the batch (and is NaN on a batch of one)",
    "normflows: do the data-dependent initialisation only in training mode (as BatchNorm updates its statistics), "
    "or offer an explicit `initialize(batch)`.",
)

IMPORTANCE_SAMPLING_ESS = Finding(
    "limitation (of the kit)",
    "an *inconclusive*, not a failure: above 2 dims `normalization` estimates ∫p by importance sampling from a "
    "Student-t fitted to the flow's samples, and on this perturbed, sharply curved density the effective sample size "
    "fell below 5 % of the draws, so the kit declines to judge (Z and its SE are shown, never a silent pass)",
    "nothing for the library; flowlab: a proposal closer to the flow (e.g. a mixture fitted to its samples) would "
    "make this case judgeable.",
)

#: (flow, property) -> the classification of its failure, from the failure's counterexample and the peer's source
KNOWN: dict[tuple[str, str], Finding] = {
    **{(flow, "normalization"): IMPORTANCE_SAMPLING_ESS for flow in ("zuko.nsf", "nflows.maf", "zuko.maf")},
    **{
        ("normflows.planar", p): PLANAR_FLOAT32
        for p in ("dtype_device", "invertibility", "logdet", "sample_consistency")
    },
    **{
        ("normflows.composite", p): COMPOSITE_FLOAT32
        for p in ("dtype_device", "invertibility", "logdet", "sample_consistency")
    },
    **{
        (flow, p): MASKED_AFFINE_OVERFLOW
        for flow in ("normflows.realnvp", "normflows.composite")
        for p in ("normalization", "stress")
    },
    **{
        ("normflows.actnorm", p): ACTNORM_BATCH_OF_ONE
        for p in ("invertibility", "logdet", "sample_consistency", "gradients", "dtype_device", "stress")
    },
    ("normflows.actnorm", "batch_independence"): ACTNORM_EVAL_INIT,
}


def peer_flows(names: list[str]) -> list[str]:
    """The named flows, or every registered ``<library>.<flow>`` of :data:`LIBRARIES`."""
    if names:
        return names
    return [name for name in flowlab.flows() if name.split(".")[0] in LIBRARIES and "." in name]


def run_all(flows: list[str], profile: str, log: Callable[[str], None]) -> list[PropertyRun]:
    runs = []
    properties = list(checks().values())
    for flow in flows:
        spec = flowlab.flow_spec(flow)
        started = time.perf_counter()
        for check in properties:
            run = run_property(check, spec, "cpu", profile=profile)
            runs.append(run)
            if run.status in ("failed", "inconclusive"):
                log(f"  {flow} / {check.name}: {run.status} ({run.detail[:120]})")
        log(f"{flow}: {time.perf_counter() - started:.1f} s")
    return runs


def probes() -> list[tuple[str, str, str]]:
    """Findings in peer APIs the adapters do not use, measured directly: ``(what, observed, action)``."""
    found = []
    try:
        import normflows
    except ImportError:
        return found
    model = normflows.NormalizingFlow(
        normflows.distributions.DiagGaussian(2), [normflows.flows.MaskedAffineFlow(torch.tensor([1.0, 0.0]))]
    ).double()
    z = torch.randn(3, 2, dtype=torch.float64)
    _, forward = model.forward_and_log_det(z)
    _, inverse = model.inverse_and_log_det(z)
    if forward.dtype != torch.float64 or inverse.dtype != torch.float64:
        found.append(
            (
                "normflows `NormalizingFlow.forward_and_log_det` / `inverse_and_log_det` (also `forward_kld`)",
                f"float64 input gives log-dets of dtype {forward.dtype} / {inverse.dtype}: they accumulate into "
                "`torch.zeros(len(z), device=z.device)`, the default dtype (the adapter calls the layers one by one, "
                "so the kit's rows above show the layers' own dtypes)",
                "normflows: in `core.py`, start the sums with `torch.zeros(len(z), dtype=z.dtype, device=z.device)`.",
            )
        )
    return found


def markdown(runs: list[PropertyRun], profile: str, seconds: float) -> str:
    flows = list(dict.fromkeys(run.flow for run in runs))
    properties = [name for name in dict.fromkeys(run.check for run in runs) if _ran(runs, name)]
    cell = {(run.flow, run.check): run for run in runs}
    lines = [
        "# The conformance kit on other libraries' flows",
        "",
        "Written by `OMP_NUM_THREADS=1 python benchmarks/peers.py` (do not edit by hand): every property of "
        f"`flowlab check` on every flow of the `peers` plugin, CPU, `{profile}` profile, {seconds:.0f} s in all "
        f"(Python {platform.python_version()}). The adapters (`flowlab.adapters`) map each library's direction and "
        "sign and pass its dtype and device through unchanged, so what fails here is the peer's behaviour.",
        "",
        "| library | version |",
        "|---|---|",
        *(f"| {library} | {peer_version(library)} |" for library in LIBRARIES),
        "",
        "✓ passed, ✗ failed, ? inconclusive, – skipped (does not apply); properties that apply to none are left out.",
        "",
        "| flow | " + " | ".join(properties) + " | s |",
        "|---|" + "---|" * (len(properties) + 1),
    ]
    for flow in flows:
        total = sum(cell[(flow, name)].seconds for name in dict.fromkeys(run.check for run in runs))
        row = [SYMBOLS[cell[(flow, name)].status] for name in properties]
        lines.append(f"| `{flow}` | " + " | ".join(row) + f" | {total:.0f} |")
    failures = [run for run in runs if run.status in ("failed", "inconclusive")]
    lines += ["", "## Failures, by finding", ""]
    if not failures:
        lines.append("None.")
    groups: dict[int, tuple[Finding, list[PropertyRun]]] = {}
    for run in failures:
        finding = KNOWN.get((run.flow, run.check)) or Finding("unclassified", "not analysed yet", "—")
        groups.setdefault(id(finding), (finding, []))[1].append(run)
    for number, (finding, members) in enumerate(groups.values(), start=1):
        names = ", ".join(f"`{run.flow}` / `{run.check}`" for run in members)
        lines += [f"### {number}. {finding.kind}: {names}", "", f"- why: {finding.reason}."]
        lines += [f"- for the maintainers: {finding.action}", "- what the kit saw:"]
        for run in members:
            case = (
                run.counterexample.reproduce
                if run.counterexample
                else f"flowlab check {run.flow} --property {run.check}"
            )
            lines.append(
                f"  - `{run.flow}` / `{run.check}` ({run.status}): {_one_line(run.detail)}; reproduce: `{case}`"
            )
        lines.append("")
    loosened = [
        (flow, name, tolerance) for flow in flows for name, tolerance in flowlab.flow_spec(flow).tolerances.items()
    ]
    if loosened:
        lines += ["## Tolerances the peer flows declare (`FlowSpec.tolerances`), with their reasons", ""]
        lines += [f"- `{flow}` / `{name}`: {tol.value:g}: {tol.reason}" for flow, name, tol in loosened]
        lines.append("")
    fixed = [key for key in KNOWN if key in cell and cell[key].status == "passed"]
    if fixed:
        lines += ["## Known findings that no longer fail", ""]
        lines += [f"- `{flow}` / `{prop}`: {KNOWN[(flow, prop)].reason}" for flow, prop in fixed]
        lines.append("")
    found = probes()
    if found:
        lines += ["## Found outside the kit (peer APIs the adapters do not call; `probes()` in the script)", ""]
        lines += [f"- {what}: {observed}. {action}" for what, observed, action in found]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _ran(runs: list[PropertyRun], name: str) -> bool:
    return any(run.check == name and run.status != "skipped" for run in runs)


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flows", nargs="*", help="peer flows to check (default: all)")
    parser.add_argument("--profile", default="quick", help="the kit's Hypothesis profile (default: quick)")
    parser.add_argument("--out", default="docs/peers.md", help="where to write the page ('-': stdout)")
    parser.add_argument("--json", default=None, help="also write the raw runs to this JSON file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    runs = run_all(peer_flows(args.flows), args.profile, lambda line: print(line, file=sys.stderr, flush=True))
    page = markdown(runs, args.profile, time.perf_counter() - started)
    if args.out == "-":
        print(page, end="")
    else:
        Path(args.out).write_text(page)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(run) for run in runs], default=repr, indent=1))
    unclassified = [run for run in runs if run.status == "failed" and (run.flow, run.check) not in KNOWN]
    return 1 if unclassified else 0


if __name__ == "__main__":
    raise SystemExit(main())
