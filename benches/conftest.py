"""Benchmark fixtures, and a closing table of ratios and of shares of the roofline bound, measured in this one run.

Run with ``pytest benches --benchmark-only``. Set ``FASTRNN_BENCH_CORPUS`` to a text file to
benchmark on it (the figures in README use tinyshakespeare); the default is the built-in corpus.
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest

from fastrnn.backends import BackendUnavailable, get_backend
from fastrnn.network.corpus import load_corpus


@pytest.fixture(scope="session")
def corpus():
    return load_corpus(os.environ.get("FASTRNN_BENCH_CORPUS") or None)


@pytest.fixture(scope="session")
def roofline_ceilings():
    """This machine's ceilings, measured once per session (``fastrnn bench --roofline`` takes more rounds)."""
    from fastrnn.bench.ceilings import measure_ceilings

    return measure_ceilings(min_seconds=0.02, rounds=3)


def record_roofline(benchmark, corpus, ceilings, hidden, seq_length, dtype, steps):
    """Attach the roofline bound of ``steps`` training steps, for the closing summary's percentages."""
    from fastrnn.bench.roofline import step_bound

    seconds, by, _ = step_bound(corpus, ceilings, hidden, seq_length, dtype)
    benchmark.extra_info["roofline_s"] = steps * seconds
    benchmark.extra_info["roofline_by"] = by


def backend_or_skip(name):
    try:
        return get_backend(name)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


def ratio_phrase(baseline_median: float, median: float, baseline_name: str) -> str:
    """``'1.50x faster than numpy'``, or ``'2.00x slower than threads'`` when it is slower."""
    speedup = baseline_median / median
    if speedup >= 1.0:
        return f"{speedup:7.2f}x faster than {baseline_name}"
    return f"{1.0 / speedup:7.2f}x slower than {baseline_name}"


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables, so the summary ends the run
def pytest_terminal_summary(terminalreporter, config):
    """Ratios of medians between benchmarks of one group, all measured in this run."""
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups = defaultdict(dict)
    for bench in session.benchmarks:
        if bench.has_error or not bench.stats:
            continue
        groups[bench.group][bench.extra_info.get("contender", bench.name)] = bench.stats.median
    rows = []
    for bench in session.benchmarks:  # benches/test_scoring.py: a cost share, not a speed ratio
        info = bench.extra_info
        if not bench.has_error and "scoring_share" in info:
            rows.append(f"  {bench.group:40} {info['contender']:16} scoring {1e3 * info['scoring_s']:8.1f} ms = "
                        f"{100 * info['scoring_share']:4.1f}% of training ({info['training_s']:.3f} s)")
    for bench in session.benchmarks:  # share of the roofline bound (fastrnn.bench.roofline's model) reached
        info = bench.extra_info
        if not bench.has_error and bench.stats and "roofline_s" in info:
            rows.append(f"  {bench.group:40} {info['contender']:10} {100 * info['roofline_s'] / bench.stats.median:5.0f}% "
                        f"of the roofline bound ({1e6 * info['roofline_s']:,.1f} µs, set by {info['roofline_by']})")
    rates = defaultdict(dict)  # benches/test_dask.py: training done per second of a time-budgeted run
    for bench in session.benchmarks:
        if not bench.has_error and "work_per_second" in bench.extra_info:
            rates[bench.group][bench.extra_info["contender"]] = bench.extra_info["work_per_second"]
    for group, found in sorted(rates.items()):
        baseline = found.get("1 worker")
        for name, rate in sorted(found.items()):
            if baseline and name != "1 worker":
                rows.append(f"  {group:40} {name:10} trains {rate / baseline:5.2f}x the work per second of 1 worker "
                            f"(median over rounds)")
    for group, medians in sorted(groups.items()):
        if group in rates:  # the time is the budget; the speed is the work done in it
            continue
        baseline_name = next((name for name in ("numpy", "1 thread", "1 worker", "float64", "threads") if name in medians), None)
        if baseline_name is None:
            continue
        baseline = medians[baseline_name]
        for name, median in sorted(medians.items()):
            if name != baseline_name:
                rows.append(f"  {group:40} {name:10} {ratio_phrase(baseline, median, baseline_name)}")
    if rows:
        terminalreporter.write_sep("-", "speed ratios (median vs median, this run)")
        for row in rows:
            terminalreporter.write_line(row)
