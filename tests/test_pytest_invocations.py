"""The design's own commands: `pytest --benchmark-only` from the root runs benches/, plain pytest runs tests/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _collected(*args):
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return [line.split("::")[0] for line in result.stdout.splitlines() if "::" in line]


def test_benchmark_only_from_the_root_collects_the_benchmarks():
    files = _collected("--benchmark-only")
    assert files and all(name.startswith("benches/") for name in files), sorted(set(files))


def test_plain_pytest_collects_the_tests_only():
    files = _collected()
    assert "tests/test_pytest_invocations.py" in files
    assert all(name.startswith("tests/") for name in files), sorted(set(files))


def test_paths_given_are_used_as_given():
    assert set(_collected("tests/test_sampling.py", "--benchmark-only")) == {"tests/test_sampling.py"}
