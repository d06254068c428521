"""Training steps per second of each backend, single thread, and the calibration every timing shares.

The machine this runs on is shared and noisy, so every figure is a median over rounds in
which the contenders run in turn (A B A B ...), and ratios are the medians of the ratios
taken round by round: a slow patch of the machine then slows both sides of a ratio alike.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Sequence

from ..backends import Backend, BackendUnavailable, get_backend
from ..network.corpus import Corpus
from ..network.model import TrainState

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


def time_training(backend: Backend, corpus: Corpus, hidden: int, seq_length: int, steps: int, dtype: str) -> float:
    """Seconds of ``steps`` training steps of a new network (seed 0, learning rate 0.1)."""
    state = TrainState.fresh(hidden, seq_length, 0.1, corpus.vocab_size, seed=0, dtype=dtype)
    started = time.perf_counter()
    backend.train_steps(corpus.data, state, steps)
    return time.perf_counter() - started


def calibrate(backend: Backend, corpus: Corpus, hidden: int, seq_length: int, dtype: str) -> int:
    """Steps that take about MIN_SECONDS (after a warm-up that also compiles)."""
    time_training(backend, corpus, hidden, seq_length, 2, dtype)
    return calibrated_count(lambda steps: time_training(backend, corpus, hidden, seq_length, steps, dtype),
                             MIN_SECONDS, 1 << 16)


def calibrated_count(seconds_of, target: float, limit: int) -> int:
    """How many repeats of some work take about ``target`` seconds; ``seconds_of(n)`` times n of
    them (grown 4x at a time until a timing is long enough to scale from, or ``limit``)."""
    count = 1
    while True:
        elapsed = seconds_of(count)
        if elapsed >= target / 4 or count >= limit:
            return max(1, int(count * target / max(elapsed, 1e-9)))
        count *= 4


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
        steps = {(b.name, d): calibrate(b, corpus, hidden, seq_length, d) for b, d in contenders}
        rates = {key: [] for key in steps}
        for _ in range(rounds):
            for b, d in contenders:
                key = (b.name, d)
                rates[key].append(steps[key] / time_training(b, corpus, hidden, seq_length, steps[key], d))

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
