"""The Hypothesis profiles of the conformance kit, shared by ``flowlab check``, the test suite and the pytest plugin.

- ``quick``: derandomized (the same cases on every run), few examples, no example database; CI and the default.
- ``thorough``: many random examples, with the example database on (a failure found once is replayed first).

Imports only Hypothesis (no torch), so the pytest plugin can register the profiles at start-up.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE_ENV = "FLOWLAB_PROFILE"
DEFAULT_PROFILE = "quick"

PROFILES: dict[str, settings] = {
    "quick": settings(
        max_examples=10,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    ),
    "thorough": settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]),
}


def register_profiles() -> None:
    """Register ``quick`` and ``thorough`` with Hypothesis (idempotent)."""
    for name, profile in PROFILES.items():
        settings.register_profile(name, profile)


def profile_name(explicit: str | None = None) -> str:
    """``explicit`` if given, else ``$FLOWLAB_PROFILE``, else ``quick``; an unknown name is a usage error."""
    name = explicit or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    if name not in PROFILES:
        from flowlab.errors import OptionError

        raise OptionError(f"unknown profile {name!r}; known profiles: {', '.join(PROFILES)}")
    return name
