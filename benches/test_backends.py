"""Backends side by side: one training step, a 100-step run (float64, and float32 against
float64), and a full objective evaluation on 1 and 2 threads beside the machine's ideal speed-up for
independent tasks of the same length.

``pytest benches --benchmark-only`` (add ``--benchmark-autosave`` to keep the run for a later
``--benchmark-compare``). Each group holds one configuration; the closing summary prints the
ratio of each contender's median to the numpy reference (or to 1 thread) in the same run.
"""

from __future__ import annotations

import time

import pytest

from fastrnn.backends import BACKEND_NAMES, COMPILED_BACKENDS
from fastrnn.bench.rates import CONFIGS
from fastrnn.bench.threads import IdealTasks
from fastrnn.network.model import TrainState
from fastrnn.objective.function import Objective

from .conftest import backend_or_skip, record_roofline


def _fresh(corpus, hidden, seq_length, dtype="float64"):
    return TrainState.fresh(hidden, seq_length, 0.1, corpus.vocab_size, seed=0, dtype=dtype)


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
@pytest.mark.parametrize("hidden,seq_length", CONFIGS)
def test_one_step(benchmark, corpus, roofline_ceilings, backend_name, hidden, seq_length):
    backend = backend_or_skip(backend_name)
    state = _fresh(corpus, hidden, seq_length)
    backend.train_steps(corpus.data, state, 2)  # compile / warm up
    benchmark.group = f"one step H={hidden} S={seq_length}"
    benchmark.extra_info["contender"] = backend_name
    record_roofline(benchmark, corpus, roofline_ceilings, hidden, seq_length, "float64", 1)
    benchmark(backend.train_steps, corpus.data, state, 1)


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
@pytest.mark.parametrize("hidden,seq_length", CONFIGS)
def test_run_100_steps(benchmark, corpus, backend_name, hidden, seq_length):
    backend = backend_or_skip(backend_name)
    backend.train_steps(corpus.data, _fresh(corpus, hidden, seq_length), 2)
    benchmark.group = f"100 steps H={hidden} S={seq_length}"
    benchmark.extra_info["contender"] = backend_name
    rounds = 5 if backend_name == "numpy" else 10
    benchmark.pedantic(
        backend.train_steps,
        setup=lambda: ((corpus.data, _fresh(corpus, hidden, seq_length), 100), {}),
        rounds=rounds,
    )


@pytest.mark.parametrize("dtype", ("float64", "float32"))
@pytest.mark.parametrize("backend_name", COMPILED_BACKENDS)
@pytest.mark.parametrize("hidden,seq_length", CONFIGS)
def test_precision_100_steps(benchmark, corpus, roofline_ceilings, backend_name, hidden, seq_length, dtype):
    """float32 against float64 on the same backend: 100 training steps (and their share of the roofline)."""
    backend = backend_or_skip(backend_name)
    backend.train_steps(corpus.data, _fresh(corpus, hidden, seq_length, dtype), 2)
    benchmark.group = f"precision {backend_name} H={hidden} S={seq_length}"
    benchmark.extra_info["contender"] = dtype
    record_roofline(benchmark, corpus, roofline_ceilings, hidden, seq_length, dtype, 100)
    benchmark.pedantic(
        backend.train_steps,
        setup=lambda: ((corpus.data, _fresh(corpus, hidden, seq_length, dtype), 100), {}),
        rounds=10,
    )


@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("beta", (2, 4))
@pytest.mark.parametrize("backend_name", COMPILED_BACKENDS)
@pytest.mark.parametrize("hidden,seq_length", CONFIGS)
def test_objective_threads(benchmark, corpus, backend_name, hidden, seq_length, beta, threads):
    """A full evaluation of F: beta runs of 100 steps at one corner, on a fresh memo each round."""
    backend = backend_or_skip(backend_name)
    point = (hidden, seq_length, 0.1)
    Objective(corpus, alpha=2, beta=1, backend=backend, kind="paper")(point)
    benchmark.group = f"objective {backend_name} beta={beta} H={hidden} S={seq_length}"
    benchmark.extra_info["contender"] = f"{threads} thread" + ("s" if threads > 1 else "")

    def evaluate(F):
        return F(point)

    rounds = 3 if hidden >= 410 else 6
    benchmark.pedantic(
        evaluate,
        setup=lambda: ((Objective(corpus, alpha=100, beta=beta, threads=threads, backend=backend, kind="paper"),), {}),
        rounds=rounds,
    )


_IDEAL_TASKS: dict = {}


@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("hidden,seq_length", CONFIGS)
def test_ideal_tasks_threads(benchmark, corpus, hidden, seq_length, threads):
    """The ceiling for test_objective_threads at beta = 4: four independent compute tasks as long
    as one numba evaluation's runs together (fastrnn.bench.threads.IdealTasks), on 1 and 2 threads."""
    key = (hidden, seq_length)
    if key not in _IDEAL_TASKS:  # one calibration for both thread counts, so their ratio compares like work
        backend_or_skip("numba")
        point = (hidden, seq_length, 0.1)
        Objective(corpus, alpha=2, beta=1, backend="numba", kind="paper")(point)
        F = Objective(corpus, alpha=100, beta=4, threads=1, backend="numba", kind="paper")
        started = time.perf_counter()
        F(point)
        _IDEAL_TASKS[key] = IdealTasks(4, (time.perf_counter() - started) / 4)
    ideal = _IDEAL_TASKS[key]
    benchmark.group = f"ideal tasks beta=4 H={hidden} S={seq_length}"
    benchmark.extra_info["contender"] = f"{threads} thread" + ("s" if threads > 1 else "")
    benchmark.pedantic(ideal.seconds, args=(threads,), rounds=3 if hidden >= 410 else 6)
