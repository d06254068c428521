"""The closing summary of ``pytest benches --benchmark-only``: last, and in words that say what they mean."""
from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bench_conftest():
    spec = importlib.util.spec_from_file_location("benches_conftest", ROOT / "benches" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_slower_contender_is_called_slower():
    conftest = _bench_conftest()
    assert conftest.ratio_phrase(2.0, 1.0, "numpy").split() == ["2.00x", "faster", "than", "numpy"]
    assert conftest.ratio_phrase(1.0, 2.0, "threads").split() == ["2.00x", "slower", "than", "threads"]


def test_the_summary_comes_after_pytest_benchmarks_tables():
    hook = _bench_conftest().pytest_terminal_summary
    assert hook.pytest_impl.get("trylast") is True
