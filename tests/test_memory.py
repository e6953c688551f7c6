"""``flowlab.memory.keep_freed_memory``: when it tunes glibc's malloc, and that it does."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from flowlab import memory

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, GLIBC),
        ({"FLOWLAB_KEEP_FREED_MEMORY": "0"}, False),
        ({"FLOWLAB_KEEP_FREED_MEMORY": "1"}, GLIBC),
        ({"MALLOC_TRIM_THRESHOLD_": "131072"}, False),
        ({"MALLOC_MMAP_THRESHOLD_": "131072"}, False),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, False),
    ],
)
def test_a_users_own_setting_or_opt_out_leaves_malloc_alone(environ: dict[str, str], expected: bool) -> None:
    assert memory.wanted(environ) is expected


PROBE = """
import ctypes, sys
from flowlab.memory import keep_freed_memory

class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
if sys.argv[1] == "keep":
    assert keep_freed_memory({}) is True
block = libc.malloc(8 << 20)
mapped = libc.mallinfo2().hblkhd  # bytes in blocks served by their own mmap
libc.free(block)
print(mapped >= 8 << 20, libc.mallinfo2().keepcost >= 8 << 20)  # mmapped?  kept at the heap's top after free?
"""


@pytest.mark.skipif(not GLIBC, reason="needs glibc: keep_freed_memory tunes glibc's malloc only")
@pytest.mark.parametrize(("mode", "expected"), [("keep", "False True"), ("default", "True False")])
def test_a_freed_8_mb_block_stays_in_the_heap_once_memory_is_kept(mode: str, expected: str) -> None:
    """In a fresh process (no torch: nothing has moved glibc's dynamic thresholds yet): by default an 8 MB block is
    its own ``mmap``, unmapped on ``free``; with the thresholds set it comes from the heap and stays there after
    ``free`` (``mallinfo2``: ``hblkhd`` counts mmapped bytes, ``keepcost`` the releasable space at the heap's top)."""
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    assert result.stdout.split() == expected.split()


def test_off_glibc_or_opted_out_it_reports_that_nothing_was_set() -> None:
    assert memory.keep_freed_memory({"FLOWLAB_KEEP_FREED_MEMORY": "0"}) is False
