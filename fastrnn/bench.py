"""Side-by-side speed measurements of the backends, for ``fastrnn bench`` and README's table.

The machine this runs on is shared and noisy, so every figure is a median over rounds in
which the contenders run in turn (A B A B ...), and ratios are the medians of the ratios
taken round by round: a slow patch of the machine then slows both sides of a ratio alike.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Sequence

from .backends import Backend, BackendUnavailable, get_backend
from .corpus import Corpus
from .model import TrainState
from .objective import Objective

#: The (hidden size, sequence length) pairs the benchmarks cover.
CONFIGS = ((20, 5), (100, 25), (410, 25))
#: Aim for timings of at least this many seconds, so timer resolution and call overhead vanish.
MIN_SECONDS = 0.05


@dataclass
class RateRow:
    backend: str
    dtype: str
    hidden: int
    seq_length: int
    steps_per_second: float
    ratio_to_numpy: float | None
    ratio_to_float64: float | None


def _time_training(backend: Backend, corpus: Corpus, hidden: int, seq_length: int, steps: int, dtype: str) -> float:
    state = TrainState.fresh(hidden, seq_length, 0.1, corpus.vocab_size, seed=0, dtype=dtype)
    started = time.perf_counter()
    backend.train_steps(corpus.data, state, steps)
    return time.perf_counter() - started


def _calibrate(backend: Backend, corpus: Corpus, hidden: int, seq_length: int, dtype: str) -> int:
    """Steps that take about MIN_SECONDS (after a warm-up that also compiles)."""
    _time_training(backend, corpus, hidden, seq_length, 2, dtype)
    steps = 1
    while True:
        elapsed = _time_training(backend, corpus, hidden, seq_length, steps, dtype)
        if elapsed >= MIN_SECONDS / 4 or steps >= 1 << 16:
            return max(1, int(steps * MIN_SECONDS / max(elapsed, 1e-9)))
        steps *= 4


def step_rates(corpus: Corpus, backends: Sequence[str], configs=CONFIGS, rounds: int = 5,
               dtypes: Sequence[str] = ("float64",)) -> list[RateRow]:
    """Training steps per second of each (backend, dtype) at each config, single thread, interleaved."""
    contenders = []
    for name in backends:
        try:
            backend = get_backend(name)
        except BackendUnavailable:
            continue
        contenders += [(backend, dtype) for dtype in dtypes if dtype in backend.dtypes]
    rows = []
    for hidden, seq_length in configs:
        steps = {(b.name, d): _calibrate(b, corpus, hidden, seq_length, d) for b, d in contenders}
        rates = {key: [] for key in steps}
        for _ in range(rounds):
            for b, d in contenders:
                key = (b.name, d)
                rates[key].append(steps[key] / _time_training(b, corpus, hidden, seq_length, steps[key], d))

        def ratio(key, baseline):
            if baseline not in rates or key == baseline:
                return None
            return statistics.median(r / n for r, n in zip(rates[key], rates[baseline]))

        for b, d in contenders:
            key = (b.name, d)
            rows.append(RateRow(b.name, d, hidden, seq_length, statistics.median(rates[key]),
                                ratio(key, ("numpy", "float64")) if key != ("numpy", "float64") else 1.0,
                                ratio(key, (b.name, "float64"))))
    return rows


def thread_speedup(corpus: Corpus, backend: str, hidden: int, seq_length: int, beta: int, alpha: int,
                   rounds: int = 5) -> tuple[float, float, float]:
    """(seconds with 1 thread, seconds with 2 threads, median speed-up) of one evaluation of F.

    Each evaluation is on a new Objective so the memo serves nothing: ``beta`` trainings of
    ``alpha`` steps at one integer corner.
    """
    point = (hidden, seq_length, 0.1)
    times = {1: [], 2: []}
    Objective(corpus, alpha=2, beta=1, backend=backend, kind="paper")(point)  # compile outside the timing
    for _ in range(rounds):
        for threads in (1, 2):
            F = Objective(corpus, alpha=alpha, beta=beta, threads=threads, backend=backend, kind="paper")
            started = time.perf_counter()
            F(point)
            times[threads].append(time.perf_counter() - started)
    speedup = statistics.median(a / b for a, b in zip(times[1], times[2]))
    return statistics.median(times[1]), statistics.median(times[2]), speedup


def markdown_table(rows: Sequence[RateRow]) -> str:
    lines = ["| backend | dtype | H | S | steps/s (median) | x numpy float64 | x own float64 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        to_numpy = "-" if row.ratio_to_numpy is None else f"{row.ratio_to_numpy:.1f}x"
        to_float64 = "-" if row.ratio_to_float64 is None else f"{row.ratio_to_float64:.2f}x"
        lines.append(f"| {row.backend} | {row.dtype} | {row.hidden} | {row.seq_length} | "
                     f"{row.steps_per_second:,.0f} | {to_numpy} | {to_float64} |")
    return "\n".join(lines)


# -- executors: the dask executor against the threads executor -------------------------------------
#: (hidden size, sequence length) of the executor comparison: a mid-sized and the smallest sane run.
EXECUTOR_CONFIGS = ((100, 25), (20, 5))


@dataclass
class ExecutorRow:
    hidden: int
    seq_length: int
    beta: int
    threads_seconds: float
    dask_seconds: float
    #: Median over rounds of (threads time / dask time): dask's throughput as a share of threads'.
    ratio: float


def _evaluation_seconds(corpus: Corpus, executor, hidden: int, seq_length: int, beta: int, alpha: int,
                        evaluations: int, salt: int) -> float:
    """Seconds per evaluation of F at one integer corner, on new Objectives (nothing from a memo).

    Each evaluation has its own learning rate, so no two batches are the same task for Dask either.
    """
    started = time.perf_counter()
    for k in range(evaluations):
        Objective(corpus, alpha=alpha, beta=beta, executor=executor)((hidden, seq_length, 0.1 + 1e-9 * (salt + k)))
    return (time.perf_counter() - started) / evaluations


def executor_comparison(corpus: Corpus, dask_executor, threads: int = 2, configs=EXECUTOR_CONFIGS, beta: int = 8,
                        alpha: int = 100, rounds: int = 7) -> list[ExecutorRow]:
    """Evaluations of F on ``dask_executor`` against the threads executor, in interleaved rounds.

    Each round times a few evaluations (at least ~0.2 s of work) on each executor in turn.
    """
    from .executors import ThreadExecutor

    on_threads = ThreadExecutor(threads)
    rows = []
    for hidden, seq_length in configs:
        for executor in (on_threads, dask_executor):  # compile, warm up, ship the text
            _evaluation_seconds(corpus, executor, hidden, seq_length, beta, alpha, 1, salt=10**6)
        once = _evaluation_seconds(corpus, on_threads, hidden, seq_length, beta, alpha, 1, salt=2 * 10**6)
        evaluations = max(1, min(50, int(0.2 / max(once, 1e-6))))
        times: dict[str, list[float]] = {"threads": [], "dask": []}
        for r in range(rounds):
            salt = 1000 * r
            times["threads"].append(_evaluation_seconds(corpus, on_threads, hidden, seq_length, beta, alpha,
                                                        evaluations, salt))
            times["dask"].append(_evaluation_seconds(corpus, dask_executor, hidden, seq_length, beta, alpha,
                                                     evaluations, salt + 500))
        rows.append(ExecutorRow(hidden, seq_length, beta, statistics.median(times["threads"]),
                                statistics.median(times["dask"]),
                                statistics.median(t / d for t, d in zip(times["threads"], times["dask"]))))
    return rows


def dask_task_overhead(corpus: Corpus, dask_executor, tasks: int = 64, rounds: int = 7) -> dict:
    """Fixed costs of the dask executor: a batch of one tiny run (the latency every batch pays),
    and ``tasks`` tiny tasks in one batch (per task, the scheduling cost that grouping amortises)."""
    from .backends import RunSpec, get_backend
    from .dask_executor import _train_group

    backend = get_backend("numba")
    key = dask_executor.ship(corpus.data)
    client = dask_executor.client
    latency, per_task = [], []
    for r in range(rounds):
        spec = RunSpec(20, 5, 0.1 + 1e-9 * r, corpus.vocab_size, 0, 1)
        started = time.perf_counter()
        dask_executor.run(backend, corpus.data, [spec])
        latency.append(time.perf_counter() - started)
        specs = [[RunSpec(20, 5, 0.1 + 1e-9 * r, corpus.vocab_size, seed, 1)] for seed in range(tasks)]
        started = time.perf_counter()
        client.gather(client.map(_train_group, ["numba"] * tasks, [key] * tasks, specs, pure=False))
        per_task.append((time.perf_counter() - started) / tasks)
    return dict(batch_latency=statistics.median(latency), per_task=statistics.median(per_task),
                workers=dask_executor.workers())


def tuning_step_profile(corpus: Corpus, executor, beta: int = 8, alpha: int = 100, steps: int = 5,
                        x0=(24.3, 6.6, 0.1)) -> dict:
    """Where the time of a gradient-descent step goes: training batches (``executor.run``) and the
    rest (planning corners, combining, the optimizer, run records), which no cluster shortens.

    Returns seconds per step (``step``), of it in training batches (``batch``, which includes the
    executor's fixed latency: see :func:`dask_task_overhead`) and outside them (``serial``), their
    share ``serial_share``, and the trainings per step (``runs_per_step``).
    """
    from .optimize import minimize

    F = Objective(corpus, alpha=alpha, beta=beta, executor=executor)
    inner = F.executor
    in_batches = [0.0]
    original = inner.run

    def timed_run(backend, data, specs):
        started = time.perf_counter()
        try:
            return original(backend, data, specs)
        finally:
            in_batches[0] += time.perf_counter() - started

    inner.run = timed_run
    try:
        minimize(F, x0=list(x0), method="gd", max_steps=1, step=0.1)  # warm up
        in_batches[0] = 0.0
        runs_before = F.counters.trainings_run
        started = time.perf_counter()
        minimize(F, x0=list(x0), method="gd", max_steps=steps, step=0.1, seed=1)
        total = time.perf_counter() - started
    finally:
        del inner.run
    runs = F.counters.trainings_run - runs_before
    return dict(step=total / steps, serial=(total - in_batches[0]) / steps, serial_share=1 - in_batches[0] / total,
                runs_per_step=runs / steps, batch=in_batches[0] / steps)


def dask_markdown(rows: Sequence[ExecutorRow], overhead: dict, threads: int) -> str:
    lines = [f"| H | S | beta | {threads} threads (s) | dask, {overhead['workers']} workers (s) | dask throughput / threads |",
             "|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row.hidden} | {row.seq_length} | {row.beta} | {row.threads_seconds:.4f} | "
                     f"{row.dask_seconds:.4f} | {row.ratio:.2f}x |")
    lines.append("")
    lines.append(f"Latency of a one-run batch: {overhead['batch_latency'] * 1e3:.1f} ms; "
                 f"scheduling cost per task in a batch of many: {overhead['per_task'] * 1e3:.2f} ms.")
    return "\n".join(lines)
