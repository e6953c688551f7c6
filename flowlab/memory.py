"""Keep freed memory in the process: glibc's ``malloc`` tuned so that torch's large temporaries are reused, not
handed back to the kernel and faulted in again.

A flow's ``log_prob`` on a batch of 4096 points in 64 dimensions makes a few dozen float32 temporaries of 1 MB
(matrix products, the soft clamp's passes), each freed a moment later. glibc serves such blocks with ``mmap`` or
from the top of its heap, and by default gives them back to the kernel on ``free`` (``munmap``, or trimming the heap
top above ``M_TRIM_THRESHOLD``): the next 1 MB temporary then takes 256 page faults, each a kernel entry that zeroes
a page. Whether a process falls into that pattern depends on its heap's history, so the same code in two processes
differs: ``maf`` at d = 64, ``log_prob`` of 4096 points, two threads, faulted 0, 0, 131 and 2052 times per call in
four processes, and 0 times in every process with the thresholds below (docs/benchmarks.md, "Freed memory kept").

:func:`keep_freed_memory` sets two of glibc's ``mallopt`` parameters for this process:

- ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's largest): blocks below it come from the heap, not from a fresh ``mmap``;
- ``M_TRIM_THRESHOLD`` = 1 GiB: freed memory at the heap's top stays in the process for the next allocation.

The price is a resident size that stays near its peak (what a process freed is kept for reuse, not returned) until
the process exits: right for a command (``flowlab check``, ``train``, ``compare``) and a benchmark, a choice for a
long-lived program. So the library never calls it on import: :func:`flowlab.startup.settle` calls it for the
``flowlab`` command's own process and the workers of ``flowlab check -n``; a program may call it itself. It does
nothing (and returns ``False``) off glibc (macOS, Windows, musl), when ``$FLOWLAB_KEEP_FREED_MEMORY`` is ``0``, or
when the environment already tunes glibc's malloc (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``GLIBC_TUNABLES``): a user's own setting wins. Under another allocator preloaded (jemalloc, tcmalloc) the calls
reach glibc's ``mallopt`` and change nothing that allocator does.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping

ENV = "FLOWLAB_KEEP_FREED_MEMORY"
#: environment variables through which a user tunes glibc's malloc; if one is set, flowlab leaves malloc alone
GLIBC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
#: ``mallopt`` parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit systems (HEAP_MAX_SIZE / 2); a larger value is refused
TRIM_THRESHOLD = 1 << 30


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether flowlab should tune malloc in this environment (see the module docstring)."""
    env = os.environ if environ is None else environ
    if env.get(ENV, "").strip() == "0":
        return False
    return not any(env.get(name) for name in GLIBC_ENV) and platform.libc_ver()[0] == "glibc"


def keep_freed_memory(environ: Mapping[str, str] | None = None) -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` for this process; ``True`` if both were set."""
    if not wanted(environ):
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols, glibc's among them (no library search)
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
