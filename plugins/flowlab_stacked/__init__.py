"""flowlab plugin ``stacked``: K blocks of a registered discrete flow with permutations between them."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

import flowlab
from flowlab import CONTEXT_OPTION, Compose, FlowSpec, Option, OptionError, Permutation, hookimpl
from flowlab.layers import ActNorm
from flowlab_stacked.chain import CouplingChain, chainable

EXPLANATION = r"""
**Transform.** `x = f_K ∘ P ∘ f_{K−1} ∘ … ∘ P ∘ f_1 (z)`: `K` blocks of a registered discrete flow (`block`,
default `coupling`) with a fixed permutation `P` between consecutive blocks (`reverse` or a fixed `random` one),
and optionally an ActNorm layer before each block. **Inverse**: the inverses in reverse order.

**Log-determinant.** By the chain rule the Jacobians multiply, so the log-dets add:
`log|det ∂x/∂z| = Σ_k log|det J_k|`. Permutations have `|det| = 1` and add nothing. The cost is the sum of the
blocks' costs: O(K d) for coupling blocks.

**Why permutations.** A coupling layer leaves its kept coordinates unchanged. Stacking coupling layers with the
same mask and nothing in between leaves those coordinates unchanged *forever*: half of the data is never
modelled, and the stack's Jacobian keeps an identity block (try
`flowlab explain stacked --jacobian` with `permutation="none"`). Between blocks flowlab therefore permutes the
coordinates and, when the block has a `parity` option, picks for each block the parity that transforms the
coordinates transformed least often so far (then the one overlapping least with the previous block's kept set).
This matters: with an odd `d` the reverse permutation maps the even positions onto themselves (the middle
coordinate never moves), and with an even `d` reversing *and* alternating the parity cancel out. After a few
blocks every output coordinate depends on every input coordinate (a test checks this for reverse and random
permutations).

**ActNorm** (`actnorm=True`): `x = z ⊙ exp(σ) + μ` per coordinate, initialised from the first training batch so
the data enter each block standardised; afterwards it is batch-independent.

**Computation.** With `coupling` blocks and no ActNorm the stack runs as one `CouplingChain`: the data stay in
two tensors, the kept and the moved part, from the first block to the last. A permutation composed with the next
block's fixed split is another fixed split, so it moves no data; where a part's columns come in another order than
the block's, the block's network is permuted (first-layer columns, last-layer rows) instead of the data. The same
map and parameters as the plain composition, without its three copies of the data per block.

**Conditioning** (`context_dim=k`, `docs/conditioning.md`): every block is built with `context_dim=k` (the block
must have that option: `coupling` has), and the stack passes the context to each of them; permutations and
ActNorm do not depend on it.

**Sign convention.** `forward(z) -> (x, Σ_k log|det ∂f_k|)`; `log p(x) = log p_z(z) + log|det ∂z/∂x|`.
"""


def build(
    dim: int,
    *,
    block: str,
    blocks: int,
    permutation: str,
    actnorm: bool,
    seed: int,
    block_options: dict[str, Any],
    context_dim: int = 0,
) -> Compose:
    discrete = [name for name, spec in flowlab.flows().items() if spec.kind == "discrete" and name != "stacked"]
    if block not in discrete:
        raise OptionError(
            f"stacked: option block={block!r} is not allowed; expected a registered discrete flow, one of "
            f"{', '.join(repr(n) for n in discrete)}"
        )
    spec = flowlab.flow_spec(block)
    block_options = with_context(block, spec, block_options, context_dim)
    pick_parity = "parity" in spec.options and "parity" not in block_options and permutation != "none"
    generator = torch.Generator().manual_seed(seed)
    order = torch.arange(dim)  # order[i]: the input coordinate found at position i
    kept: set[int] = set()  # input coordinates the previous block kept unchanged
    moves = torch.zeros(dim, dtype=torch.long)  # how often each input coordinate was transformed
    layers: list[nn.Module] = []
    for k in range(blocks):
        if k > 0 and permutation != "none":
            perm = Permutation.reverse(dim) if permutation == "reverse" else Permutation.random(dim, generator)
            order = order[perm.perm]
            layers.append(perm)
        if actnorm:
            layers.append(ActNorm(dim))
        options = dict(block_options)
        if pick_parity:
            options["parity"], kept = choose_parity(order, moves, kept, k)
        layers.append(flowlab.build(block, dim, **options))
    return CouplingChain(layers) if chainable(layers) else Compose(layers)


def with_context(block: str, spec: FlowSpec, block_options: dict[str, Any], context_dim: int) -> dict[str, Any]:
    """``block_options`` with the stack's ``context_dim`` for every block; :class:`OptionError` if the block cannot
    be conditioned (it has no ``context_dim`` option) or ``block_options`` asks for another ``context_dim``."""
    if not context_dim:
        return block_options
    if "context_dim" not in spec.options:
        raise OptionError(
            f"stacked: option context_dim={context_dim} needs a block that can be conditioned (one with a "
            f"context_dim option), got block={block!r}"
        )
    if block_options.get("context_dim", context_dim) != context_dim:
        raise OptionError(
            f"stacked: option context_dim={context_dim} and block_options context_dim="
            f"{block_options['context_dim']!r} disagree; give it once"
        )
    return {**block_options, "context_dim": context_dim}


def choose_parity(order: torch.Tensor, moves: torch.Tensor, previous: set[int], k: int) -> tuple[str, set[int]]:
    """The parity for block ``k``: the one that transforms the coordinates transformed least often so far, then
    the one whose kept coordinates overlap least with the previous block's, then alternation.

    A ``parity`` block keeps the coordinates at even (or odd) positions and transforms the others; ``order`` says
    which input coordinate sits at each position after the permutations so far; ``moves`` counts how often each
    input coordinate has been transformed (updated in place).
    """
    candidates = []
    for parity, start in (("even", 0), ("odd", 1)):
        kept, moved = order[start::2], order[1 - start :: 2]
        never = int((moves[moved] == 0).sum())
        overlap = len(set(kept.tolist()) & previous)
        candidates.append((-never, overlap, (start + k) % 2, parity, kept, moved))
    *_, parity, kept, moved = min(candidates, key=lambda c: c[:3])
    moves[moved] += 1
    return parity, set(kept.tolist())


def mixes(*, block: str, blocks: int, permutation: str, **_: Any) -> bool:
    """Whether a stack with these options has a dense Jacobian: coupling blocks with permutations between them,
    enough of them (4 with ``reverse``, 8 with ``random``; tests/test_stacked.py shows both), or affine blocks."""
    if block == "affine":
        return True
    return block == "coupling" and blocks >= {"reverse": 4, "random": 8, "none": math.inf}[permutation]


SPEC = FlowSpec(
    name="stacked",
    summary="K blocks of a discrete flow (default coupling) with permutations between them, optional ActNorm",
    build=build,
    kind="discrete",
    logdet="exact",
    min_dim=2,
    options={
        "block": Option("coupling", "the registered discrete flow used for each block"),
        "blocks": Option(8, "number of blocks K", low=1, high=256),
        "permutation": Option(
            "reverse",
            "permutation between blocks ('none' reproduces the classic bug)",
            choices=("reverse", "random", "none"),
        ),
        "actnorm": Option(False, "ActNorm before each block", choices=(False, True)),
        "seed": Option(0, "seed of the random permutations", low=0),
        "block_options": Option({}, "options passed to every block, e.g. {'hidden': 32}"),
        "context_dim": CONTEXT_OPTION,
    },
    references=(
        "Dinh, Sohl-Dickstein & Bengio (2017). Density estimation using Real NVP. https://arxiv.org/abs/1605.08803",
        "Kingma & Dhariwal (2018). Glow: Generative Flow with Invertible 1x1 Convolutions (ActNorm). "
        "https://arxiv.org/abs/1807.03039",
    ),
    explanation=EXPLANATION,
    mixes=lambda options: mixes(**options),
)


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    register(SPEC)
