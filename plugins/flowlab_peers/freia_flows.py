"""FrEIA's invertible networks: ``freia.allinone`` (a ``SequenceINN`` of ``AllInOneBlock``\\ s) and ``freia.glow``
(``GLOWCouplingBlock`` and ``PermuteRandom``), adapted with :func:`flowlab.adapters.from_freia`.

FrEIA draws ``AllInOneBlock``'s fixed soft permutation from numpy's global RNG (``scipy.stats.special_ortho_group``)
and ``PermuteRandom(seed=...)`` reseeds it, so ``torch.manual_seed`` alone does not reproduce a FrEIA network: the
builds here seed numpy from torch's RNG (:func:`numpy_seeded`) and restore numpy's state after. FrEIA is imported when
a flow is built, not when the plugin registers them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from flowlab import CONTEXT_OPTION, Bijector, Option
from flowlab.adapters import adapted_spec, from_freia
from flowlab_peers.options import size_options

LIBRARY = "FrEIA"
REFERENCE = (
    "Ardizzone et al. (2018-2022). Framework for Easily Invertible Architectures (FrEIA). "
    "https://github.com/vislearn/FrEIA"
)


def _subnet(hidden: int) -> Any:
    def build(features_in: int, features_out: int) -> nn.Module:
        return nn.Sequential(nn.Linear(features_in, hidden), nn.ReLU(), nn.Linear(hidden, features_out))

    return build


@contextmanager
def numpy_seeded() -> Iterator[None]:
    """numpy's global RNG seeded from torch's for the block (so a torch seed reproduces the build), restored after."""
    import numpy as np

    state = np.random.get_state()
    np.random.seed(int(torch.randint(0, 2**31 - 1, ()).item()))
    try:
        yield
    finally:
        np.random.set_state(state)


def _network(dim: int, context_dim: int) -> Any:
    from FrEIA.framework import SequenceINN

    return SequenceINN(dim), ({"cond": 0, "cond_shape": (context_dim,)} if context_dim else {})


def allinone(dim: int, *, transforms: int, hidden: int, context_dim: int) -> Bijector:
    from FrEIA.modules import AllInOneBlock

    network, condition = _network(dim, context_dim)
    with numpy_seeded():
        for _ in range(transforms):
            network.append(AllInOneBlock, subnet_constructor=_subnet(hidden), **condition)
    return from_freia(network, dim, context_dim=context_dim)


def glow(dim: int, *, transforms: int, hidden: int, clamp: float, context_dim: int) -> Bijector:
    from FrEIA.modules import GLOWCouplingBlock, PermuteRandom

    network, condition = _network(dim, context_dim)
    with numpy_seeded():
        for _ in range(transforms):
            network.append(GLOWCouplingBlock, subnet_constructor=_subnet(hidden), clamp=clamp, **condition)
            network.append(PermuteRandom)
    return from_freia(network, dim, context_dim=context_dim)


SPECS = [
    adapted_spec(
        "freia.allinone",
        "FrEIA AllInOneBlock stack: affine coupling, global affine (ActNorm-like), fixed soft permutation",
        allinone,
        library=LIBRARY,
        explanation="**Transform.** FrEIA's `AllInOneBlock`s in a `SequenceINN`: each block is an affine coupling "
        "`x_b = z_b·exp(clamp·0.636·atan(s/clamp)) + t` (a soft-clamped log-scale computed by a subnet of the other "
        "half, and of the context for a conditional network), a learned global affine scaling (softplus "
        "parametrised) and a fixed random orthogonal ('soft') permutation. FrEIA's forward is data -> latent; "
        "log-det `Σ` log-scales + the global scaling's.",
        options={**size_options(2), "context_dim": CONTEXT_OPTION},
        min_dim=2,
        # no claim: each block's permutation is drawn at random (a hard permutation by default), so whether a stack
        # mixes depends on the draws, not on the options: at d = 2 two blocks whose permutations are both the
        # identity (one seed in four) keep x_0 a function of z_0 alone
        mixes=False,
        references=(REFERENCE,),
    ),
    adapted_spec(
        "freia.glow",
        "FrEIA GLOWCouplingBlock + PermuteRandom: two-sided affine coupling with soft-clamped scales",
        glow,
        library=LIBRARY,
        explanation="**Transform.** FrEIA's `GLOWCouplingBlock` (both halves transformed in turn, each by an "
        "affine map whose log-scale `clamp·0.636·atan(s/clamp)` and shift a subnet computes from the other half) "
        "followed by a fixed random permutation (`PermuteRandom`), `transforms` times. Log-det `Σ` log-scales.",
        options={
            **size_options(2),
            "clamp": Option(2.0, "soft clamp of the log-scales", low=1e-3),
            "context_dim": CONTEXT_OPTION,
        },
        min_dim=2,
        mixes=True,
        references=(
            REFERENCE,
            "Kingma & Dhariwal (2018). Glow: Generative Flow with Invertible 1x1 Convolutions. "
            "https://arxiv.org/abs/1807.03039",
        ),
    ),
]
