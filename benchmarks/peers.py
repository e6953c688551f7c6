"""The conformance kit on the flows of other libraries (the ``peers`` plugin), written up as ``docs/peers.md``.

    OMP_NUM_THREADS=1 python benchmarks/peers.py                       # every peer flow, quick profile -> docs/peers.md
    OMP_NUM_THREADS=1 python benchmarks/peers.py zuko.nsf --out -      # some flows, the page on stdout
    OMP_NUM_THREADS=1 python benchmarks/peers.py --json peers.json     # also the raw runs
    OMP_NUM_THREADS=1 python benchmarks/peers.py --runs peers.json     # the page again from saved runs (no checks;
                                                                       # several files: their runs together)

Every registered property runs on every peer flow (``flowlab.checks.run_property``, CPU, the ``quick`` profile
unless ``--profile``), exactly as ``flowlab check <flow>`` would. Each failure is classified from :data:`KNOWN`, keyed
by ``(flow, property)``: a **peer bug** (with a fix to suggest), a **peer limitation** (a documented or deliberate
behaviour), or a **limit of the kit** (or of flowlab's adaptation; with what it waits on); a failure not in
:data:`KNOWN` is reported as *unclassified* (exit 1), and a known one that no longer fails is listed as such.

Written for the peers' maintainers: every peer bug and limitation has a reproduction in ``benchmarks/peer_bugs/``
that imports only torch and the library (no flowlab), prints what was expected and what happened, and is
**executed** by this script, which records its code and its output in the page.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import flowlab
from flowlab.adapters import peer_version
from flowlab.checks import checks, run_property

#: plugin prefix -> the distribution whose version the page lists
LIBRARIES = {
    "torch": "torch",
    "zuko": "zuko",
    "nflows": "nflows",
    "normflows": "normflows",
    "pyro": "pyro-ppl",
    "freia": "FrEIA",
    "torchcfm": "torchcfm",
}
SYMBOLS = {
    "passed": "✓",
    "failed": "✗",
    "inconclusive": "?",
    "uncovered": "u",
    "skipped": "s",
    "not_applicable": "–",
}
REPRODUCTIONS = Path(__file__).with_name("peer_bugs")
KIT = "issue 18 (the flow contract; the kit is the lead's)"


@dataclass(frozen=True)
class Finding:
    """What a failure means: ``kind`` (``peer bug``, ``peer limitation``, ``limit of the kit``), in which library,
    why, what to do (a suggested fix, or what it waits on), and the plain-torch ``reproduction`` (a file of
    :data:`REPRODUCTIONS`) where there is one."""

    kind: str
    library: str
    reason: str
    action: str
    reproduction: str | None = None


PLANAR_FLOAT32 = Finding(
    "peer bug",
    "normflows",
    "`Planar(act='leaky_relu').forward` builds h'(·) as `(x < 0) * (slope - 1.0) + 1.0`: a bool tensor times a Python "
    "float is a float32 tensor (the default dtype), so the forward log-det is float32 for float64 input (and off by "
    "float32 rounding, ~3e-8, where the kit compares it in float64)",
    "normflows, `flows/planar.py`: compute `h_` in `lin`'s dtype, e.g. `(x < 0).to(lin.dtype) * (slope - 1) + 1`.",
    "normflows_planar_float32.py",
)
COMPOSITE_FLOAT32 = Finding(
    "peer bug",
    "normflows",
    "`Composite._cascade` accumulates the log-dets into `torch.zeros(batch_size)`: default dtype (float32) on the "
    "CPU, so the log-det is float32 for float64 input (rounded: ~4e-8 errors in float64 comparisons) and on the CPU "
    "for CUDA input",
    "normflows, `flows/base.py`: start the sum with `inputs.new_zeros(batch_size)`, as `AffineCouplingBlock` and "
    "nflows' `CompositeTransform` do.",
    "normflows_composite_float32.py",
)
MODEL_FLOAT32 = Finding(
    "peer bug",
    "normflows",
    "`NormalizingFlow.forward_and_log_det` (what `sample` and `reverse_kld` rely on), `inverse_and_log_det` and "
    "`forward_kld` (the training loss) accumulate into `torch.zeros(len(z), device=z.device)`: float32 whatever the "
    "input's dtype, so a float64 model's log-dets are rounded to float32 (~4e-8 here); `log_prob` does it right "
    "(`dtype=x.dtype`)",
    "normflows, `core.py`: start every sum with `torch.zeros(len(z), dtype=z.dtype, device=z.device)`, as "
    "`log_prob` does.",
    "normflows_forward_and_log_det_float32.py",
)
MASKED_AFFINE_OVERFLOW = Finding(
    "peer bug",
    "normflows",
    "`MaskedAffineFlow` exponentiates the scale network's output for every coordinate and multiplies by `(1 - b)`: "
    "where `exp(±s)` overflows, the kept coordinates get `0 · inf = NaN` instead of passing through unchanged",
    "normflows, `flows/affine/coupling.py`: compute the kept part as `torch.where(b.bool(), z, ...)` (no `0 · exp`), "
    "and offer a bounded log-scale (e.g. a tanh soft clamp) for `MaskedAffineFlow`.",
    "normflows_masked_affine_nan.py",
)
ACTNORM_BATCH_OF_ONE = Finding(
    "peer bug",
    "normflows",
    "`ActNorm`'s first call sets `s = -log(std + 1e-6)` from its batch; on a batch of one `z.std(dim=0)` is NaN "
    "(Bessel's correction divides by n - 1 = 0), so every output is NaN",
    "normflows, `flows/normalization.py`: refuse (or skip) the data-dependent initialisation on a batch of fewer "
    "than two rows, or use `std(unbiased=False)`.",
    "normflows_actnorm_batch_of_one.py",
)
ACTNORM_EVAL_INIT = Finding(
    "peer bug",
    "normflows",
    "`ActNorm` initialises `s` and `t` from the first batch it sees in eval mode too (`data_dep_init_done` is "
    "checked in `forward` and `inverse` whatever `self.training` is): a fresh model's first evaluation depends on "
    "the other rows of the batch (and is NaN on a batch of one)",
    "normflows: do the data-dependent initialisation only in training mode (as BatchNorm updates its statistics), "
    "or offer an explicit `initialize(batch)`.",
    "normflows_actnorm_batch_of_one.py",
)
SYLVESTER_LOGDET = Finding(
    "peer bug",
    "pyro-ppl",
    "`Sylvester._call` maps row vectors as `y = x + tanh(x·S·Qᵀ + b)·Q·R`, whose Jacobian `I + S Qᵀ D Q R` "
    "(`D = diag tanh'`) is not triangular after the similarity by `Q`, but its log-det is Sylvester's triangular "
    "formula `Σ log(1 + tanh'_i R_ii S_ii + 1e-8)`, valid for the paper's `z + Q R h(S Qᵀ z)` in column form: the "
    "two agree only where `Q` commutes (at Pyro's ±0.01 initialisation the error is tiny, hence unnoticed). Also "
    "the deliberate `+ 1e-8` (see the NAF finding)",
    "Pyro, `transforms/sylvester.py`: use the transposes for row vectors, `A = (Q @ R).T`, `B = (S @ Q.T).T` "
    "(checked: the log-det formula then equals the autograd log|det| to 1e-15); from the second reflection on, "
    "`Q` also builds `torch.eye(self.input_dim)` without `dtype`/`device` (fails on CUDA).",
    "pyro_sylvester_logdet.py",
)
NAF_EPSILON = Finding(
    "peer limitation",
    "pyro-ppl",
    "`NeuralAutoregressive.log_abs_det_jacobian` adds `eps = 1e-8` inside a log (`log(A + eps)`, the class "
    "attribute `eps`): a deliberate bias of order 1e-8 against the true log|det|, just above the kit's float64 "
    "tolerance (1e-8)",
    "nothing to fix unless Pyro wants exactness: `softplus(A)` is already positive, so `log(A)` or a log-softplus "
    "would do; flowlab could declare a tolerance of 1e-7 for this flow with this reason.",
    "pyro_naf_epsilon.py",
)
NAF_NUMERIC_INVERSE = Finding(
    "limit of the kit",
    "pyro-ppl",
    "Pyro leaves NAF's inverse unimplemented (documented); flowlab inverts it with `NumericInverse` (damped Newton "
    "from `z = x`, 50 iterations), which does not converge for some of the thousands of points `normalization` "
    "and `batch_independence` draw, where NAF's sigmoids saturate and the map is nearly flat",
    "flowlab (`flowlab.adapters.NumericInverse`, the adapters' owner): a per-coordinate bracketing solve "
    "(bisection then Newton) for autoregressive monotone maps would converge wherever the map is invertible in "
    "floating point; nothing for Pyro.",
)
FREIA_FROZEN_PARAMETERS = Finding(
    "limit of the kit",
    "FrEIA",
    "the kit perturbs every parameter of a case (`flowlab.checks.perturb_`), frozen ones too: `AllInOneBlock` holds "
    "its fixed soft permutation and its inverse as two `nn.Parameter(requires_grad=False)` (`w_perm`, "
    "`w_perm_inv`), and perturbed independently they stop being inverses, so the round trip and the log-det fail "
    "by O(0.3). With the trainable parameters alone perturbed, the network passes (tests/test_adapters.py)",
    f"flowlab, the kit: perturb only parameters that require grad; waits on {KIT}. Nothing for FrEIA (a buffer "
    "would say 'fixed' more plainly than a frozen parameter, but this is not a bug).",
)
FREIA_INTEGER_PARAMETERS = Finding(
    "limit of the kit",
    "FrEIA",
    "the kit's `perturb_` adds float noise to every parameter in place: `PermuteRandom` holds its permutation as an "
    "integer `nn.Parameter(requires_grad=False)` (`perm`, `perm_inv`), and `add_` of a float tensor to a Long one "
    "raises `RuntimeError: result type Float can't be cast to the desired output type Long` in every property",
    f"flowlab, the kit: perturb only floating-point parameters that require grad; waits on {KIT}.",
)
IMPORTANCE_SAMPLING_ESS = Finding(
    "limit of the kit",
    "-",
    "an *inconclusive*, not a failure: above 2 dims `normalization` estimates ∫p by importance sampling from a "
    "Student-t fitted to the flow's samples, and on this perturbed, sharply curved density the effective sample size "
    "fell below 5 % of the draws, so the kit declines to judge (Z and its SE are shown, never a silent pass)",
    f"nothing for the library; flowlab: a proposal closer to the flow (e.g. a mixture fitted to its samples) would "
    f"make this case judgeable; waits on {KIT}.",
)
EXPONENTIAL_INVERSE = Finding(
    "limit of the kit",
    "torch",
    "flowlab's `torch.affine` example composes torch's transforms into `x = a₂ + b₂ log softplus(a₁ + b₁ z)`, whose "
    "inverse `z = (softplus⁻¹(exp((x − a₂)/b₂)) − a₁)/b₁` grows like `exp(x/b₂)`: at the sweep's data points of "
    "scale 25 (|x| up to ~90) its exact values leave float32's range, so float32 gives inf where float64 is finite "
    "(not analysed row by row; no torch transform computes anything wrong)",
    "flowlab: give this example flow a `FlowSpec.support` or a bounded map in place of `log ∘ softplus`, so the kit "
    "checks it where float32 can represent it; nothing for torch.",
)
SELU_DIVERGENCE = Finding(
    "peer limitation",
    "torchcfm",
    "torchcfm's `models.MLP` uses SELU, whose derivative jumps at 0 (1.05 above, 1.76 below): the field's divergence "
    "is discontinuous, so an adaptive solver's error control does not bound the error of the log-likelihood "
    "integral (and takes thousands of evaluations): the forward-then-backward log-det misses 0 by ~1e-4 at "
    "rtol = atol = 1e-7, against ~1e-6 for a smooth activation. Harmless for sampling and training by flow "
    "matching; it matters when a likelihood is asked of the model (atong01/conditional-flow-matching#157)",
    "torchcfm: offer a smooth activation (SiLU, GELU, or ELU with α = 1) in `MLP` for models whose likelihood will be "
    "computed, or say in the likelihood example that SELU's kink costs accuracy.",
    "torchcfm_selu_divergence.py",
)

#: (flow, property) -> the classification of its failure, from the failure's counterexample and the peer's source
KNOWN: dict[tuple[str, str], Finding] = {
    **{
        (flow, "normalization"): IMPORTANCE_SAMPLING_ESS
        for flow in ("zuko.nsf", "zuko.nsf_flow", "nflows.maf", "nflows.maf_flow", "zuko.maf", "pyro.spline")
    },
    **{(flow, "context_dependence"): IMPORTANCE_SAMPLING_ESS for flow in ("pyro.conditional_spline", "zuko.nsf_flow")},
    ("pyro.conditional_spline", "normalization"): IMPORTANCE_SAMPLING_ESS,
    **{
        ("normflows.planar", p): PLANAR_FLOAT32
        for p in ("dtype_device", "invertibility", "logdet", "sample_consistency")
    },
    **{
        ("normflows.composite", p): COMPOSITE_FLOAT32
        for p in ("dtype_device", "invertibility", "logdet", "sample_consistency")
    },
    **{
        ("normflows.model", p): MODEL_FLOAT32 for p in ("dtype_device", "invertibility", "logdet", "sample_consistency")
    },
    **{
        (flow, p): MASKED_AFFINE_OVERFLOW
        for flow in ("normflows.realnvp", "normflows.composite", "normflows.model")
        for p in ("normalization", "stress")
    },
    **{
        ("normflows.actnorm", p): ACTNORM_BATCH_OF_ONE
        for p in ("invertibility", "logdet", "sample_consistency", "gradients", "dtype_device", "stress")
    },
    **{("normflows.actnorm", p): ACTNORM_EVAL_INIT for p in ("batch_independence", "determinism")},
    **{("pyro.sylvester", p): SYLVESTER_LOGDET for p in ("logdet", "invertibility", "sample_consistency", "stress")},
    ("pyro.naf", "logdet"): NAF_EPSILON,
    ("torch.affine", "stress"): EXPONENTIAL_INVERSE,
    **{
        ("pyro.naf", p): NAF_NUMERIC_INVERSE
        for p in ("normalization", "batch_independence", "invertibility", "sample_consistency", "stress")
    },
    # every property that builds the flow (all of them: the ones that do not apply never fail)
    **{("freia.allinone", p): FREIA_FROZEN_PARAMETERS for p in checks() if p not in ("gradients", "mixing")},
    **{("freia.glow", p): FREIA_INTEGER_PARAMETERS for p in checks()},
    **{
        ("torchcfm.otcfm_8gaussians", p): SELU_DIVERGENCE
        for p in (
            "ode_invertibility",
            "invertibility",
            "logdet",
            "sample_consistency",
            "batch_independence",
            "gradients",  # the same solves stopped at max_nfe, here in training mode
            "dtype_device",  # and in float32
        )
    },
}


@dataclass(frozen=True)
class Run:
    """What the page needs of one ``PropertyRun`` (saved with ``--json``, read back with ``--runs``)."""

    flow: str
    check: str
    status: str
    detail: str
    seconds: float
    reproduce: str


def peer_flows(names: list[str]) -> list[str]:
    """The named flows, or every registered ``<library>.<flow>`` of :data:`LIBRARIES`."""
    if names:
        return names
    return [name for name in flowlab.flows() if "." in name and name.split(".")[0] in LIBRARIES]


def run_all(
    flows: list[str],
    profile: str,
    log: Callable[[str], None],
    save: Callable[[list[Run]], None] | None = None,
    only: list[str] | None = None,
) -> list[Run]:
    """Every property (or those named in ``only``) on every flow; ``save`` gets the runs so far after each flow (a
    long run keeps its results)."""
    runs: list[Run] = []
    properties = [check for name, check in checks().items() if not only or name in only]
    for flow in flows:
        spec = flowlab.flow_spec(flow)
        started = time.perf_counter()
        for check in properties:
            run = run_property(check, spec, "cpu", profile=profile)
            reproduce = (
                run.counterexample.reproduce if run.counterexample else f"flowlab check {flow} --property {check.name}"
            )
            runs.append(Run(flow, check.name, run.status, run.detail, run.seconds, reproduce))
            if run.status in ("failed", "inconclusive"):
                log(f"  {flow} / {check.name}: {run.status} ({run.detail[:120]})")
        log(f"{flow}: {time.perf_counter() - started:.1f} s")
        if save is not None:
            save(runs)
    return runs


def execute(reproduction: str) -> str:
    """Run ``benchmarks/peer_bugs/<reproduction>`` in a fresh interpreter; its output (stdout, then stderr's last
    line if it failed)."""
    done = subprocess.run(
        [sys.executable, str(REPRODUCTIONS / reproduction)], capture_output=True, text=True, timeout=600, check=False
    )
    out = done.stdout.strip()
    if done.returncode:
        out += f"\n(exit {done.returncode}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''})"
    return out


def markdown(runs: list[Run], profile: str, seconds: float, outputs: dict[str, str]) -> str:
    """The page; ``outputs`` holds each executed reproduction's output."""
    flows = list(dict.fromkeys(run.flow for run in runs))
    properties = [name for name in dict.fromkeys(run.check for run in runs) if _ran(runs, name)]
    cell = {(run.flow, run.check): run for run in runs}
    libraries = sorted({flow.split(".")[0] for flow in flows}, key=list(LIBRARIES).index)
    lines = [
        "# The conformance kit on other libraries' flows",
        "",
        "Written by `OMP_NUM_THREADS=1 python benchmarks/peers.py` (do not edit by hand): every property of "
        f"`flowlab check` on every flow of the `peers` plugin, CPU, `{profile}` profile, {seconds:.0f} s in all "
        f"(Python {platform.python_version()}). The adapters (`flowlab.adapters`) map each library's direction and "
        "sign and pass its dtype and device through unchanged, so what fails here is the peer's behaviour, the kit's "
        "limit, or the adaptation's, as each finding says. **For maintainers**: each peer bug and limitation below "
        "comes with a reproduction that imports only torch and the library (`benchmarks/peer_bugs/`), which the "
        "script executed; its output is shown as recorded.",
        "",
        "| library | version |",
        "|---|---|",
        *(f"| {LIBRARIES[library]} | {peer_version(LIBRARIES[library])} |" for library in libraries),
        "",
        "✓ passed, ✗ failed, ? inconclusive, u uncovered, s skipped (every case), – not applicable, · not run (a flow "
        "checked on some properties only, as its section says); properties that apply to none are left out.",
        "",
        "| flow | " + " | ".join(properties) + " | s |",
        "|---|" + "---|" * (len(properties) + 1),
    ]
    for flow in flows:
        total = sum(run.seconds for run in runs if run.flow == flow)
        row = [SYMBOLS[cell[(flow, name)].status] if (flow, name) in cell else "·" for name in properties]
        lines.append(f"| `{flow}` | " + " | ".join(row) + f" | {total:.0f} |")
    failures = [run for run in runs if run.status in ("failed", "inconclusive")]
    lines += ["", "## Failures, by finding", ""]
    if not failures:
        lines.append("None.")
    groups: dict[int, tuple[Finding, list[Run]]] = {}
    for run in failures:
        finding = KNOWN.get((run.flow, run.check)) or Finding("unclassified", "-", "not analysed yet", "—")
        groups.setdefault(id(finding), (finding, []))[1].append(run)
    order = {"peer bug": 0, "peer limitation": 1, "limit of the kit": 2, "unclassified": 3}
    ranked = sorted(groups.values(), key=lambda group: order.get(group[0].kind, 9))
    for number, (finding, members) in enumerate(ranked, start=1):
        names = ", ".join(f"`{run.flow}` / `{run.check}`" for run in members)
        version = f" {peer_version(finding.library)}" if finding.library != "-" else ""
        lines += [
            f"### {number}. {finding.kind} ({finding.library}{version}): {names}",
            "",
            f"- why: {finding.reason}.",
        ]
        lines += [
            f"- {'waits on / to do' if finding.kind == 'limit of the kit' else 'suggested fix'}: {finding.action}"
        ]
        if finding.reproduction:
            lines += _reproduction(finding.reproduction, outputs)
        lines.append("- what the kit saw:")
        for run in members:
            detail = _one_line(run.detail)
            lines.append(f"  - `{run.flow}` / `{run.check}` ({run.status}): {detail}; reproduce: `{run.reproduce}`")
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
    return "\n".join(lines).rstrip() + "\n"


def _reproduction(name: str, outputs: dict[str, str]) -> list[str]:
    code = (REPRODUCTIONS / name).read_text().strip()
    return [
        f"- reproduction (`benchmarks/peer_bugs/{name}`, plain torch, executed):",
        "",
        "  ```python",
        *(f"  {line}".rstrip() for line in code.splitlines()),
        "  ```",
        "",
        "  output:",
        "",
        "  ```",
        *(f"  {line}".rstrip() for line in outputs.get(name, "(not run)").splitlines()),
        "  ```",
        "",
    ]


def _ran(runs: list[Run], name: str) -> bool:
    return any(run.check == name and run.status not in ("skipped", "not_applicable") for run in runs)


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def save_runs(runs: list[Run], path: str) -> None:
    Path(path).write_text(json.dumps([asdict(run) for run in runs], indent=1))


def load_runs(paths: list[str]) -> list[Run]:
    """Runs saved by ``--json`` (several files: their runs in order)."""
    return [Run(**record) for path in paths for record in json.loads(Path(path).read_text())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flows", nargs="*", help="peer flows to check (default: all)")
    parser.add_argument("--property", action="append", help="only this property (repeatable; default: all)")
    parser.add_argument("--profile", default="quick", help="the kit's Hypothesis profile (default: quick)")
    parser.add_argument("--out", default="docs/peers.md", help="where to write the page ('-': stdout)")
    parser.add_argument("--json", default=None, help="also write the runs to this JSON file")
    parser.add_argument(
        "--runs", nargs="+", default=None, help="write the page from runs saved with --json (no checks run)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.runs:
        runs = load_runs(args.runs)
        seconds = sum(run.seconds for run in runs)
    else:
        runs = run_all(
            peer_flows(args.flows),
            args.profile,
            lambda line: print(line, file=sys.stderr, flush=True),
            (lambda so_far: save_runs(so_far, args.json)) if args.json else None,
            args.property,
        )
        seconds = time.perf_counter() - started
    failed = {(run.flow, run.check) for run in runs if run.status in ("failed", "inconclusive")}
    wanted = {KNOWN[key].reproduction for key in failed if key in KNOWN and KNOWN[key].reproduction}
    outputs = {name: execute(name) for name in sorted(n for n in wanted if n)}
    page = markdown(runs, args.profile, seconds, outputs)
    if args.out == "-":
        print(page, end="")
    else:
        Path(args.out).write_text(page)
    if args.json:
        save_runs(runs, args.json)
    unclassified = [run for run in runs if run.status == "failed" and (run.flow, run.check) not in KNOWN]
    return 1 if unclassified else 0


if __name__ == "__main__":
    raise SystemExit(main())
