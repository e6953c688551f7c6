"""flowlab plugin ``checks``: the built-in properties of the conformance kit, registered like any plugin's checks.

One module per property; each defines ``CHECK``, a :class:`~flowlab.checks.CheckSpec`.
"""

from __future__ import annotations

from typing import Any

from flowlab import hookimpl
from flowlab_checks import (
    batch_independence,
    build,
    call_forms,
    context_dependence,
    determinism,
    dtype_device,
    gradients,
    invertibility,
    logdet,
    logdet_estimator,
    mixing,
    normalization,
    sample_consistency,
    state,
    stress,
    support,
)

CHECKS = (
    build.CHECK,
    invertibility.CHECK,
    logdet.CHECK,
    logdet_estimator.CHECK,
    determinism.CHECK,
    normalization.CHECK,
    sample_consistency.CHECK,
    batch_independence.CHECK,
    gradients.CHECK,
    dtype_device.CHECK,
    mixing.CHECK,
    stress.CHECK,
    state.CHECK,
    call_forms.CHECK,
    support.CHECK,
    context_dependence.CHECK,
)


@hookimpl
def flowlab_register_checks(register: Any) -> None:
    for check in CHECKS:
        register(check)
