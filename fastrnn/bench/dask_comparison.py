"""The dask executor against the threads executor (``fastrnn bench --executor dask``): evaluations
of F in interleaved rounds, the fixed costs of a batch, and where a tuning step's time goes."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from ..network.corpus import Corpus
from ..objective.function import Objective

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
        Objective(corpus, alpha=alpha, beta=beta, dtype="float64", executor=executor)((hidden, seq_length,
                                                                                       0.1 + 1e-9 * (salt + k)))
    return (time.perf_counter() - started) / evaluations


def executor_comparison(corpus: Corpus, dask_executor, threads: int = 2, configs=EXECUTOR_CONFIGS, beta: int = 8,
                        alpha: int = 100, rounds: int = 7) -> list[ExecutorRow]:
    """Evaluations of F on ``dask_executor`` against the threads executor, in interleaved rounds.

    Each round times a few evaluations (at least ~0.2 s of work) on each executor in turn.
    """
    from ..running.executors import ThreadExecutor

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
    from ..backends import RunSpec, get_backend
    from ..running.dask_executor import _train_group

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
    from ..optimize.methods import minimize

    F = Objective(corpus, alpha=alpha, beta=beta, dtype="float64", executor=executor)
    inner = F.executor
    in_batches = [0.0]
    original = inner.run

    def timed_run(backend, data, specs, **options):  # options: heldout=, as the objective passes it
        started = time.perf_counter()
        try:
            return original(backend, data, specs, **options)
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
