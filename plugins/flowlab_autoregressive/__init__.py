"""flowlab plugin ``autoregressive``: MADE-masked affine autoregressive flows, ``maf`` and ``iaf``."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from flowlab import CONTEXT_OPTION, Compose, FlowSpec, Option, hookimpl
from flowlab.nn import CONDITIONER_CHOICES
from flowlab_autoregressive.bijector import AffineAutoregressive, Reads, ordering

#: per flow: the side its conditioner reads, the direction that is one parallel pass, the sequential one
DIRECTIONS: dict[str, tuple[Reads, str, str]] = {
    "maf": ("x", "`inverse` (density, data -> noise)", "`forward` (sampling, noise -> data)"),
    "iaf": ("z", "`forward` (sampling, noise -> data)", "`inverse` (density, data -> noise)"),
}

EXPLANATION = r"""
**Transform.** `K` affine autoregressive layers (`layers`), each

    x_i = (z_i + m_i) · exp(s_i),      s_i = B · tanh(ŝ_i / B)   (B = scale_bound)

where one MADE network (a masked MLP, Germain et al. 2015) gives `(m_i, ŝ_i)` as functions of
**{reads}_{{<i}}** only: {title} reads the {side} side. Between layers a fixed permutation (`permutation`):
`reverse`, or `random`, a random one (from `seed`) that puts the previous layer's last coordinate first.

**The two directions.** {parallel} is **one parallel MADE pass**: every `{reads}_{{<i}}` is known, so all
`(m_i, s_i)` come out of one call. {sequential} needs **d sequential passes**: coordinate `i` needs
`{reads}_{{<i}}`, which are outputs of the same layer, so the layer is solved coordinate by coordinate (pass `k`
fixes coordinate `k`). Cost per layer: one MADE call, O(d·h + (depth−1)·h²) per point (hidden width `h`; + d²
with a skip connection), against d passes that compute only what their coordinate needs: a rank-one update of the
first layer, the hidden units of lower degree than the coordinate (`h·i/d` of them at pass `i`), two output rows;
about `d/3` full calls' worth of the deeper layers in all. {use}

**Log-determinant.** `∂x/∂z` of one layer is lower-triangular (`x_i` depends on `z_{{≤i}}` only) with diagonal
`exp(s_i)`, so `log|det ∂x/∂z| = Σ_i s_i`: O(d), read off the conditioner's output whatever the network.
Permutations add 0. (`flowlab explain {name} --jacobian --dim 4 --option layers=1` shows the triangle; with
two or more layers the permutations fill it: with a smooth activation, or the skip connection below, for every
parameter value; a ReLU MADE without the skip can lose a dependence to a unit that is dead for every input.)

**Mixing.** A layer's first output depends on its first input only, its last output on every input. Both
permutations move the last coordinate (which depends on everything) to the front of the next layer, so from two
layers on every output depends on every input (`mixes`, verified by the kit's `mixing` check). The dependence of
`(m_i, ŝ_i)` on `{reads}_j` (`j < i`) goes through hidden units of degrees `j..i−1`, all present when
`hidden ≥ d − 1` (`≥ d` when conditional). A masked linear skip connection from the MADE's input to its output
gives each allowed dependence a path even when a ReLU is dead at a point or a degree is missing: with
`skip="auto"` (default) a MADE has it only where a degree is missing (`hidden < d − 1`), so every dependence has
a path; elsewhere it is Germain et al.'s MADE (as zuko's), whose 2D fits are as good (`docs/benchmarks.md`,
"MADE's skip connection") at two thirds of the cost per call at `d = h = 64`. `skip="always"`: in every MADE.

**Bounded scale.** `s = B·tanh(ŝ/B)` stays within `±B`, so `exp(±s)` neither overflows nor vanishes whatever the
input (the kit's stress case: d = 32, inputs of scale 25, float32). With `identity_init=True` the MADE's output
layer (and skip) are zero: every layer starts as the identity. On R^1 a layer is the elementwise affine map
`x = (z + m)·exp(s)` with constant `s, m` (the MADE reads no input). The density direction is the plain
affine map `z = x·exp(−s) − m`, as in zuko, nflows and normflows (the MAF paper's `x = z·exp(s) + m` is the
same family; its fits compare in `docs/families/autoregressive.md`).

**Conditioning** (`context_dim=k`, `docs/conditioning.md`). The MADE also reads a context `c ∈ R^k`, which feeds
every unit of its first hidden layer without a mask (hidden degrees then start at 0: units that read only `c`,
so the first coordinate is conditioned too): `(m_i, ŝ_i)` depend on `({reads}_{{<i}}, c)`. At fixed `c`
the Jacobian in `z` keeps its triangle, so the log-det is still `Σ_i s_i`; the sequential direction passes the
same `c` to each of its d passes.

**Sign convention.** `forward(z) -> (x, +Σ_k Σ_i s_i)`, `inverse(x) -> (z, −Σ_k Σ_i s_i)`;
`log p(x) = log p_z(z) − Σ_k Σ_i s_i` with `z = inverse(x)`.
"""

USE = {
    "maf": "So MAF evaluates densities fast (training by maximum likelihood on data) and samples slowly.",
    "iaf": "So IAF samples fast (and gives the density of its own samples for free, as in variational "
    "inference), and evaluates the density of given data slowly.",
}


def explanation(flow: str) -> str:
    """The shared explanation, filled in with the flow's side and directions."""
    reads, parallel, sequential = DIRECTIONS[flow]
    side = "data (`x`)" if reads == "x" else "noise (`z`)"
    return EXPLANATION.format(
        name=flow, title=flow.upper(), reads=reads, side=side, parallel=parallel, sequential=sequential, use=USE[flow]
    )


def build(
    dim: int,
    *,
    reads: Reads,
    layers: int,
    permutation: str,
    seed: int,
    **layer_options: Any,
) -> Compose:
    generator = torch.Generator().manual_seed(seed)
    stack: list[nn.Module] = []
    for k in range(layers):
        if k > 0:
            stack.append(ordering(dim, permutation, generator))
        stack.append(AffineAutoregressive(dim, reads=reads, **layer_options))
    return Compose(stack)


OPTIONS = {
    "layers": Option(4, "number of autoregressive layers K", low=1, high=256),
    "hidden": Option(64, "MADE hidden width (all degrees present when ≥ d − 1)", low=1),
    "depth": Option(2, "MADE hidden layers", low=1),
    "activation": Option("relu", "MADE activation", choices=CONDITIONER_CHOICES),
    "scale_bound": Option(3.0, "B in s = B·tanh(ŝ/B)", low=1e-3),
    "identity_init": Option(True, "zero the MADE's output: layers start as the identity", choices=(True, False)),
    "permutation": Option(
        "reverse",
        "permutation between layers ('random': drawn from seed, the previous last coordinate first)",
        choices=("reverse", "random"),
    ),
    "seed": Option(0, "seed of the random permutations", low=0),
    "skip": Option(
        "auto",
        "MADE's masked linear skip connection from input to output (a path for every dependence that neither a dead "
        "ReLU nor a missing hidden degree cuts; + d² per point): 'auto' only where hidden < d − 1, or 'always'",
        choices=("auto", "always"),
    ),
    "context_dim": CONTEXT_OPTION,
}

REFERENCES = (
    "Germain, Gregor, Murray & Larochelle (2015). MADE: Masked Autoencoder for Distribution Estimation. "
    "https://arxiv.org/abs/1502.03509",
    "Papamakarios, Pavlakou & Murray (2017). Masked Autoregressive Flow for Density Estimation. "
    "https://arxiv.org/abs/1705.07057",
    "Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016). Improved Variational Inference with Inverse "
    "Autoregressive Flow. https://arxiv.org/abs/1606.04934",
)


def spec(flow: str, summary: str) -> FlowSpec:
    """The FlowSpec of ``maf`` or ``iaf``: the same options, the conditioner reading ``x`` or ``z``."""
    reads = DIRECTIONS[flow][0]
    return FlowSpec(
        name=flow,
        summary=summary,
        build=functools.partial(build, reads=reads),
        kind="discrete",
        logdet="exact",
        options=OPTIONS,
        references=REFERENCES,
        explanation=explanation(flow),
        min_dim=1,
        # a ReLU unit can be dead for every input (all its weights and its bias negative on the ReLU outputs below
        # it): in a MADE without the skip, the dependence its degree carries is then cut (a quarter of seeds at
        # d = 5 with the kit's 8 units); smooth activations and the skip keep every path
        mixes=lambda options: (
            options["layers"] >= 2 and (options["activation"] != "relu" or options["skip"] == "always")
        ),
        # a small network keeps `flowlab check` cheap (the sequential direction costs d MADE calls per layer, and
        # the stress case is at d = 32); two layers are the fewest that mix, depth 2 exercises the hidden masks
        check_options={"layers": 2, "hidden": 8, "depth": 2},
    )


MAF = spec("maf", "MAF: MADE affine autoregressive, density (inverse) in 1 pass, sampling (forward) in d passes")
IAF = spec("iaf", "IAF: MADE affine autoregressive, sampling (forward) in 1 pass, density (inverse) in d passes")


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    register(MAF)
    register(IAF)
