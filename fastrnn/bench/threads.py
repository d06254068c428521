"""Two threads against one: the speed-up of an evaluation of F, beside what this machine gives
independent compute tasks of the same length (:class:`IdealTasks`)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..backends import BackendUnavailable, get_backend
from ..network.corpus import Corpus
from ..objective.function import Objective


@dataclass
class ThreadRow:
    """One evaluation of F on 1 and 2 threads (:func:`thread_speedup`), for one backend and config."""

    backend: str
    hidden: int
    seq_length: int
    beta: int
    one_thread: float
    two_threads: float
    speedup: float
    #: The speed-up of ``beta`` independent compute tasks of the same total length
    #: (:class:`IdealTasks`): what two threads can give on this machine.
    ideal: float | None = None
    #: Median over rounds of speed-up / ideal speed-up.
    share: float | None = None


def thread_speedup(corpus: Corpus, backend: str, hidden: int, seq_length: int, beta: int, alpha: int,
                   rounds: int = 5) -> tuple[float, float, float, float, float]:
    """(seconds with 1 thread, seconds with 2 threads, median speed-up, the ideal speed-up, the
    median share of it) of one evaluation of F.

    Each evaluation is on a new Objective so the memo serves nothing: ``beta`` trainings of
    ``alpha`` steps at one integer corner. The ideal speed-up is what this machine gives ``beta``
    independent compute tasks of the same total length (:class:`IdealTasks`), measured in the
    same rounds, so that both see the same neighbours on a shared machine; the share is the
    median over rounds of (speed-up / ideal speed-up) in that round.
    """
    point = (hidden, seq_length, 0.1)

    def evaluation(threads):
        F = Objective(corpus, alpha=alpha, beta=beta, threads=threads, backend=backend, kind="paper")
        started = time.perf_counter()
        F(point)
        return time.perf_counter() - started

    # compile, and start the thread pool (the first parallel launch), outside the timing
    for threads in (1, 2):
        Objective(corpus, alpha=2, beta=2, threads=threads, backend=backend, kind="paper")(point)
    ideal = IdealTasks(beta, evaluation(1) / beta)
    times: dict = {1: [], 2: [], "ideal 1": [], "ideal 2": []}
    for _ in range(rounds):
        for threads in (1, 2):
            times[threads].append(evaluation(threads))
            times[f"ideal {threads}"].append(ideal.seconds(threads))
    speedups = [a / b for a, b in zip(times[1], times[2])]
    ideal_speedups = [a / b for a, b in zip(times["ideal 1"], times["ideal 2"])]
    return (statistics.median(times[1]), statistics.median(times[2]), statistics.median(speedups),
            statistics.median(ideal_speedups), statistics.median(a / b for a, b in zip(speedups, ideal_speedups)))


class IdealTasks:
    """``tasks`` independent compute tasks of ``task_seconds`` each, in one parallel call: the
    speed-up that threads can give work of that grain on this machine (the ceiling for an
    evaluation's runs).

    Each task updates its own row, s = s * b + a, over 512 float64 elements (L1-resident, so it
    measures the cores, not shared memory bandwidth); rows are padded so no two tasks write to
    one cache line. The tasks are handed out one at a time, as the backends hand out runs.
    """

    N = 512
    PAD = 64

    def __init__(self, tasks: int, task_seconds: float):
        self._run = _ideal_tasks_kernel()
        rng = np.random.default_rng(0)
        shape = (tasks, self.N + self.PAD)
        self.s, self.a, self.b = np.zeros(shape), rng.random(shape), 0.5 * rng.random(shape)
        self.reps = 16
        self.seconds(1)  # compile
        target = tasks * max(task_seconds, 1e-4)
        while (elapsed := self.seconds(1)) < target / 4:  # long enough that the launch is a small part
            self.reps *= 4
        for _ in range(2):
            self.reps = max(1, round(self.reps * target / elapsed))
            elapsed = self.seconds(1)

    def seconds(self, threads: int) -> float:
        import numba

        threads = min(threads, numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(threads)
        with numba.parallel_chunksize(1):
            started = time.perf_counter()
            self._run(self.s, self.a, self.b, self.N, self.reps)
            return time.perf_counter() - started


def threaded_backends(backends: Sequence[str]) -> list[str]:
    """The available backends that release the GIL (numpy holds it: threads cannot help it)."""
    names = []
    for name in backends:
        try:
            backend = get_backend(name)
        except BackendUnavailable:
            continue
        if backend.releases_gil:
            names.append(name)
    return names


def _ideal_tasks_kernel():
    from numba import njit, prange

    @njit(cache=True, nogil=True)
    def task(s, a, b, n, reps):
        for _ in range(reps):
            for i in range(n):
                s[i] = s[i] * b[i] + a[i]

    @njit(cache=True, nogil=True, parallel=True)
    def tasks(s, a, b, n, reps):
        for k in prange(s.shape[0]):
            task(s[k], a[k], b[k], n, reps)

    return tasks
