"""nflows' flows: ``nflows.realnvp`` (affine coupling), ``nflows.maf`` (masked affine autoregressive) and
``nflows.rqs`` (rational-quadratic spline coupling with linear tails), adapted through their transforms;
``nflows.maf_flow``, the whole ``MaskedAutoregressiveFlow`` (with or without a context) as users call it.

nflows is imported when a flow is built, not when the plugin registers them (``flowlab list`` stays fast)."""

from __future__ import annotations

from typing import Any

import torch

from flowlab import CONTEXT_OPTION, Option
from flowlab.adapters import Adapted, adapted_spec, from_nflows
from flowlab_peers.options import size_options, stacked

REFERENCE = "Durkan et al. (2020). nflows: normalizing flows in PyTorch. https://doi.org/10.5281/zenodo.4296287"


def realnvp(dim: int, *, transforms: int, hidden: int) -> Adapted:
    from nflows.flows.realnvp import SimpleRealNVP

    flow = SimpleRealNVP(dim, hidden_features=hidden, num_layers=transforms, num_blocks_per_layer=1)
    return from_nflows(flow, dim, model=False)


def _maf(dim: int, transforms: int, hidden: int, context_dim: int = 0) -> Any:
    """nflows' ``MaskedAutoregressiveFlow`` recipe (a ``ReversePermutation`` then a
    ``MaskedAffineAutoregressiveTransform`` per layer, ``StandardNormal`` base), built from its parts because the
    class of nflows 0.14 takes no ``context_features``."""
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.permutations import ReversePermutation

    layers: list[Any] = []
    for _ in range(transforms):
        layers.append(ReversePermutation(dim))
        layers.append(
            MaskedAffineAutoregressiveTransform(
                dim, hidden_features=hidden, context_features=context_dim or None, num_blocks=1
            )
        )
    return Flow(CompositeTransform(layers), StandardNormal([dim]))


def maf(dim: int, *, transforms: int, hidden: int) -> Adapted:
    return from_nflows(_maf(dim, transforms, hidden), dim, model=False)


def maf_flow(dim: int, *, transforms: int, hidden: int, context_dim: int) -> Adapted:
    return from_nflows(_maf(dim, transforms, hidden, context_dim), dim, context_dim=context_dim)


def rqs(dim: int, *, transforms: int, hidden: int, bins: int, tail_bound: float) -> Adapted:
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.nn.nets import ResidualNet
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform

    def net(features_in: int, features_out: int) -> ResidualNet:
        return ResidualNet(features_in, features_out, hidden_features=hidden, num_blocks=1)

    mask = torch.ones(dim)
    mask[::2] = -1
    layers = []
    for _ in range(transforms):
        layers.append(
            PiecewiseRationalQuadraticCouplingTransform(
                mask.clone(), net, num_bins=bins, tails="linear", tail_bound=tail_bound
            )
        )
        mask = -mask
    return from_nflows(Flow(CompositeTransform(layers), StandardNormal([dim])), dim, model=False)


SPECS = [
    adapted_spec(
        "nflows.realnvp",
        "nflows SimpleRealNVP: affine coupling (sigmoid scale), alternating masks",
        realnvp,
        library="nflows",
        explanation="**Transform.** nflows' `SimpleRealNVP`: `AffineCouplingTransform` layers, "
        "`x_b = z_b·σ(ŝ(z_a) + 2) + 10⁻³ + t(z_a)` in nflows' data -> noise direction, masks alternating between "
        "even and odd coordinates, residual-MLP conditioners. Log-det `Σ log scale`.",
        options=size_options(3),
        min_dim=2,
        mixes=stacked,
        references=(REFERENCE,),
    ),
    adapted_spec(
        "nflows.maf",
        "nflows MaskedAutoregressiveFlow: MADE affine autoregressive, reversed between layers",
        maf,
        library="nflows",
        explanation="**Transform.** nflows' `MaskedAutoregressiveFlow`: a `ReversePermutation` then a "
        "`MaskedAffineAutoregressiveTransform` (MADE, scale `σ(ŝ + 2) + 10⁻³`) per layer, in nflows' data -> noise "
        "direction; the noise -> data direction is sequential (`dim` passes). Log-det `Σ log scale_i`.",
        options=size_options(2),
        mixes=stacked,
        references=(
            REFERENCE,
            "Papamakarios et al. (2017). Masked Autoregressive Flow for Density Estimation. "
            "https://arxiv.org/abs/1705.07057",
        ),
    ),
    adapted_spec(
        "nflows.maf_flow",
        "nflows MaskedAutoregressiveFlow as a whole flow: Flow.log_prob and its sampling transform; optional context",
        maf_flow,
        library="nflows",
        explanation="**The whole flow.** nflows' `MaskedAutoregressiveFlow` (as `nflows.maf`) adapted through the "
        "`Flow` users train: the kit's density is `flow.log_prob(x, context)` itself (its `StandardNormal` base and "
        "embedding net included) and its samples come from `flow._transform.inverse`, as in "
        "`flow.sample_and_log_prob`. With `context_dim = k > 0` the MADE conditioners read the context.",
        options={**size_options(2), "context_dim": CONTEXT_OPTION},
        mixes=stacked,
        references=(
            REFERENCE,
            "Papamakarios et al. (2017). Masked Autoregressive Flow for Density Estimation. "
            "https://arxiv.org/abs/1705.07057",
        ),
    ),
    adapted_spec(
        "nflows.rqs",
        "nflows rational-quadratic spline coupling (linear tails outside ±tail_bound), alternating masks",
        rqs,
        library="nflows",
        explanation="**Transform.** nflows' `PiecewiseRationalQuadraticCouplingTransform` layers with alternating "
        "masks: the moved half goes through monotonic rational-quadratic splines on `[-B, B]` (`B = tail_bound`, "
        "`bins` bins) whose knots a residual MLP computes from the kept half; identity (linear tails) outside, so "
        "the map is a bijection of R^d. Log-det `Σ log spline'`. Not claimed to mix: outside `[-B, B]` a coordinate "
        "does not depend on the others.",
        options={
            **size_options(2),
            "bins": Option(8, "spline bins", low=2, high=64),
            "tail_bound": Option(3.0, "the splines act on [-B, B], identity outside", low=1e-3),
        },
        min_dim=2,
        # not claimed: with z_0 outside [-B, B] the spline is the identity whatever x_1 (the kit's mixing check
        # found such a point), so the Jacobian is not dense everywhere
        mixes=False,
        references=(REFERENCE, "Durkan et al. (2019). Neural Spline Flows. https://arxiv.org/abs/1906.04032"),
    ),
]
