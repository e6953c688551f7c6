"""Planted-bug continuous flows: each must fail the check named in ``EXPECTED``.

- ``mutant_cnf_no_trace``: the tutorial's CNF whose log-density ignores the trace term (log-det always 0).
- ``mutant_cnf_wrong_sign``: ``da/dt = −tr ∂f/∂z``: FFJORD's ``log p(x) = log p(z) − Δ`` applied with the
  integral taken in the other time direction.
- ``mutant_ffjord_resampled_probe``: Hutchinson probes redrawn at every function evaluation inside a solve.
- ``mutant_ffjord_scaled_probe``: uniform(−1, 1) probes, ``E[v vᵀ] = I/3``: the estimate is biased.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from flowlab import FlowSpec, hookimpl
from flowlab.ode import ExactTrace, Hutchinson, TraceEstimator, build_ode_bijector, ode_options


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
)

EXPECTED: dict[str, str] = {
    "mutant_cnf_no_trace": "ode_logdet",
    "mutant_cnf_wrong_sign": "ode_logdet",
    "mutant_ffjord_resampled_probe": "hutchinson_fixed_probe",
    "mutant_ffjord_scaled_probe": "hutchinson_estimator",
}


class _Plugin:
    @hookimpl
    def flowlab_register_flows(self, register: Any) -> None:
        for mutant in MUTANTS:
            register(mutant)


PLUGIN = _Plugin()
