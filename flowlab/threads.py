"""The thread policy of the conformance kit: how many intra-op threads torch uses in a kit run.

The kit's tensors are small (a batch of at most 8 points in a few dimensions), so torch's threads cost more in
start-up and synchronisation than they save: one thread per process is faster even alone, and several processes
that each start one thread per core (``tox -p``, CI, a busy laptop, ``flowlab check -n``) oversubscribe the cores
and spin against each other until a run that took 37 s takes 600 s. So, for ``flowlab check``, its workers and
``flowlab.testing.conformance_tests``, in this order of precedence:

1. ``flowlab check --threads N`` (the caller's explicit request);
2. ``$FLOWLAB_THREADS`` if set;
3. ``$OMP_NUM_THREADS`` if set: torch already honours it, the kit leaves torch alone;
4. otherwise **1 thread**.

``0`` (``--threads 0`` or ``FLOWLAB_THREADS=0``) means torch's own default (one thread per core, or
``$OMP_NUM_THREADS``). Importing this module does not import torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from flowlab.errors import OptionError

ENV = "FLOWLAB_THREADS"
OMP_ENV = "OMP_NUM_THREADS"
DEFAULT = 1


def parse(text: str, source: str) -> int:
    """``text`` as a thread count (an integer ≥ 0); :class:`~flowlab.errors.OptionError` naming ``source`` if not."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise OptionError(f"{source} expects a number of threads (0: torch's default), got {text!r}")
    return value


def resolve(requested: int | None = None, environ: Mapping[str, str] | None = None) -> int | None:
    """The thread count the policy asks for (see the module docstring), or ``None`` to leave torch as it is."""
    env = os.environ if environ is None else environ
    if requested is None and env.get(ENV, "").strip():
        requested = parse(env[ENV].strip(), f"${ENV}")
    if requested is None:
        return None if env.get(OMP_ENV, "").strip() else DEFAULT
    return requested or None


def apply(requested: int | None = None) -> int:
    """Set torch's intra-op threads by the policy; returns the number torch now uses."""
    import torch

    count = resolve(requested)
    if count is not None:
        torch.set_num_threads(count)
    return int(torch.get_num_threads())


@contextmanager
def limited(requested: int | None = None) -> Iterator[int]:
    """:func:`apply` for the duration of a ``with`` block, then restore torch's previous thread count (a test suite's
    other tests keep theirs)."""
    import torch

    before = torch.get_num_threads()
    try:
        yield apply(requested)
    finally:
        torch.set_num_threads(before)
