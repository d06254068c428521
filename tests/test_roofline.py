"""The roofline report of ``fastrnn bench --roofline``: the work model against counts by hand,
cache sizes from a fake sysfs tree, the bound's arithmetic, and the report's structure with tiny
measurement settings (no timing is asserted: figures come from ``fastrnn bench``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner
from fastrnn.cli.main import cli

from fastrnn import bench
from fastrnn.backends import COMPILED_BACKENDS
from fastrnn.bench import ceilings as ceilings_module
from fastrnn.bench import phases as phases_module
from fastrnn.bench import report

from helpers import available_backends


def test_step_model_counts_at_20_5_float64():
    m = bench.step_model(20, 5, 65, 8)
    # 9 sequential Whh mat-vecs of 2*400 flops; Why h, Why^T dy, dWhy: 3 * 2*65*20 per character; dWhh 2*400 per character
    assert m.flops == 9 * 800 + 5 * 3 * 2600 + 5 * 800 == 50_200
    # Whh 400 + Why 1300 + bh 20 + by 65 + Wxh columns 5 * 20
    assert m.adagrad_elements == 1885
    assert m.whh_bytes == 3200 and m.recurrence_bytes == 9 * 3200
    assert m.state_bytes == 3 * (1300 + 400 + 1300 + 20 + 65) * 8 == 74_040
    assert m.update_bytes == 5 * 1885 * 8 + (3 * 1300 + 400) * 8 == 109_800


def test_step_model_counts_at_100_25_float32_with_measured_columns():
    m = bench.step_model(100, 25, 65, 4, wxh_columns=20)
    assert m.flops == 2 * 10_000 * 49 + 6 * 25 * 65 * 100 + 2 * 25 * 10_000 == 2_455_000
    assert m.adagrad_elements == 10_000 + 6_500 + 100 + 65 + 20 * 100
    assert m.recurrence_bytes == 49 * 40_000 and m.whh_bytes == 40_000
    assert m.itemsize == 4 and m.state_bytes == 3 * (6_500 + 10_000 + 6_500 + 165) * 4


def _ceilings(caches=((1, 4096), (2, 65536))):
    return bench.Ceilings(gemm_flops={"float64": 1e10, "float32": 2e10},
                          adagrad_seconds={"float64": 2e-9, "float32": 1e-9}, caches=list(caches),
                          bandwidth={"L1": 1e11, "L2": 5e10, "memory": 1e10})


def test_bound_is_the_slowest_resource_and_bytes_pass_through_inner_levels():
    m = bench.step_model(20, 5, 65, 8)
    seconds, by, times = bench.roofline_bound(m, _ceilings(), "float64")
    # Whh (3200 B) lives in L1; the state (74,040 B) only in memory: its bytes pass L1 and L2 too
    assert times["gemm"] == pytest.approx(50_200 / 1e10)
    assert times["adagrad"] == pytest.approx(1885 * 2e-9)
    assert times["L1"] == pytest.approx((28_800 + 109_800) / 1e11)
    assert times["L2"] == pytest.approx(109_800 / 5e10)
    assert times["memory"] == pytest.approx(109_800 / 1e10)
    assert by == "memory" and seconds == times["memory"] == max(times.values())


def test_bound_leaves_out_levels_nothing_comes_from_and_can_be_set_by_compute():
    m = bench.step_model(20, 5, 65, 4)
    roomy = _ceilings(((1, 8192), (2, 1 << 20)))
    roomy.gemm_flops["float32"] = 1e11  # 50,200 flops: 0.5 µs, under the Adagrad's 1.9 µs
    seconds, by, times = bench.roofline_bound(m, roomy, "float32")
    assert set(times) == {"gemm", "adagrad", "L1", "L2"}  # the 37,020-byte state fits L2
    assert times["adagrad"] == pytest.approx(1885e-9)
    assert by == "adagrad" and seconds == pytest.approx(1885e-9)


def test_home_level_is_the_innermost_that_holds_the_bytes():
    caches = [(1, 32768), (2, 524288), (3, 33554432)]
    assert bench.home_level(32768, caches) == 0
    assert bench.home_level(32769, caches) == 1
    assert bench.home_level(410 * 410 * 8, caches) == 2
    assert bench.home_level(1 << 30, caches) == 3
    assert bench.level_names(caches) == ["L1", "L2", "L3", "memory"]
    assert bench.home_level(1, []) == 0 and bench.level_names([]) == ["memory"]


def _fake_cache(root, index, level, kind, size):
    d = root / f"index{index}"
    d.mkdir(parents=True)
    (d / "level").write_text(f"{level}\n")
    (d / "type").write_text(f"{kind}\n")
    (d / "size").write_text(f"{size}\n")


def test_cache_sizes_from_a_fake_sysfs_tree(tmp_path):
    _fake_cache(tmp_path, 0, 1, "Data", "48K")
    _fake_cache(tmp_path, 1, 1, "Instruction", "32K")
    _fake_cache(tmp_path, 2, 2, "Unified", "2048K")
    _fake_cache(tmp_path, 3, 3, "Unified", "105M")
    assert bench.cache_sizes(str(tmp_path)) == [(1, 48 << 10), (2, 2 << 20), (3, 105 << 20)]


def test_cache_sizes_fall_back_to_sysconf(tmp_path, monkeypatch):
    import os

    known = {"SC_LEVEL1_DCACHE_SIZE": 32768, "SC_LEVEL2_CACHE_SIZE": 524288, "SC_LEVEL3_CACHE_SIZE": 0}

    def sysconf(name):
        if name not in known:
            raise ValueError(name)
        return known[name]

    monkeypatch.setattr(os, "sysconf", sysconf)
    _fake_cache(tmp_path, 0, 1, "Instruction", "32K")  # no data cache in the tree
    assert bench.cache_sizes(str(tmp_path)) == [(1, 32768), (2, 524288)]


@pytest.mark.parametrize("text,size", [("32K", 32768), ("512K\n", 524288), ("2M", 2 << 20), ("1G", 1 << 30),
                                       ("4096", 4096)])
def test_parse_size(text, size):
    assert ceilings_module._parse_size(text) == size


def test_parse_size_refuses_garbage():
    with pytest.raises(ValueError, match="cache size"):
        ceilings_module._parse_size("lots")


def test_mean_distinct_counts_the_sequences_training_reads():
    data = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5, 9], dtype=np.uint8)
    # windows of 3 at 0, 3, 6: (0,0,1) 2, (2,2,2) 1, (3,4,5) 3
    assert bench.mean_distinct(data, 3) == pytest.approx(2.0)


def test_report_structure_with_tiny_settings(small_corpus):
    caches = [(1, 4096), (2, 16384)]
    ceilings = bench.measure_ceilings(caches=caches, gemm_n=32, min_seconds=0.001, rounds=1, memory_bytes=1 << 16)
    assert set(ceilings.gemm_flops) == set(ceilings.adagrad_seconds) == {"float64", "float32"}
    assert list(ceilings.bandwidth) == ["L1", "L2", "memory"]
    for value in [*ceilings.gemm_flops.values(), *ceilings.adagrad_seconds.values(), *ceilings.bandwidth.values()]:
        assert math.isfinite(value) and value > 0
    rows = bench.roofline(small_corpus, ceilings, configs=((4, 3), (8, 2)), rounds=1)
    assert [(r.hidden, r.seq_length, r.dtype) for r in rows] == [
        (h, s, d) for h, s in ((4, 3), (8, 2)) for d in ("float64", "float32")]
    for row in rows:
        assert set(row.measured) == set(available_backends(COMPILED_BACKENDS))
        assert row.bound_by in row.resources and row.bound_seconds == max(row.resources.values())
        assert row.percent("numba") == pytest.approx(100 * row.bound_seconds / row.measured["numba"])
    table = bench.roofline_markdown(rows).splitlines()
    assert table[0].startswith("| H | S | dtype | bound (µs) | bound by | numba (µs) | numba % of bound |")
    assert len(table) == 2 + len(rows) and all(line.count("|") == table[0].count("|") for line in table)
    assert "L2 read (16 KiB)" in bench.ceilings_markdown(ceilings)


def test_cli_roofline_prints_both_tables(monkeypatch, small_corpus, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(small_corpus.text, encoding="utf-8")
    _small_bench(monkeypatch)
    result = CliRunner().invoke(cli, ["bench", "--roofline", "--rounds", "1", "--alpha", "2", "--corpus", str(path),
                                      "--dtypes", "float32"], prog_name="fastrnn")
    assert result.exit_code == 0, result.output
    assert "load average" in result.output and "| GEMM (numpy BLAS, 1 thread) |" in result.output
    assert "| 4 | 3 | float32 |" in result.output and "float64 |" not in result.output.split("bound by")[1]


def test_cli_roofline_needs_a_compiled_backend():
    result = CliRunner().invoke(cli, ["bench", "--roofline", "--backends", "numpy"], prog_name="fastrnn")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "numba or cython" in lines[0]


@pytest.mark.parametrize("values, fmt, expected", [
    ([1.5, 1.7, 1.6], "{:.2f}x", "1.50–1.70x"),
    ([1.5], "{:.2f}x", "1.50x"),
    ([1.501, 1.499], "{:.2f}x", "1.50x"),
    ([36.2, 41.0], "{:.0f}%", "36–41%"),
    ([7401.0, 12650.4], "{:,.0f}", "7,401–12,650"),
    ([2.1, 3.0], "{:.1f} GB/s", "2.1–3.0 GB/s"),
])
def test_span_prints_the_range_over_repeats(values, fmt, expected):
    assert bench.span(values, fmt.format) == expected


def _fake_run(rate, percent_bound, speedup, ideal=1.9):
    rates = [bench.RateRow("numpy", "float64", 20, 5, rate / 40, 1.0, None),
             bench.RateRow("numba", "float64", 20, 5, rate, 40.0 * rate / 1000, None)]
    measured = {r.backend: 1.0 / r.steps_per_second for r in rates}  # as bench.roofline_rows takes them
    row = bench.RooflineRow(20, 5, "float64", percent_bound / 100 / rate, "adagrad", {"adagrad": 1.0}, measured)
    threads = [bench.ThreadRow("numba", 20, 5, 4, 0.004, 0.004 / speedup, speedup, ideal, speedup / ideal)]
    return bench.BenchRun(_ceilings(), rates, [row], threads)


def test_tables_of_several_runs_give_ranges_and_the_share_of_the_bound():
    runs = [_fake_run(1000.0, 20.0, 1.5, ideal=1.875), _fake_run(1200.0, 25.0, 1.7, ideal=1.7)]
    assert runs[0].percent(runs[0].rates[1]) == pytest.approx(20.0)
    table = bench.rates_markdown(runs).splitlines()
    assert table[0] == "| backend | dtype | H | S | steps/s | x numpy float64 | x own float64 | % of roofline |"
    assert table[3] == "| numba | float64 | 20 | 5 | 1,000–1,200 | 40.0–48.0x | - | 20–25% |"
    assert table[2].startswith("| numpy | float64 | 20 | 5 | 25–30 | 1.0x | - | ")
    threads = bench.threads_markdown(runs).splitlines()
    assert threads[0].endswith("| speed-up | ideal tasks' speed-up | share of ideal |")
    assert threads[2] == "| numba | 20 | 5 | 4 | 0.0040 | 0.0024–0.0027 | 1.50–1.70x | 1.70–1.88x | 80–100% |"


def test_ideal_tasks_compute_every_row_on_any_thread_count():
    """The ceiling's tasks do the work they claim: each row is s = s * b + a applied ``reps`` times,
    on one thread or two alike, and the padding between rows is never written (how fast two
    threads are is the benchmark suite's business, not a test's)."""
    ideal = bench.IdealTasks(3, 1e-4)
    assert isinstance(ideal.reps, int) and ideal.reps >= 1
    for threads in (1, 2):
        ideal.s[:] = 0.0
        ideal.reps = 5
        assert ideal.seconds(threads) > 0
        expected = np.zeros((3, ideal.N))
        for _ in range(5):
            expected = expected * ideal.b[:, :ideal.N] + ideal.a[:, :ideal.N]
        np.testing.assert_allclose(ideal.s[:, :ideal.N], expected, rtol=1e-12)
        assert not ideal.s[:, ideal.N:].any()


def _small_bench(monkeypatch):
    """One tiny config and quick ceilings, for the command line (which checks the corpus against
    ``bench.CONFIGS``) and for :func:`fastrnn.bench.report.bench_run`."""
    real = bench.measure_ceilings
    for module in (bench, report):
        monkeypatch.setattr(module, "CONFIGS", ((4, 3),))
    monkeypatch.setattr(report, "measure_ceilings", lambda rounds: real(caches=[(1, 4096)], gemm_n=16,
                                                                        min_seconds=0.001, rounds=rounds,
                                                                        memory_bytes=1 << 15))


def test_cli_repeat_prints_ranges_of_every_table(monkeypatch, small_corpus, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(small_corpus.text, encoding="utf-8")
    _small_bench(monkeypatch)
    result = CliRunner().invoke(cli, ["bench", "--repeat", "2", "--rounds", "1", "--alpha", "2", "--corpus", str(path),
                                      "--backends", "numpy,numba", "--dtypes", "float64"], prog_name="fastrnn")
    assert result.exit_code == 0, result.output
    assert "each cell the range over 2 repeats" in result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| numba | float64 | 4 | 3 |")]
    assert len(rows) == 1 and rows[0].endswith("% |")  # the share of the roofline bound
    assert "| numba | 4 | 3 | 4 |" in result.output  # the threads table
    assert "| GEMM (numpy BLAS" not in result.output  # ceilings only with --roofline


def test_cli_repeat_must_be_positive():
    result = CliRunner().invoke(cli, ["bench", "--repeat", "0"], prog_name="fastrnn")
    assert result.exit_code == 2 and "--repeat" in result.stderr


# -- the phase profile (fastrnn bench --phases) ----------------------------------------------------
@pytest.mark.parametrize("hidden, seq_length, vocab, itemsize, columns", [(20, 5, 65, 8, 4.2), (410, 25, 65, 4, 14.0),
                                                                          (7, 1, 3, 8, 1.0)])
def test_phase_models_add_up_to_the_step_model(hidden, seq_length, vocab, itemsize, columns):
    model = bench.step_model(hidden, seq_length, vocab, itemsize, wxh_columns=columns)
    phases = bench.phase_models(model, columns)
    assert list(phases) == list(bench.PHASES)
    for field in ("flops", "adagrad_elements", "recurrence_bytes", "update_bytes"):
        assert sum(getattr(p, field) for p in phases.values()) == pytest.approx(getattr(model, field)), field
    for p in phases.values():  # where the bytes live is the step's
        assert (p.whh_bytes, p.state_bytes) == (model.whh_bytes, model.state_bytes)
    H, S, V = hidden, seq_length, vocab
    assert phases["recurrence"].recurrence_bytes == S * H * H * itemsize
    assert phases["backward sweep"].recurrence_bytes == (S - 1) * H * H * itemsize
    assert phases["adagrad"].adagrad_elements == H * H + V * H + H + V


def test_phase_harness_runs_the_kernels_arithmetic(small_corpus):
    """The profile times the kernel's own phases: its set-up pass gives the loss and the
    gradients of Whh, Why, bh and by that loss_and_gradients gives."""
    from fastrnn.backends import _numba_kernel as K
    from fastrnn.network.model import TrainState

    H, S, V = 6, 4, small_corpus.vocab_size
    state = TrainState.fresh(H, S, 0.1, V, seed=3, dtype="float64")
    loss, grads, _ = K.loss_and_gradients(state.params, H, V, small_corpus.data, 0, S, state.hprev)
    ft = np.float64
    G = np.zeros(len(state.params) - H * V, ft)
    buffers = (np.zeros(H, ft), np.zeros((S + 1, H), ft), np.zeros((S, V), ft), np.zeros(V, ft), np.zeros((S, H), ft),
               np.zeros(H, ft), G, np.zeros(V, np.bool_), np.zeros(H, ft), np.zeros(H, ft), np.zeros(H, ft),
               np.zeros(V, ft))
    params, memory = state.params.copy(), state.memory.copy()
    got = phases_module.phase_kernel()(params, memory, H, V, S, small_corpus.data, -1, 1, *buffers)
    assert got == loss
    np.testing.assert_array_equal(G, grads[H * V:])
    for phase in range(len(bench.PHASES)):  # every phase runs, and only the update phases move weights
        phases_module.phase_kernel()(params, memory, H, V, S, small_corpus.data, phase, 2, *buffers)
    assert np.isfinite(params).all() and not np.array_equal(params, state.params)


def test_step_phases_report(small_corpus):
    ceilings = bench.measure_ceilings(caches=[(1, 4096)], gemm_n=16, min_seconds=0.001, rounds=1, memory_bytes=1 << 15)
    rows = bench.step_phases(small_corpus, ceilings, 5, 3, "float32", rounds=2, min_seconds=0.001)
    names = [r.phase for r in rows]
    assert names == [*bench.PHASES, "sum of the phases", "step - sum", "whole step"]
    phases, total, rest, step = rows[:len(bench.PHASES)], rows[-3], rows[-2], rows[-1]
    assert all(r.seconds > 0 and r.bound_seconds > 0 and r.bound_by for r in phases)
    assert total.seconds == pytest.approx(sum(r.seconds for r in phases))
    assert total.bound_seconds == pytest.approx(sum(r.bound_seconds for r in phases))
    assert rest.seconds == pytest.approx(step.seconds - total.seconds) and rest.percent() is None
    bound, by, _ = bench.step_bound(small_corpus, ceilings, 5, 3, "float32")
    assert (step.bound_seconds, step.bound_by) == (pytest.approx(bound), by)
    assert step.percent() == pytest.approx(100 * bound / step.seconds)
    table = bench.phases_markdown([rows, rows]).splitlines()
    assert table[0] == "| H | S | dtype | phase | µs per step | bound (µs) | bound by | % of bound |"
    assert len(table) == 2 + len(rows) and table[-1].startswith("| 5 | 3 | float32 | **whole step** |")


def test_step_phases_needs_a_window_of_text():
    from fastrnn.network.corpus import Corpus

    ceilings = bench.measure_ceilings(caches=[(1, 4096)], gemm_n=16, min_seconds=0.001, rounds=1, memory_bytes=1 << 15)
    with pytest.raises(ValueError, match="seq_length"):
        bench.step_phases(Corpus.from_text("abcab"), ceilings, 4, 25, "float64", rounds=1, min_seconds=0.001)


def test_cli_phases_prints_the_phase_table(monkeypatch, small_corpus, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(small_corpus.text, encoding="utf-8")
    _small_bench(monkeypatch)
    real = bench.step_phases
    monkeypatch.setattr(report, "step_phases", lambda *args: real(*args, min_seconds=0.001))
    result = CliRunner().invoke(cli, ["bench", "--phases", "--rounds", "1", "--alpha", "2", "--corpus", str(path),
                                      "--backends", "numba", "--dtypes", "float64", "--quiet"], prog_name="fastrnn")
    assert result.exit_code == 0, result.output
    assert "Where a training step of the numba kernel goes" in result.output
    for phase in (*bench.PHASES, "sum of the phases", "**whole step**"):
        assert f"| 4 | 3 | float64 | {phase} |" in result.output


def test_cli_phases_needs_numba():
    result = CliRunner().invoke(cli, ["bench", "--phases", "--backends", "cython"], prog_name="fastrnn")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "include numba" in lines[0]


@pytest.mark.parametrize("extra", [["--backends", "numpy"], ["--executor", "dask"]])
def test_cli_bench_refuses_a_text_shorter_than_its_sequences(tmp_path, extra):
    path = tmp_path / "two.txt"
    path.write_text("ab", encoding="utf-8")  # two distinct characters: one alone is refused before the length
    result = CliRunner().invoke(cli, ["bench", "--quiet", "--rounds", "1", "--corpus", str(path), *extra],
                                prog_name="fastrnn")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--corpus" in lines[0] and "the corpus has 2" in lines[0]


@pytest.mark.parametrize("names", ["", ",,"])
def test_cli_bench_needs_a_backend(names):
    result = CliRunner().invoke(cli, ["bench", "--backends", names], prog_name="fastrnn")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "name at least one backend" in lines[0]


def test_tuning_step_profile_times_the_objectives_batches(small_corpus):
    """``fastrnn bench --executor dask``'s last table: the profile wraps the executor's run, which
    the held-out objective calls with ``heldout=`` (the wrapper once refused it)."""
    from fastrnn.bench.dask_comparison import tuning_step_profile
    from fastrnn.running.executors import ThreadExecutor

    profile = tuning_step_profile(small_corpus, ThreadExecutor(1), beta=1, alpha=2, steps=3)
    assert profile["runs_per_step"] > 0 and 0 < profile["batch"] <= profile["step"]
    assert profile["serial_share"] == pytest.approx(1 - profile["batch"] / profile["step"])
