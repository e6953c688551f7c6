"""``flowlab check --dim N``: the kit draws dimensions N..N+4, so a bug that only shows in high dimension is found
there (and not at the default min_dim..min_dim+4), with a reproduce command naming the flow itself."""

from __future__ import annotations

import json
import re
import shlex

from flowlab.cli import main

#: a diagonal affine flow whose forward log-det is 0.5 off from dimension 12 on
PLUGIN = """
from dataclasses import replace
from typing import Any

import torch

import flowlab_affine
from flowlab import Bijector, hookimpl


class WideBug(Bijector):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.scale = torch.nn.Parameter(torch.linspace(-0.5, 0.5, dim))

    def forward(self, z):
        bug = 0.5 if self.dim >= 12 else 0.0
        return z * self.scale.exp(), self.scale.sum().expand(z.shape[0]) + bug

    def inverse(self, x):
        return x * (-self.scale).exp(), -self.scale.sum().expand(x.shape[0])


SPEC = replace(
    flowlab_affine.SPEC, name="wide_bug", summary="wrong log-det from d = 12", build=lambda dim, **o: WideBug(dim),
    options={}, check_options={},
)


@hookimpl
def flowlab_register_flows(register: Any) -> None:
    register(SPEC)
"""


def test_dim_finds_a_high_dimensional_bug_and_reproduces_it_with_the_flows_own_name(tmp_path, capsys):
    plugin = tmp_path / "wide_bug.py"
    plugin.write_text(PLUGIN)
    base = ["check", "--plugin", str(plugin), "wide_bug", "--property", "logdet"]
    assert main(base) == 0, "dimensions 1..5: no bug to find"
    report = tmp_path / "report.json"
    assert main([*base, "--dim", "12", "--json", str(report)]) == 1
    run = json.loads(report.read_text())["flows"]["wide_bug@d12"]["properties"]["logdet"]["cpu"]
    assert run["status"] == "failed"
    reproduce = run["counterexample"]["reproduce"]
    assert " wide_bug --property logdet " in reproduce and "@d12" not in reproduce
    dim = int(re.search(r'"dim": ?(\d+)', reproduce).group(1))
    assert 12 <= dim <= 16
    assert main(shlex.split(reproduce)[1:]) == 1, "the reproduce command fails the same way"
    capsys.readouterr()
    assert main(["check", "--plugin", str(plugin), "wide_bug", "--property", "logdet", "--dim", "0"]) == 2
    assert "--dim: expected N >= 1" in capsys.readouterr().err
