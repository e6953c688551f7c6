"""flowlab's pytest plugin is import-light, and ``conformance_tests`` works in a foreign test suite."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run_pytest(folder, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *args, str(folder)],
        capture_output=True,
        text=True,
        cwd=folder,
        # as a fresh session: not as a worker of the pytest-xdist run this test may itself be running in
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}, "OMP_NUM_THREADS": "1"},
    )


def test_the_pytest_plugin_does_not_import_torch_at_start_up(tmp_path):
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            """
            import sys

            def pytest_configure(config):
                assert config.pluginmanager.has_plugin("flowlab"), "flowlab's pytest11 plugin is not loaded"
                print("TORCH_AT_START_UP", "torch" in sys.modules)
            """
        )
    )
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TORCH_AT_START_UP False" in result.stdout


def test_conformance_tests_in_a_foreign_suite(tmp_path):
    (tmp_path / "test_mine.py").write_text(
        textwrap.dedent(
            """
            from flowlab.testing import conformance_tests

            test_conformance = conformance_tests("affine", properties=["invertibility", "logdet"])
            """
        )
    )
    result = run_pytest(tmp_path, "--flowlab-device", "all", "-rs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert "needs CUDA" in result.stdout or "4 passed" in result.stdout


def test_conformance_tests_spread_over_pytest_xdist_workers(tmp_path):
    """The way to run the kit across processes or machines: one pytest test per flow × property × device, which
    pytest-xdist distributes (``docs/checks.md``, "Cost under contention")."""
    (tmp_path / "test_kit.py").write_text(
        "from flowlab.testing import conformance_tests\n\n"
        'test_conformance = conformance_tests("affine", "coupling", properties=["invertibility", "logdet"])\n'
    )
    result = run_pytest(tmp_path, "-n", "2", "-p", "xdist")
    assert result.returncode == 0, result.stdout + result.stderr
    # pytest-xdist says "bringing up nodes..." (and "2 workers [4 items]" when not quiet)
    assert "bringing up nodes" in result.stdout and "4 passed" in result.stdout, result.stdout
