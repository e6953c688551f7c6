"""flowlab plugin ``datasets``: the eight 2D toy densities of the FFJORD suite and scikit-learn's digits
(``digits.py``, 64-d, a finite dataset with a fixed split).

Entropies (nats) are ``H = −E_p[log p(x)]``: closed form where there is one, otherwise a Monte-Carlo average of the
exact log-density (``toys.py``) over 10⁵ points (standard error ≈ 0.003); ``tests/test_datasets.py`` re-estimates
each one and checks the stated value.
"""

from __future__ import annotations

from typing import Any

from flowlab import DatasetSpec, hookimpl
from flowlab_datasets import digits, toys

MC = "Monte Carlo: −mean log p over 10⁵ points with the exact density (quadrature over the curve), SE ≈ 0.003"

SPECS = (
    DatasetSpec(
        name="8gaussians",
        summary="8 Gaussians (std 0.354) on a circle of radius 2.83",
        sampler=toys.eight_gaussians,
        dim=2,
        entropy=2.83,
        entropy_source="Monte Carlo: −mean log p over 10⁵ points (SE 0.003); ln 8 + ln(2πeσ²) = 2.838 if the "
        "components did not overlap",
        log_prob=toys.eight_gaussians_log_prob,
        description=toys.eight_gaussians.__doc__ or "",
    ),
    DatasetSpec(
        name="checkerboard",
        summary="uniform on the 8 dark squares of a 4×4 checkerboard on [−4, 4]²",
        sampler=toys.checkerboard,
        dim=2,
        entropy=3.47,
        entropy_source="closed form: uniform on area 32, H = ln 32 = 3.466",
        log_prob=toys.checkerboard_log_prob,
        description=toys.checkerboard.__doc__ or "",
    ),
    DatasetSpec(
        name="circles",
        summary="two concentric circles (radii 3 and 1.5) with noise 0.24",
        sampler=toys.circles,
        dim=2,
        entropy=3.27,
        entropy_source=MC,
        log_prob=toys.circles_log_prob,
        description="Equal mixture of the circles of radius 3 and 1.5 (sklearn's `make_circles(factor=0.5)` ×3), "
        "a uniform random angle, plus N(0, 0.24²) noise (0.08 before the ×3).",
    ),
    DatasetSpec(
        name="rings",
        summary="four concentric rings (radii 3, 2.25, 1.5, 0.75) with noise 0.08",
        sampler=toys.rings,
        dim=2,
        entropy=2.62,
        entropy_source=MC,
        log_prob=toys.rings_log_prob,
        description="Equal mixture of the circles of radius 3, 2.25, 1.5 and 0.75 (FFJORD: radii 1, ¾, ½, ¼ times "
        "3), a uniform random angle, plus N(0, 0.08²) noise.",
    ),
    DatasetSpec(
        name="moons",
        summary="two interleaved half circles (radius 2) with noise 0.2",
        sampler=toys.moons,
        dim=2,
        entropy=2.39,
        entropy_source=MC,
        log_prob=toys.moons_log_prob,
        description=toys.moons.__doc__ or "",
    ),
    DatasetSpec(
        name="swissroll",
        summary="a 2D swiss roll (1.5 turns of an Archimedean spiral) with noise 0.2",
        sampler=toys.swissroll,
        dim=2,
        entropy=2.67,
        entropy_source=MC,
        log_prob=toys.swissroll_log_prob,
        description=toys.swissroll.__doc__ or "",
    ),
    DatasetSpec(
        name="2spirals",
        summary="two opposite spirals of 1.5 turns with uniform jitter and noise 0.1",
        sampler=toys.two_spirals,
        dim=2,
        entropy=2.65,
        entropy_source=MC.replace("the curve", "the curve of a uniform⊛Gaussian kernel"),
        log_prob=toys.two_spirals_log_prob,
        description=toys.two_spirals.__doc__ or "",
    ),
    DatasetSpec(
        name="pinwheel",
        summary="five bent Gaussian arms",
        sampler=toys.pinwheel,
        dim=2,
        entropy=None,
        entropy_source="not known: the arms are a nonlinear map of a Gaussian with no closed-form inverse",
        description=toys.pinwheel.__doc__ or "",
    ),
)


@hookimpl
def flowlab_register_datasets(register: Any) -> None:
    for spec in (*SPECS, digits.SPEC):
        register(spec)
