"""Planted-bug continuous flows: each must fail the check named in ``EXPECTED``.

- ``mutant_cnf_no_trace``: the tutorial's CNF whose log-density ignores the trace term (log-det always 0).
- ``mutant_cnf_wrong_sign``: ``da/dt = −tr ∂f/∂z``: FFJORD's ``log p(x) = log p(z) − Δ`` applied with the
  integral taken in the other time direction.
- ``mutant_ffjord_resampled_probe``: Hutchinson probes redrawn at every function evaluation inside a solve.
- ``mutant_ffjord_scaled_probe``: uniform(−1, 1) probes, ``E[v vᵀ] = I/3``: the estimate is biased.
- ``mutant_ffjord_biased_solve``: the solve doubles the probe the estimator drew (``E[v vᵀ] = 4I``); the estimator
  object itself is right, so only a check on the probes the flow really uses sees it.
- ``mutant_ffjord_renamed_estimator``: keeps its trace estimator under another name, so it is not a
  ``flowlab.ode.ContinuousFlow``: the Hutchinson checks apply (a stochastic continuous flow) and cannot run, so the
  run is uncovered and ``flowlab check`` fails; never a quiet skip.
- ``mutant_cnf_linearised_jacobian``: a field whose ``jacobian()`` (:class:`flowlab.JacobianField`, the exact
  trace's fast road) forgets the activations' derivatives, ``J = W_L ⋯ W_1``: the value is right, the trace wrong.
- ``mutant_ffjord_linearised_jvp``: a field whose ``jvp()`` (:class:`flowlab.JVPField`, the Hutchinson trace's
  fast road) forgets the activations' derivatives, ``J v = W_L ⋯ W_1 v``: the exact log-det (eval mode, through
  ``jacobian()``) is right, the Hutchinson estimate of training mode biased.
- ``mutant_augmented_offset``: the augmented flow's ``marginal_log_prob`` minus 0.05: still a lower bound that
  rises with ``K``, but ``E[p̂_K/p] = e^−0.05`` instead of 1.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from flowlab_augmented import SPEC as AUGMENTED
from flowlab_augmented.bijector import AugmentedCNF
from flowlab_cnf import SPEC as CNF
from flowlab_ffjord import SPEC as FFJORD
from torch import Tensor

from flowlab import Bijector, FlowSpec, hookimpl
from flowlab.ode import (
    ExactTrace,
    Hutchinson,
    ODEBijector,
    TimeMLP,
    TraceEstimator,
    build_ode_bijector,
    field_from_options,
    ode_options,
    solver_config,
)


class NoTrace(ExactTrace):
    def __call__(self, f: Tensor, z: Tensor, probe: Tensor | None, create_graph: bool) -> tuple[Tensor, Tensor]:
        trace, frobenius = super().__call__(f, z, probe, create_graph)
        return torch.zeros_like(trace), frobenius


class WrongSign(ExactTrace):
    def __call__(self, f: Tensor, z: Tensor, probe: Tensor | None, create_graph: bool) -> tuple[Tensor, Tensor]:
        trace, frobenius = super().__call__(f, z, probe, create_graph)
        return -trace, frobenius


class ResampledHutchinson(Hutchinson):
    def __call__(self, f: Tensor, z: Tensor, probe: Tensor | None, create_graph: bool) -> tuple[Tensor, Tensor]:
        return super().__call__(f, z, self.draw(z, None), create_graph)  # a fresh probe at every evaluation


class ScaledHutchinson(Hutchinson):
    def draw(self, z: Tensor, generator: torch.Generator | None) -> Tensor:
        probe = torch.rand(tuple(z.shape), generator=generator, dtype=torch.float64) * 2 - 1
        return probe.to(device=z.device, dtype=z.dtype)


class BiasedSolve(ODEBijector):
    def integrate(self, y: Tensor, *, reverse: bool, probe: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if probe is None and self.trace_estimator.stochastic:
            probe = 2 * self.trace_estimator.draw(y, self.generator)
        return super().integrate(y, reverse=reverse, probe=probe)


class LinearisedJacobian(TimeMLP):
    def jacobian(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        layers = list(self.net)
        product = layers[0].weight[:, : self.dim]
        for linear in layers[2::2]:
            product = linear.weight @ product  # the activations' derivatives left out
        return self(t, z), product.expand(z.shape[0], self.dim, self.dim)


class LinearisedJVP(TimeMLP):
    def jvp(self, t: Tensor, z: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        layers = list(self.net)
        product = v @ layers[0].weight[:, : self.dim].t()
        for linear in layers[2::2]:
            product = product @ linear.weight.t()  # the activations' derivatives left out
        return self(t, z), product


def build_linearised_jvp(dim: int, *, probe: str, eval_trace: str, seed: int, **options: Any) -> ODEBijector:
    field = field_from_options(dim, options, cls=LinearisedJVP, init_scale=1.0)
    return ODEBijector(
        field, trace=Hutchinson(probe), eval_trace=ExactTrace(), seed=seed, solver=solver_config(options)
    )


def build_linearised(dim: int, **options: Any) -> ODEBijector:
    # init_scale 1: a field far from the identity, whose activations' derivatives are far from 1
    field = field_from_options(dim, options, cls=LinearisedJacobian, init_scale=1.0)
    return ODEBijector(field, solver=solver_config(options))


class RenamedEstimator(Bijector):
    """An ffjord bijector behind a wrapper that calls its estimator ``estimator`` (no ``trace_estimator``)."""

    def __init__(self, inner: ODEBijector) -> None:
        super().__init__()
        self.inner, self.dim, self.estimator = inner, inner.dim, inner.train_trace

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.inner(z)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.inner.inverse(x)


class OffsetMarginal(AugmentedCNF):
    def marginal_log_prob(self, x: Tensor, samples: int | None = None) -> Tensor:
        return super().marginal_log_prob(x, samples) - 0.05


def build_biased(dim: int, *, probe: str, eval_trace: str, seed: int, **options: Any) -> ODEBijector:
    return build_ode_bijector(
        dim, options, trace=Hutchinson(probe), eval_trace=ExactTrace(), seed=seed, cls=BiasedSolve
    )


def build_offset(dim: int, *, augment: int, proposal: str, samples: int, **options: Any) -> ODEBijector:
    return build_ode_bijector(dim, options, cls=OffsetMarginal, augment=augment, proposal=proposal, samples=samples)


def spec(name: str, trace: TraceEstimator, logdet: str = "exact") -> FlowSpec:
    """An ODE flow with ``trace`` in training mode; in eval mode too unless it is stochastic (then exact there, as
    ``ffjord`` by default)."""

    def build(dim: int, **options: Any) -> Any:
        return build_ode_bijector(dim, options, trace=trace, eval_trace=ExactTrace() if trace.stochastic else trace)

    return FlowSpec(
        name=name,
        summary=f"mutant: {type(trace).__name__}",
        build=build,
        kind="continuous",
        logdet=logdet,  # type: ignore[arg-type]
        options=ode_options(),
    )


MUTANTS = (
    spec("mutant_cnf_no_trace", NoTrace()),
    spec("mutant_cnf_wrong_sign", WrongSign()),
    spec("mutant_ffjord_resampled_probe", ResampledHutchinson("gaussian"), "stochastic"),
    spec("mutant_ffjord_scaled_probe", ScaledHutchinson("gaussian"), "stochastic"),
    replace(FFJORD, name="mutant_ffjord_biased_solve", build=build_biased),
    replace(
        FFJORD,
        name="mutant_ffjord_renamed_estimator",
        build=lambda dim, **options: RenamedEstimator(FFJORD.build(dim, **options)),
    ),
    replace(CNF, name="mutant_cnf_linearised_jacobian", build=build_linearised),
    replace(FFJORD, name="mutant_ffjord_linearised_jvp", build=build_linearised_jvp),
    replace(AUGMENTED, name="mutant_augmented_offset", build=build_offset),
)

#: mutants whose property is uncovered (it applies, and the flow lacks what it needs), not failed on a case
UNCOVERED = ("mutant_ffjord_renamed_estimator",)

EXPECTED: dict[str, str] = {
    "mutant_cnf_no_trace": "ode_logdet",
    "mutant_cnf_wrong_sign": "ode_logdet",
    "mutant_ffjord_resampled_probe": "hutchinson_fixed_probe",
    "mutant_ffjord_scaled_probe": "hutchinson_estimator",
    "mutant_ffjord_biased_solve": "hutchinson_solve_unbiased",
    "mutant_ffjord_renamed_estimator": "hutchinson_estimator",
    "mutant_cnf_linearised_jacobian": "ode_logdet",
    "mutant_ffjord_linearised_jvp": "hutchinson_solve_unbiased",
    "mutant_augmented_offset": "augmented_marginal_bound",
}


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    for mutant in MUTANTS:
        register(mutant)
