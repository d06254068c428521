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
    warm_up = Objective(corpus, alpha=2, beta=BETA, dtype="float64", executor=executor)
    warm_up((hidden, seq_length, 0.2))  # compile, ship the text
    benchmark.group = f"executor beta={BETA} H={hidden} S={seq_length}"
    benchmark.extra_info["contender"] = contender

    def fresh():
        lr = 0.1 + 1e-9 * next(_salt)
        return (Objective(corpus, alpha=100, beta=BETA, dtype="float64", executor=executor), (hidden, seq_length, lr)), {}

    benchmark.pedantic(lambda F, point: F(point), setup=fresh, rounds=15 if hidden < 100 else 7)


def test_batch_latency(benchmark, corpus, dask_executor):
    """The fixed cost every dask batch pays: a batch of one run of one step."""
    backend = get_backend("numba")
    benchmark.group = "dask batch of one tiny run"
    benchmark.extra_info["contender"] = "dask"

    def spec():
        return (backend, corpus.data, [RunSpec(20, 5, 0.1 + 1e-9 * next(_salt), corpus.vocab_size, 0, 1)]), {}

    benchmark.pedantic(dask_executor.run, setup=spec, rounds=30)


@pytest.fixture(scope="module")
def clusters(dask_executor):
    """LocalClusters of 1 and of 2 single-threaded workers (the 2-worker one shared with the tests above)."""
    from fastrnn.running.dask_executor import DaskExecutor

    one = DaskExecutor.local(1)
    yield {1: one, WORKERS: dask_executor}
    one.close()


@pytest.mark.parametrize("workers", (1, WORKERS))
def test_default_method_workers(benchmark, corpus, clusters, tmp_path, workers):
    """The default tuner (successive halving, float32) on a LocalCluster of 1 and of 2 workers:
    one full bracket, rungs of 2,222 to 60,000 characters (54, 18, 6 and 2 networks), the same
    networks and results on both (a character budget, not a time budget, so the work is fixed).
    Issue 19's target: 2 workers at least 1.7x one."""
    from fastrnn.tuning.halving import HalvingSettings, halve

    executor = clusters[workers]
    benchmark.group = "halving bracket on dask workers"
    benchmark.extra_info["contender"] = f"{workers} worker{'s' if workers > 1 else ''}"
    settings = HalvingSettings(target_chars=60_000, sampler="random")
    rounds = itertools.count()

    def tune():
        F = Objective(corpus, heldout_chars=5_000, seed=0, dtype="float32", executor=executor)
        return halve(F, settings, out=tmp_path / f"run{next(rounds)}.jsonl")

    first = tune()  # compiles the kernels and ships the texts to the workers
    benchmark.extra_info["answer"] = [first.x, first.fun]
    benchmark.pedantic(tune, rounds=3)


@pytest.mark.parametrize("workers", (1, WORKERS))
def test_default_method_throughput(benchmark, corpus, clusters, tmp_path, workers):
    """The default tuner as ``fastrnn tune --budget-seconds 30 --dtype float32`` runs it (successive
    halving, the budget choosing its rungs, the two top networks training most of the time), on a
    LocalCluster of 1 and of 2 workers. Both end at the budget, so the figure is the training done
    in it: the cost model's work units (:func:`fastrnn.tuning.halving_lanes.work`) of every update
    trained, per second of the whole run (calibration, search, scoring and files included).
    Issue 19's target: 2 workers at least 1.7x one."""
    from fastrnn.tuning.halving import halve
    from fastrnn.tuning.halving_lanes import work
    from fastrnn.tuning.halving_store import read_halving

    executor = clusters[workers]
    benchmark.group = "default tuner 30 s on dask workers"
    benchmark.extra_info["contender"] = f"{workers} worker{'s' if workers > 1 else ''}"
    rounds, rates = itertools.count(), []

    def tune():
        out = tmp_path / f"run{next(rounds)}.jsonl"
        result = halve(Objective(corpus, heldout_chars=5_000, seed=0, dtype="float32", executor=executor),
                       out=out, budget_seconds=30.0)
        steps: dict = {}
        for line in read_halving(out).of_type("record"):
            steps[line["trial"]] = (line["x"], max(line["steps"], steps.get(line["trial"], (None, 0))[1]))
        done = sum(work(h, s, corpus.vocab_size, n * s) for (h, s, _), n in steps.values())
        rates.append(done / result.seconds)

    tune()  # compiles the kernels and ships the texts to the workers
    rates.clear()
    benchmark.pedantic(tune, rounds=3)
    benchmark.extra_info["work_per_second"] = sorted(rates)[len(rates) // 2]
