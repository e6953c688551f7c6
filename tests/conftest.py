"""Shared fixtures: Hypothesis profiles, the ``--device`` option and the ``cuda`` marker.

The profiles ``quick`` and ``thorough`` are flowlab's own (``flowlab.checks.profiles``, shared with ``flowlab check``);
``--device`` also sets the devices of the conformance tests (``--flowlab-device`` of flowlab's pytest plugin).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings

from flowlab.checks.cases import perturb_
from flowlab.checks.profiles import profile_name, register_profiles

register_profiles()
settings.load_profile(profile_name())


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        action="store",
        default="cpu",
        choices=("cpu", "cuda", "all"),
        help="devices the device-parametrized tests run on (cuda tests skip with a reason where none is)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.option.flowlab_device = config.getoption("--device")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        choice = metafunc.config.getoption("--device")
        names = ["cpu", "cuda"] if choice == "all" else [choice]
        metafunc.parametrize(
            "device", [pytest.param(n, marks=[pytest.mark.cuda] if n == "cuda" else []) for n in names]
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: torch.cuda.is_available() is False on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def randomize():
    """``randomize(module, seed)``: perturb every parameter as the conformance kit does (identity-initialised layers
    would otherwise be trivially correct); see :func:`flowlab.checks.cases.perturb_`."""
    return perturb_
