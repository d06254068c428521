"""What scoring a network on held-out text costs, relative to the training it scores.

At the held-out objective's defaults: a network trains on 100,000 characters
(ceil(100000 / s) updates of s characters) and is then scored on 20,000 held-out characters
(the last 20,000 of the corpus) read continuously from a zero hidden state. The target is
that scoring costs at most 10% of the training.

``pytest benches/test_scoring.py --benchmark-only``. Each round trains a fresh network and
then scores it, timing both; the benchmark's own figures are for the pair (one evaluation),
and ``extra_info`` holds the median training and scoring times and the median over rounds of
scoring / training, which the closing summary prints. A ratio taken within each round holds
when a shared machine's speed drifts between rounds (``FASTRNN_BENCH_CORPUS`` picks the
corpus, as for the other benchmarks).
"""

from __future__ import annotations

import math
import statistics
import time

import pytest

from fastrnn.backends import COMPILED_BACKENDS
from fastrnn.bench.rates import CONFIGS
from fastrnn.network.model import TrainState

from .conftest import backend_or_skip

TRAIN_CHARS = 100_000
HELDOUT_CHARS = 20_000


@pytest.mark.parametrize("dtype", ("float64", "float32"))
@pytest.mark.parametrize("backend_name", COMPILED_BACKENDS)
@pytest.mark.parametrize("hidden,seq_length", CONFIGS)
def test_scoring_cost(benchmark, corpus, backend_name, hidden, seq_length, dtype):
    backend = backend_or_skip(backend_name)
    heldout = corpus.data[-HELDOUT_CHARS:]
    updates = math.ceil(TRAIN_CHARS / seq_length)
    timings = []

    def fresh():
        return TrainState.fresh(hidden, seq_length, 0.1, corpus.vocab_size, seed=0, dtype=dtype)

    warm = fresh()
    backend.train_steps(corpus.data, warm, 2)  # compile / warm up
    backend.heldout_loss(warm.params, hidden, corpus.vocab_size, heldout[:100])

    def train_then_score(state):
        start = time.perf_counter()
        backend.train_steps(corpus.data, state, updates)
        trained = time.perf_counter()
        loss = backend.heldout_loss(state.params, hidden, corpus.vocab_size, heldout)
        timings.append((trained - start, time.perf_counter() - trained))
        return loss

    benchmark.group = f"scoring cost H={hidden} S={seq_length}"
    benchmark.extra_info["contender"] = f"{backend_name} {dtype}"
    loss = benchmark.pedantic(train_then_score, setup=lambda: ((fresh(),), {}), rounds=3 if hidden >= 410 else 7)
    assert math.isfinite(loss)
    benchmark.extra_info["training_s"] = statistics.median(t for t, _ in timings)
    benchmark.extra_info["scoring_s"] = statistics.median(s for _, s in timings)
    benchmark.extra_info["scoring_share"] = statistics.median(s / t for t, s in timings)
