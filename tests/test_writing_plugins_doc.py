"""The code of docs/writing-plugins.md that stands on its own runs: the Bijector skeleton, the spec with its
EXPLANATION, the dataset hook."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import flowlab

DOC = (Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", DOC, re.S)


def block(marker: str) -> dict:
    """Execute the python block of the page that contains ``marker``; its namespace."""
    [code] = [b for b in BLOCKS if marker in b]
    namespace: dict = {}
    exec(compile(code, f"writing-plugins.md:{marker}", "exec"), namespace)
    return namespace


def test_the_bijector_skeleton_is_a_correct_bijector():
    bijector = block("class ScaleShift")["ScaleShift"](3)
    with torch.no_grad():
        bijector.log_scale.copy_(torch.tensor([0.5, -1.0, 2.0]))
    z = torch.randn(5, 3, dtype=torch.float64)
    bijector = bijector.double()
    x, forward = bijector(z)
    back, inverse = bijector.inverse(x)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(forward, -inverse)
    torch.testing.assert_close(forward, torch.full((5,), 1.5, dtype=torch.float64))


def test_the_spec_block_defines_its_explanation():
    pytest.importorskip("flowlab_planar", reason="the example plugin is not installed")
    spec = block("SPEC = FlowSpec(")["SPEC"]
    assert "Log-determinant" in spec.explanation and spec.min_dim == 1 and spec.mixes is True


def test_the_dataset_hook_registers_a_sampler_drawing_from_its_generator():
    namespace = block("def flowlab_register_datasets")
    records: list = []
    namespace["flowlab_register_datasets"](records.append)
    [spec] = records
    assert isinstance(spec, flowlab.DatasetSpec) and spec.dim == 2
    points = spec.sample(100, torch.Generator().manual_seed(0))
    assert points.shape == (100, 2)
    torch.testing.assert_close(points, spec.sample(100, torch.Generator().manual_seed(0)))


def test_the_coupling_flow_over_flowlab_layers_is_a_correct_mixing_flow():
    namespace = block("class AdditiveCoupling(Coupling)")
    records: list = []
    namespace["flowlab_register_flows"](records.append)
    [spec] = records
    options = {name: option.default for name, option in spec.options.items()}
    torch.manual_seed(0)
    flow = spec.build(4, **{**options, "layers": 3, "hidden": 8}).double()
    with torch.no_grad():  # away from the identity start: random t's last layers and ActNorm parameters
        for parameter in flow.parameters():
            parameter.copy_(0.5 * torch.randn_like(parameter))
    flow.eval()
    z = torch.randn(6, 4, dtype=torch.float64)
    x, forward = flow(z)
    back, inverse = flow.inverse(x)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(inverse, -forward)
    jacobian = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], z[0])
    torch.testing.assert_close(forward[0], torch.linalg.slogdet(jacobian).logabsdet)
    assert spec.mixes(options | {"layers": 3}) and (jacobian.abs() > 1e-12).all()
