"""Planted-bug vector fields: each must fail the check named in ``EXPECTED``.

- ``mutant_scalar_time``: the tutorial's time embedding ``t.view(1, 1).expand(batch, 1)``: right for the one 0-d
  time an ODE solver passes, an error for the one time per row a flow-matching loss passes.
- ``mutant_first_row_time``: ``t.reshape(-1)[0]``: a batch of times runs without error, every row at the first
  row's time.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flowlab_cnf import SPEC as CNF
from torch import Tensor

from flowlab import hookimpl
from flowlab.ode import ODEBijector, TimeMLP, build_ode_bijector


class ScalarTime(TimeMLP):
    def time_features(self, t: Tensor, batch: int, like: Tensor) -> Tensor:
        return super().time_features(t.view(1, 1).expand(batch, 1), batch, like)


class FirstRowTime(TimeMLP):
    def time_features(self, t: Tensor, batch: int, like: Tensor) -> Tensor:
        return super().time_features(t.reshape(-1)[0], batch, like)


def with_field(cls: type[TimeMLP]) -> Any:
    def build(dim: int, **options: Any) -> ODEBijector:
        bijector = build_ode_bijector(dim, options)
        field = cls(dim, hidden=options["hidden"], depth=options["depth"], frequencies=options["frequencies"])
        return ODEBijector(field, solver=bijector.solver)

    return build


MUTANTS = (
    replace(CNF, name="mutant_scalar_time", build=with_field(ScalarTime)),
    replace(CNF, name="mutant_first_row_time", build=with_field(FirstRowTime)),
)

EXPECTED: dict[str, str] = {"mutant_scalar_time": "time_embedding", "mutant_first_row_time": "time_embedding"}


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    for mutant in MUTANTS:
        register(mutant)
