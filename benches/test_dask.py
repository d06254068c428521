"""The dask executor against the threads executor on this machine: a LocalCluster of 2
single-threaded worker processes against 2 threads, on an evaluation of F with beta = 8 at
(100, 25) and (20, 5), plus the fixed cost of a batch.

``pytest benches/test_dask.py --benchmark-only``; the closing summary prints dask's speed as a
multiple of the threads executor's (below 1: slower). pytest-benchmark runs each contender's
rounds one after the other, so on a noisy machine ``fastrnn bench --executor dask`` (interleaved
rounds) gives the figures to quote.
"""

from __future__ import annotations

import itertools

import pytest

from fastrnn.backends import RunSpec, get_backend
from fastrnn.bench.dask_comparison import EXECUTOR_CONFIGS
from fastrnn.objective.function import Objective
from fastrnn.running.executors import ThreadExecutor

pytest.importorskip("distributed", reason="the dask executor needs the extra: pip install 'fastrnn[dask]'")

WORKERS = 2
BETA = 8
_salt = itertools.count()


@pytest.fixture(scope="module")
def dask_executor():
    from fastrnn.running.dask_executor import DaskExecutor

    executor = DaskExecutor.local(WORKERS)
    yield executor
    executor.close()


@pytest.fixture(scope="module")
def executors(dask_executor):
    return {"threads": ThreadExecutor(WORKERS), "dask": dask_executor}


@pytest.mark.parametrize("contender", ("threads", "dask"))
@pytest.mark.parametrize("hidden,seq_length", EXECUTOR_CONFIGS)
def test_evaluation(benchmark, corpus, executors, contender, hidden, seq_length):
    """beta = 8 runs of 100 steps at one corner, on a new Objective each round (nothing memoised).

    Every round has its own learning rate, so Dask cannot hand back a result it still holds.
    """
    executor = executors[contender]
    Objective(corpus, alpha=2, beta=BETA, executor=executor)((hidden, seq_length, 0.2))  # compile, ship the text
    benchmark.group = f"executor beta={BETA} H={hidden} S={seq_length}"
    benchmark.extra_info["contender"] = contender

    def fresh():
        lr = 0.1 + 1e-9 * next(_salt)
        return (Objective(corpus, alpha=100, beta=BETA, executor=executor), (hidden, seq_length, lr)), {}

    benchmark.pedantic(lambda F, point: F(point), setup=fresh, rounds=15 if hidden < 100 else 7)


def test_batch_latency(benchmark, corpus, dask_executor):
    """The fixed cost every dask batch pays: a batch of one run of one step."""
    backend = get_backend("numba")
    benchmark.group = "dask batch of one tiny run"
    benchmark.extra_info["contender"] = "dask"

    def spec():
        return (backend, corpus.data, [RunSpec(20, 5, 0.1 + 1e-9 * next(_salt), corpus.vocab_size, 0, 1)]), {}

    benchmark.pedantic(dask_executor.run, setup=spec, rounds=30)
