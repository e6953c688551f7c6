"""Shared fixtures: Hypothesis profiles, the ``--device`` option and the ``cuda`` marker."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "quick",
    max_examples=10,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("FLOWLAB_PROFILE", "quick"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        action="store",
        default="cpu",
        choices=("cpu", "cuda", "all"),
        help="devices the device-parametrized tests run on (cuda tests skip with a reason where none is)",
    )


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
    """``randomize(module, seed)``: perturb every parameter (see :func:`randomize_`)."""
    return randomize_


def randomize_(module: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """Add N(0, scale²) noise to every parameter, so identity-initialised layers are not trivially correct."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) * scale)
    return module
