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
