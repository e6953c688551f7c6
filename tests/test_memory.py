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


@pytest.mark.skipif(not GLIBC, reason="needs glibc: keep_freed_memory tunes glibc's malloc only")
def test_freed_large_blocks_are_reused_without_page_faults() -> None:
    """In a fresh process: 1 MB blocks freed and made again fault pages in by default's worst case, never once the
    thresholds are set (a block of 1 MB comes from the heap and stays there after ``free``)."""
    script = (
        "import resource, sys, torch\n"
        "from flowlab.memory import keep_freed_memory\n"
        "assert keep_freed_memory({}) is True\n"
        "x = torch.randn(4096, 64)\n"
        "for _ in range(20): y = (x * 2).exp() - x\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(200): y = (x * 2).exp() - x\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(result.stdout) < 50, f"{result.stdout} page faults for 200 rounds of 1 MB temporaries"


def test_off_glibc_or_opted_out_it_reports_that_nothing_was_set() -> None:
    assert memory.keep_freed_memory({"FLOWLAB_KEEP_FREED_MEMORY": "0"}) is False
