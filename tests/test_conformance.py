"""The conformance kit over every registered flow: one test per flow × property × device (``--device``).

The same runner as ``flowlab check``; a property that does not apply to a flow is skipped with the kit's reason.
"""

from __future__ import annotations

from flowlab.testing import conformance_tests

test_conformance = conformance_tests()
