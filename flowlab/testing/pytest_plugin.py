"""flowlab's pytest plugin (entry point ``pytest11``), loaded by pytest wherever flowlab is installed.

Import-light on purpose: it imports pytest and Hypothesis only (no torch, no plugin discovery) until a test asks for
the conformance kit. It adds:

- ``--flowlab-device cpu|cuda|all`` (default ``$FLOWLAB_DEVICE`` or ``cpu``) and ``--flowlab-profile quick|thorough``
  (default ``$FLOWLAB_PROFILE`` or ``quick``) for the tests made by :func:`flowlab.testing.conformance_tests`;
- the Hypothesis profiles ``quick`` and ``thorough`` (``--hypothesis-profile=thorough`` works in any suite);
- the ``flowlab_conformance`` marker, expanded into one test per flow × property × device.
"""

from __future__ import annotations

import os

import pytest

from flowlab.checks.profiles import PROFILES, profile_name, register_profiles

DEVICE_ENV = "FLOWLAB_DEVICE"

register_profiles()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flowlab", "flowlab conformance kit")
    group.addoption(
        "--flowlab-device",
        choices=("cpu", "cuda", "all"),
        default=os.environ.get(DEVICE_ENV, "cpu"),
        help="devices of the conformance tests (cuda ones skip with a reason where there is no CUDA)",
    )
    group.addoption(
        "--flowlab-profile",
        choices=tuple(PROFILES),
        default=None,
        help="Hypothesis profile of the conformance tests (default: $FLOWLAB_PROFILE or quick)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "flowlab_conformance(names, properties): run flowlab's conformance kit (see flowlab.testing.conformance_tests)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("flowlab_conformance")
    if marker is None:
        return
    from flowlab.testing.conformance import parameters

    choice = metafunc.config.getoption("--flowlab-device")
    devices = ("cpu", "cuda") if choice == "all" else (choice,)
    params = parameters(marker.kwargs.get("names", ()), marker.kwargs.get("properties"), devices)
    metafunc.parametrize(("flowlab_flow", "flowlab_property", "flowlab_device"), params)


@pytest.fixture
def flowlab_profile(request: pytest.FixtureRequest) -> str:
    """The Hypothesis profile of the conformance tests: ``--flowlab-profile``, else ``--hypothesis-profile`` if it
    names one of flowlab's profiles, else ``$FLOWLAB_PROFILE``, else ``quick``."""
    explicit = request.config.getoption("--flowlab-profile")
    hypothesis_profile = request.config.getoption("hypothesis_profile", None)
    if explicit is None and hypothesis_profile in PROFILES:
        explicit = hypothesis_profile
    return profile_name(explicit)
