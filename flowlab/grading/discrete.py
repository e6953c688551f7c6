"""Exercises on discrete flows: the change of variables in 1-D, an affine coupling layer with a bounded scale and a
stack of them, a MADE mask. Each builds a ``FlowSpec`` around the student's class or function (never registered).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from flowlab.grading.exercise import AnswerError, Exercise, Variant, a_class, a_function
from flowlab.spec import FlowSpec, Option

#: how much the strong-conditioner variant multiplies the outputs of the layer's ``net``. Measured on the exercise's
#: layer: a scale bounded by ``B·tanh(ŝ/B)`` (B from 1 to 8) or by a clamp passes ``invertibility`` (errors ≤ 6e-12,
#: tolerance 1e-8) and ``stress`` (≤ 5e-7, tolerance 1e-2); an unbounded ``exp(ŝ)`` fails both (a round-trip error
#: of 0.02; float32 overflows to inf). At ×50 the unbounded scale still passed ``stress``.
STRONG_GAIN = 100.0


def affine_1d(answer: Any) -> FlowSpec:
    cls = a_class(answer, "the class of your 1-D map, built as Affine1D()")
    return FlowSpec(name="your 1-D map", summary="x = a·z + b", build=lambda dim: cls(), min_dim=1, max_dim=1)


CHANGE_OF_VARIABLES = Exercise(
    name="change_of_variables",
    title="x = a·z + b in one dimension: the change of variables by hand",
    answer="the class Affine1D (built as Affine1D(), with parameters a and b)",
    variants=(
        Variant(
            "your 1-D map",
            affine_1d,
            ("invertibility", "logdet", "normalization", "sample_consistency", "batch_independence", "dtype_device"),
            {
                "logdet": "For x = a·z + b, dx/dz = a everywhere: forward returns log|a| on every row, inverse "
                "−log|a|. a is negative here: torch.log(a) is nan, the determinant's absolute value is what counts.",
                "invertibility": "inverse must undo forward: z = (x − b)/a, and its log-det is minus forward's.",
                "normalization": "The density integrates to 1 only with the right log-det: "
                "log p(x) = log p_z(z) + log|dz/dx| with log|dz/dx| = −log|a|.",
                "sample_consistency": "Sampling gives log p(x) = log p_z(z) − log|dx/dz|: the forward log-det must be "
                "minus the inverse one at the same point.",
                "dtype_device": "Build the log-det from the input or the parameters (torch.full_like, .expand): a "
                "constant made with torch.tensor(...) is float32 on the CPU whatever the input is.",
            },
        ),
    ),
)


def coupling_layer(answer: Any) -> FlowSpec:
    cls = a_class(answer, "the class of your layer, built as AffineCoupling(dim, parity)")
    return FlowSpec(
        name="your coupling layer",
        summary="affine coupling",
        build=lambda dim, parity: cls(dim, parity),
        options={"parity": Option(0, "which coordinates the layer keeps: 0 the even ones, 1 the odd", choices=(0, 1))},
        min_dim=2,
    )


def strong_coupling_layer(answer: Any) -> FlowSpec:
    spec = coupling_layer(answer)

    def build(dim: int, parity: int) -> Any:
        layer = spec.build(dim, parity)
        net = getattr(layer, "net", None)
        if not isinstance(net, nn.Module):
            raise AnswerError(
                "the grader strengthens the conditioner your layer keeps in self.net, as the exercise gives it; "
                f"{type(layer).__name__} has no self.net"
            )
        net.register_forward_hook(lambda module, inputs, output: output * STRONG_GAIN)
        return layer

    return FlowSpec(
        name=f"{spec.name} (strong conditioner)", summary=spec.summary, build=build, options=spec.options, min_dim=2
    )


UNBOUNDED = (
    "Your layer works while the conditioner's outputs are small, and breaks when they grow, as they do in training: "
    "the scale s is not bounded, so exp(s) overflows to inf (large s) or wipes out z_b (x_b ≈ t when s ≪ 0, and the "
    "inverse cannot get z_b back). Bound it smoothly: s = B·tanh(ŝ/B) with B = self.bound."
)

COUPLING = Exercise(
    name="coupling",
    title="an affine coupling layer with a bounded scale",
    answer="the class AffineCoupling (built as AffineCoupling(dim, parity), conditioner in self.net)",
    variants=(
        Variant(
            "your layer",
            coupling_layer,
            (
                "invertibility",
                "logdet",
                "normalization",
                "sample_consistency",
                "batch_independence",
                "gradients",
                "dtype_device",
                "stress",
            ),
            {
                "logdet": "The Jacobian of a coupling layer is triangular with diagonal exp(s) on the moved "
                "coordinates: forward returns Σ s over them, inverse −Σ s (s computed from the kept half, which is "
                "the same on both sides).",
                "invertibility": "inverse must undo forward: the kept half is unchanged, so the same (s, t) can be "
                "computed from it, and z_b = (x_b − t)·exp(−s).",
                "batch_independence": "Each row must be transformed on its own: no statistic over the batch.",
                "gradients": "Every parameter must be reached by a finite gradient: use s and t from self.net, "
                "without .detach().",
            },
        ),
        Variant(
            f"your layer with its conditioner's outputs ×{STRONG_GAIN:g} (as training can make them)",
            strong_coupling_layer,
            ("invertibility", "stress"),
            {"invertibility": UNBOUNDED, "stress": UNBOUNDED},
        ),
    ),
)


def coupling_stack(answer: Any) -> FlowSpec:
    fn = a_function(answer, "the function stack(dim) that returns your stack of coupling layers")
    return FlowSpec(name="your stack", summary="coupling layers", build=lambda dim: fn(dim), min_dim=2, mixes=True)


COUPLING_STACK = Exercise(
    name="coupling_stack",
    title="a stack of coupling layers in which every coordinate is transformed",
    answer="the function stack (called as stack(dim), returning a flowlab.Compose)",
    variants=(
        Variant(
            "your stack",
            coupling_stack,
            ("mixing", "invertibility", "logdet"),
            {
                "mixing": "Some outputs never depend on some inputs: with the same half kept by every layer and "
                "nothing in between, the kept coordinates pass through the whole stack unchanged (x_i = z_i), "
                "and the model can never fit them. Let the layers take turns at which half they keep, or put a "
                "flowlab.Permutation between them that brings kept coordinates to moved places: a reversal alone "
                "leaves the middle coordinate of an odd dim in place, and a reversal with alternating halves "
                "cancels out when the dim is even.",
                "logdet": "A stack's log-det is the sum of its layers' (chain rule): flowlab.Compose adds them.",
            },
        ),
    ),
)


def made_layer(answer: Any) -> FlowSpec:
    cls = a_class(answer, "the class of the autoregressive layer your masks build, built as MaskedAffine(dim)")
    return FlowSpec(name="your autoregressive layer", summary="MADE", build=lambda dim: cls(dim), min_dim=2)


NOT_TRIANGULAR = (
    "The log-det Σ s and the one-pass inverse both need a triangular Jacobian: (m_i, s_i) may read z_1 … z_{i−1} "
    "only. A hidden unit of degree k may read inputs of degree ≤ k; output i may read hidden units of degree < i "
    "(strictly: with ≤, output i sees z_i itself)."
)

MADE_MASK = Exercise(
    name="made_mask",
    title="the masks of a MADE: an autoregressive layer from an ordinary MLP",
    answer="the class MaskedAffine (built as MaskedAffine(dim)), which builds its masks with your made_masks",
    variants=(
        Variant(
            "your autoregressive layer",
            made_layer,
            ("logdet", "invertibility", "sample_consistency", "normalization", "batch_independence"),
            {"logdet": NOT_TRIANGULAR, "invertibility": NOT_TRIANGULAR, "sample_consistency": NOT_TRIANGULAR},
        ),
    ),
)

EXERCISES = (CHANGE_OF_VARIABLES, COUPLING, COUPLING_STACK, MADE_MASK)
