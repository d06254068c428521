"""What ``fastrnn bench`` measures and prints: one repeat of everything (:func:`bench_run`) and
the Markdown tables, each cell the range over repeats (:func:`span`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..network.corpus import Corpus
from .ceilings import measure_ceilings
from .dask_comparison import ExecutorRow
from .phases import PhaseRow, step_phases
from .rates import CONFIGS, RateRow, step_rates
from .roofline import ROOFLINE_BACKENDS, Ceilings, RooflineRow, level_names, roofline_rows
from .threads import ThreadRow, thread_speedup, threaded_backends


@dataclass
class BenchRun:
    """One repeat of ``fastrnn bench``: this machine's ceilings, the bound of every (config, dtype),
    the single-thread step rates and the two-thread speed-ups of the GIL-free backends."""

    ceilings: Ceilings
    rates: list
    roofline_rows: list
    threads: list
    #: :func:`step_phases` rows of every (config, dtype), when asked for.
    phases: list = field(default_factory=list)

    def percent(self, rate: RateRow) -> float | None:
        """Share of the roofline bound that ``rate`` reaches (bound / measured time per step)."""
        for row in self.roofline_rows:
            if (row.hidden, row.seq_length, row.dtype) == (rate.hidden, rate.seq_length, rate.dtype):
                return row.percent(rate.backend)
        return None


def bench_run(corpus: Corpus, backends: Sequence[str], dtypes: Sequence[str] = ("float64",), rounds: int = 5,
              beta: int = 4, alpha: int = 100, configs=None, progress=None, phases: bool = False) -> BenchRun:
    """Measure everything ``fastrnn bench`` reports, once (with ``phases``, also :func:`step_phases`
    of every config and dtype). ``progress(label)`` is called as each part finishes
    (:func:`bench_stages` of them)."""
    configs = CONFIGS if configs is None else configs
    tick = progress or (lambda label: None)
    ceilings = measure_ceilings(rounds=rounds)
    tick("ceilings")
    rates = step_rates(corpus, backends, configs=configs, rounds=rounds, dtypes=dtypes)
    tick("step rates")
    bounds = roofline_rows(corpus, ceilings, rates, configs, dtypes)
    thread_rows = []
    for name in threaded_backends(backends):
        for hidden, seq_length in configs:
            thread_rows.append(ThreadRow(name, hidden, seq_length, beta,
                                         *thread_speedup(corpus, name, hidden, seq_length, beta, alpha, rounds)))
            tick(f"threads {name} {hidden},{seq_length}")
    phase_rows = []
    if phases:
        for hidden, seq_length in configs:
            for dtype in dtypes:
                phase_rows += step_phases(corpus, ceilings, hidden, seq_length, dtype, rounds)
            tick(f"phases {hidden},{seq_length}")
    return BenchRun(ceilings, rates, bounds, thread_rows, phase_rows)


def bench_stages(backends: Sequence[str], configs=None, phases: bool = False) -> int:
    """How many times :func:`bench_run` calls ``progress``."""
    configs = CONFIGS if configs is None else configs
    return 2 + len(threaded_backends(backends)) * len(configs) + (len(configs) if phases else 0)


# -- the Markdown tables ------------------------------------------------------------------------
def span(values: Sequence[float], fmt) -> str:
    """``fmt`` of the one value, or ``lo–hi`` over repeats (a shared unit written once: ``1.5–1.7x``)."""
    lo, hi = fmt(min(values)), fmt(max(values))
    if lo == hi:
        return lo
    unit = ""
    while lo and hi and lo[-1] == hi[-1] and not lo[-1].isdigit():
        unit, lo, hi = lo[-1] + unit, lo[:-1], hi[:-1]
    return f"{lo}–{hi}{unit}"


def _collect(runs: Sequence[BenchRun], key, value) -> dict:
    """``{key(item): [value(run, item) for each run]}`` over the rate rows, in first-run order."""
    out: dict = {}
    for run in runs:
        for item in run.rates:
            v = value(run, item)
            if v is not None:
                out.setdefault(key(item), []).append(v)
    return out


def rates_markdown(runs: Sequence[BenchRun]) -> str:
    """Steps/s, the ratios and the share of the roofline bound of every (backend, dtype, config);
    with several runs, each cell is the range over them."""
    def key(r):
        return (r.backend, r.dtype, r.hidden, r.seq_length)

    rate = _collect(runs, key, lambda run, r: r.steps_per_second)
    to_numpy = _collect(runs, key, lambda run, r: r.ratio_to_numpy)
    to_float64 = _collect(runs, key, lambda run, r: r.ratio_to_float64)
    percent = _collect(runs, key, lambda run, r: run.percent(r))
    lines = ["| backend | dtype | H | S | steps/s | x numpy float64 | x own float64 | % of roofline |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for k, values in rate.items():
        backend, dtype, hidden, seq_length = k
        cells = [span(values, "{:,.0f}".format),
                 span(to_numpy[k], "{:.1f}x".format) if k in to_numpy else "-",
                 span(to_float64[k], "{:.2f}x".format) if k in to_float64 else "-",
                 span(percent[k], "{:.0f}%".format) if k in percent else "-"]
        lines.append(f"| {backend} | {dtype} | {hidden} | {seq_length} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def threads_markdown(runs: Sequence[BenchRun]) -> str:
    """One evaluation of F on 1 and 2 threads, per backend and config (ranges over runs)."""
    rows: dict = {}
    for run in runs:
        for r in run.threads:
            rows.setdefault((r.backend, r.hidden, r.seq_length, r.beta), []).append(r)
    lines = ["| backend | H | S | beta | 1 thread (s) | 2 threads (s) | speed-up | ideal tasks' speed-up | share of ideal |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (backend, hidden, seq_length, beta), rs in rows.items():
        ideal = [r for r in rs if r.ideal and r.share]
        lines.append(f"| {backend} | {hidden} | {seq_length} | {beta} | "
                     f"{span([r.one_thread for r in rs], '{:.4f}'.format)} | "
                     f"{span([r.two_threads for r in rs], '{:.4f}'.format)} | "
                     f"{span([r.speedup for r in rs], '{:.2f}x'.format)} | "
                     + (f"{span([r.ideal for r in ideal], '{:.2f}x'.format)} | "
                        f"{span([100 * r.share for r in ideal], '{:.0f}%'.format)} |" if ideal else "- | - |"))
    return "\n".join(lines)


def ceilings_markdown(ceilings) -> str:
    """The ceilings of one :class:`Ceilings`, or their ranges over a sequence of them."""
    runs = [ceilings] if isinstance(ceilings, Ceilings) else list(ceilings)
    first = runs[0]

    def size(nbytes):
        return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"

    def cell(get, fmt):
        return span([get(c) for c in runs], fmt)

    lines = ["| ceiling | float64 | float32 |", "|---|---:|---:|",
             f"| GEMM (numpy BLAS, 1 thread) | {cell(lambda c: c.gemm_flops['float64'] / 1e9, '{:.1f} GFLOP/s'.format)} | "
             f"{cell(lambda c: c.gemm_flops['float32'] / 1e9, '{:.1f} GFLOP/s'.format)} |",
             f"| Adagrad element (clip, sqrt, divide) | "
             f"{cell(lambda c: c.adagrad_seconds['float64'] * 1e9, '{:.2f} ns'.format)} | "
             f"{cell(lambda c: c.adagrad_seconds['float32'] * 1e9, '{:.2f} ns'.format)} |"]
    sizes = dict(zip(level_names(first.caches), [s for _, s in first.caches] + [None]))
    for name in first.bandwidth:
        label = f"{name} read ({size(sizes[name])})" if sizes.get(name) else f"{name} read"
        lines.append(f"| {label} | {cell(lambda c: c.bandwidth[name] / 1e9, '{:.1f} GB/s'.format)} | (same) |")
    return "\n".join(lines)


def roofline_markdown(rows, backends: Sequence[str] = ROOFLINE_BACKENDS) -> str:
    """The bound, what sets it and each backend's time and share, of one run's :class:`RooflineRow`
    list, or the ranges over several runs' lists."""
    runs = [rows] if rows and isinstance(rows[0], RooflineRow) else list(rows)
    head = "| H | S | dtype | bound (µs) | bound by | " + " | ".join(f"{b} (µs) | {b} % of bound" for b in backends) + " |"
    lines = [head, "|---:|---:|---|---:|---|" + "---:|---:|" * len(backends)]
    for i, row in enumerate(runs[0]):
        same = [run[i] for run in runs]
        cells = []
        for b in backends:
            measured = [r for r in same if r.measured.get(b)]
            cells += ["-", "-"] if not measured else [span([r.measured[b] * 1e6 for r in measured], "{:,.1f}".format),
                                                      span([r.percent(b) for r in measured], "{:.0f}%".format)]
        bound_by = " / ".join(dict.fromkeys(r.bound_by for r in same))
        lines.append(f"| {row.hidden} | {row.seq_length} | {row.dtype} | "
                     f"{span([r.bound_seconds * 1e6 for r in same], '{:,.1f}'.format)} | "
                     f"{bound_by} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def phases_markdown(runs) -> str:
    """The :class:`PhaseRow` lists of one or several runs (ranges over them), a table per config."""
    runs = [runs] if runs and isinstance(runs[0], PhaseRow) else list(runs)
    lines = ["| H | S | dtype | phase | µs per step | bound (µs) | bound by | % of bound |",
             "|---:|---:|---|---|---:|---:|---|---:|"]
    for i, row in enumerate(runs[0]):
        same = [run[i] for run in runs]
        bounded = [r for r in same if r.bound_seconds]
        bound = span([r.bound_seconds * 1e6 for r in bounded], "{:,.2f}".format) if bounded else "-"
        by = " / ".join(dict.fromkeys(r.bound_by for r in bounded)) if bounded else "-"
        percent = span([r.percent() for r in bounded], "{:.0f}%".format) if bounded else "-"
        label = f"**{row.phase}**" if row.phase == "whole step" else row.phase
        micro = [r.seconds * 1e6 for r in same]
        # the step - sum row can be negative: "a to b" reads better there than "a–b"
        seconds = span(micro, "{:,.2f}".format) if min(micro) >= 0 else (
            f"{min(micro):,.2f} to {max(micro):,.2f}" if len(set(micro)) > 1 else f"{micro[0]:,.2f}")
        lines.append(f"| {row.hidden} | {row.seq_length} | {row.dtype} | {label} | {seconds} | {bound} | {by} | {percent} |")
    return "\n".join(lines)


def dask_markdown(rows: Sequence[ExecutorRow], overhead: dict, threads: int) -> str:
    """The executor comparison (:func:`fastrnn.bench.dask_comparison.executor_comparison`) and the
    dask executor's fixed costs (:func:`~fastrnn.bench.dask_comparison.dask_task_overhead`)."""
    lines = [f"| H | S | beta | {threads} threads (s) | dask, {overhead['workers']} workers (s) | dask throughput / threads |",
             "|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row.hidden} | {row.seq_length} | {row.beta} | {row.threads_seconds:.4f} | "
                     f"{row.dask_seconds:.4f} | {row.ratio:.2f}x |")
    lines.append("")
    lines.append(f"Latency of a one-run batch: {overhead['batch_latency'] * 1e3:.1f} ms; "
                 f"scheduling cost per task in a batch of many: {overhead['per_task'] * 1e3:.2f} ms.")
    return "\n".join(lines)
