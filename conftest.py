"""Repository-root pytest hook: `pytest --benchmark-only` runs the benchmarks.

pyproject's ``testpaths`` names ``tests`` only, so a plain ``python -m pytest`` stays the fast
test run. With ``--benchmark-only`` and no paths given, the run collects ``benches`` instead
(every test in ``tests`` would only be skipped by pytest-benchmark). Paths given on the
command line are always used as given.
"""

from __future__ import annotations

from pathlib import Path

import pytest

BENCHES = Path(__file__).parent / "benches"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if config.getoption("benchmark_only", default=False) and config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        config.args[:] = [str(BENCHES)]
