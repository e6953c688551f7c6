"""The conformance kit: property checks any flow plugin must pass (``flowlab check``; ``docs/checks.md``).

- ``base``: the records ``Case``, ``CheckResult``, ``CheckSpec`` and the lookups ``checks()``, ``check_spec()``;
- ``cases``: from a case to the bijector under test (``build_case_bijector``) and its inputs (``case_points``);
- ``strategies``: the Hypothesis strategies cases are drawn from; ``profiles``: ``quick`` and ``thorough``;
- ``measure``: calling a bijector with shape checks, per-row Jacobians, mixed errors, ``judge``;
- ``integrate``: box quadrature and importance sampling for ``normalization``;
- ``runner``: one check on one flow and device -> ``PropertyRun``, with the shrunk counterexample.

The properties themselves are registered by plugins (the built-in ones by ``plugins/flowlab_checks``).
Importing this package does not import torch.
"""
