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
    hidden: int
    seq_length: int
    steps_per_second: float
    ratio_to_numpy: float | None


def _time_training(backend: Backend, corpus: Corpus, hidden: int, seq_length: int, steps: int) -> float:
    state = TrainState.fresh(hidden, seq_length, 0.1, corpus.vocab_size, seed=0)
    started = time.perf_counter()
    backend.train_steps(corpus.data, state, steps)
    return time.perf_counter() - started


def _calibrate(backend: Backend, corpus: Corpus, hidden: int, seq_length: int) -> int:
    """Steps that take about MIN_SECONDS (after a warm-up that also compiles)."""
    _time_training(backend, corpus, hidden, seq_length, 2)
    steps = 1
    while True:
        elapsed = _time_training(backend, corpus, hidden, seq_length, steps)
        if elapsed >= MIN_SECONDS / 4 or steps >= 1 << 16:
            return max(1, int(steps * MIN_SECONDS / max(elapsed, 1e-9)))
        steps *= 4


def step_rates(corpus: Corpus, backends: Sequence[str], configs=CONFIGS, rounds: int = 5) -> list[RateRow]:
    """Training steps per second of each backend at each config, single thread, interleaved."""
    available = []
    for name in backends:
        try:
            available.append(get_backend(name))
        except BackendUnavailable:
            continue
    rows = []
    for hidden, seq_length in configs:
        steps = {b.name: _calibrate(b, corpus, hidden, seq_length) for b in available}
        rates = {b.name: [] for b in available}
        for _ in range(rounds):
            for b in available:
                rates[b.name].append(steps[b.name] / _time_training(b, corpus, hidden, seq_length, steps[b.name]))
        for b in available:
            ratio = None
            if "numpy" in rates:
                ratio = statistics.median(r / n for r, n in zip(rates[b.name], rates["numpy"]))
            rows.append(RateRow(b.name, hidden, seq_length, statistics.median(rates[b.name]), ratio))
    return rows


def thread_speedup(corpus: Corpus, backend: str, hidden: int, seq_length: int, beta: int, alpha: int,
                   rounds: int = 5) -> tuple[float, float, float]:
    """(seconds with 1 thread, seconds with 2 threads, median speed-up) of one evaluation of F.

    Each evaluation is on a new Objective so the memo serves nothing: ``beta`` trainings of
    ``alpha`` steps at one integer corner.
    """
    point = (hidden, seq_length, 0.1)
    times = {1: [], 2: []}
    Objective(corpus, alpha=2, beta=1, backend=backend)(point)  # compile outside the timing
    for _ in range(rounds):
        for threads in (1, 2):
            F = Objective(corpus, alpha=alpha, beta=beta, threads=threads, backend=backend)
            started = time.perf_counter()
            F(point)
            times[threads].append(time.perf_counter() - started)
    speedup = statistics.median(a / b for a, b in zip(times[1], times[2]))
    return statistics.median(times[1]), statistics.median(times[2]), speedup


def markdown_table(rows: Sequence[RateRow]) -> str:
    lines = ["| backend | H | S | steps/s (median) | x numpy |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        ratio = "-" if row.ratio_to_numpy is None else f"{row.ratio_to_numpy:.1f}x"
        lines.append(f"| {row.backend} | {row.hidden} | {row.seq_length} | {row.steps_per_second:,.0f} | {ratio} |")
    return "\n".join(lines)
