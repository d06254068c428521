"""The dask executor on a real LocalCluster of worker processes: results identical to the threads
executor, a killed worker, a lost scheduler and --resume, and the error without the extra.

The cluster tests need ``distributed`` (the ``fastrnn[dask]`` extra, also in ``fastrnn[test]``);
they are skipped without it unless ``FASTRNN_REQUIRE_DASK=1``, which CI sets so that a missing
extra fails instead of silently skipping.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time

import pytest

import fastrnn
from fastrnn.backends import RunSpec
from fastrnn.objective.function import Objective
from fastrnn.running.executors import ExecutorError, ExecutorUnavailable, make_executor
from fastrnn.tuning.runner import read_run, tune

from helpers import assert_one_line_error, invoke


def _distributed():
    if os.environ.get("FASTRNN_REQUIRE_DASK") == "1":
        import distributed  # CI: the extra must be there, so an ImportError fails the test

        return distributed
    return pytest.importorskip("distributed", reason="the dask extra is not installed: pip install 'fastrnn[dask]'")


def _local_cluster(workers):
    _distributed()
    from fastrnn.running.dask_executor import _local_cluster

    return _local_cluster(workers)


@pytest.fixture(scope="module")
def cluster():
    cluster = _local_cluster(2)
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def executor(cluster):
    from fastrnn.running.dask_executor import DaskExecutor

    client = _distributed().Client(cluster, set_as_default=False)
    executor = DaskExecutor(client)
    yield executor
    executor.close()
    client.close()


def _without_seconds(path):
    """A run file's entries with the wall-clock times (which differ between runs) left out."""
    with open(path, encoding="utf-8") as f:
        entries = [json.loads(line) for line in f]
    for entry in entries:
        for key in ("seconds", "elapsed", "step_seconds"):
            entry.pop(key, None)
        entry.get("counters", {}).pop("seconds", None)
    return entries


POINTS = [(24.5, 7.25, 0.1), (20.0, 5.0, 0.05), (30.75, 9.5, 0.2), (24.5, 7.25, 0.1 + 1e-8)]


# -- identity with the threads executor -------------------------------------------------------------
@pytest.mark.parametrize("kind", ["heldout", "paper"])
@pytest.mark.parametrize("noise", ["common", "fresh"])
def test_F_is_bit_identical_to_the_threads_executor(executor, small_corpus, noise, kind):
    settings = dict(alpha=15, beta=3, noise=noise, seed=4, kind=kind)
    on_threads = Objective(small_corpus, **settings, threads=2)
    on_dask = Objective(small_corpus, **settings, executor=executor)
    for _ in range(2):  # fresh noise draws new seeds the second time
        assert on_dask.evaluate_many(POINTS).tolist() == on_threads.evaluate_many(POINTS).tolist()
    assert on_dask.counters.trainings_run == on_threads.counters.trainings_run > 0
    assert on_dask.counters.trainings_from_memo == on_threads.counters.trainings_from_memo


def test_a_tuning_run_file_is_identical(executor, small_corpus, tmp_path):
    paths = {}
    for name, chosen in (("threads", "threads"), ("dask", executor)):
        paths[name] = tmp_path / f"{name}.jsonl"
        F = Objective(small_corpus, alpha=8, beta=2, executor=chosen, kind="paper")
        tune(F, "gd", x0=[24.3, 6.6, 0.1], max_steps=3, record_every=1, out=paths[name], step=0.1)
    assert _without_seconds(paths["dask"]) == _without_seconds(paths["threads"])


def test_a_distributed_client_is_an_executor(executor, small_corpus):
    F = Objective(small_corpus, alpha=5, beta=2, executor=executor.client, kind="paper")
    assert F.executor.name == "dask" and F.executor.describe()["workers"] == 2
    assert Objective(small_corpus, executor=executor.client, kind="paper").executor is F.executor  # one per client
    assert F(POINTS[0]) == Objective(small_corpus, alpha=5, beta=2, kind="paper")(POINTS[0])


# -- transport: texts once per worker, runs grouped, kernels warm -------------------------------------
def _shipped_keys():
    from fastrnn.running import dask_executor

    return sorted(dask_executor._ARRAYS)


def test_the_text_is_on_every_worker_once_and_tasks_carry_only_its_key(executor, small_corpus):
    F = Objective(small_corpus, alpha=5, beta=4, executor=executor, kind="paper")
    F(POINTS[0])
    key = executor.ship(small_corpus.data)
    assert executor.ship(small_corpus.data.copy()) == key  # by content, not by object
    shipped = list(executor.client.run(_shipped_keys).values())  # earlier tests' texts may be there too
    assert len(shipped) == 2 and all(keys.count(key) == 1 for keys in shipped)
    F(POINTS[2])  # another batch sends nothing new
    assert list(executor.client.run(_shipped_keys).values()) == shipped
    assert not any(str(k).startswith("fastrnn-array") for keys in executor.client.has_what().values() for k in keys)


def test_runs_are_grouped_into_tasks_by_cost():
    _distributed()
    from fastrnn.running.dask_executor import TASK_SECONDS, estimated_seconds, group_runs

    small = [RunSpec(20, 5, 0.1, 65, seed, 100) for seed in range(64)]
    groups = group_runs(small, workers=2)
    assert sorted(k for group in groups for k in group) == list(range(64))
    assert len(groups) >= 2  # every worker gets work ...
    assert all(sum(estimated_seconds(small[k]) for k in group) >= 0.5 * TASK_SECONDS for group in groups)  # ... not crumbs
    big = [RunSpec(400, 25, 0.1, 65, seed, 1000) for seed in range(6)]
    assert sorted(map(sorted, group_runs(big, workers=2))) == [[k] for k in range(6)]  # long runs go one a task
    assert len(group_runs(small[:3], workers=8)) == 1  # 2 ms of work: a second task costs more than it saves
    many = [RunSpec(100, 25, 0.1, 65, seed, 100) for seed in range(800)]  # the intensive gradient's batch
    assert 40 <= len(group_runs(many, workers=512)) <= 80  # sqrt(11 s / 3 ms) tasks: the scheduler keeps up
    assert group_runs([], workers=2) == []


def test_a_worker_process_loads_its_kernels_once(executor, small_corpus):
    def compiled_signatures():
        from fastrnn.backends import _numba_kernel

        return len(_numba_kernel.train_steps.signatures), os.getpid()

    Objective(small_corpus, alpha=3, beta=2, executor=executor, kind="paper")(POINTS[1])
    before = executor.client.run(compiled_signatures)
    for point in POINTS[:3]:
        Objective(small_corpus, alpha=3, beta=4, executor=executor, kind="paper")(point)
    assert executor.client.run(compiled_signatures) == before  # same processes, nothing compiled again


# -- faults ------------------------------------------------------------------------------------------
def test_a_worker_killed_mid_batch_costs_a_retry_and_nothing_else(executor, cluster, small_corpus):
    settings = dict(alpha=400, beta=4, kind="paper")
    point = (48.5, 20.5, 0.1)  # 16 runs of about 0.1 s each: long enough to kill a worker during them
    expected = Objective(small_corpus, **settings, threads=2)(point)
    client = executor.client
    pids = client.run(os.getpid)
    killed = []

    def kill_a_busy_worker():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not killed:
            busy = [address for address, keys in client.processing().items() if keys and address in pids]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    value = Objective(small_corpus, **settings, executor=executor)(point)
    killer.join()
    assert killed, "no worker was busy to be killed"
    assert value == expected
    # The nanny restarts the worker, so the cluster is whole again for the tests that follow; the
    # new worker process has the text without being sent it by the client again.
    client.wait_for_workers(2, timeout=60)
    assert client.run(os.getpid) != pids
    key = executor.ship(small_corpus.data)
    assert all(key in keys for keys in client.run(_shipped_keys).values())


def test_a_lost_scheduler_keeps_the_run_file_and_resume_finishes_it(cluster, corpus_file, tmp_path, small_corpus):
    doomed = _local_cluster(1)
    run_file = tmp_path / "run.jsonl"
    args = ["tune", "--method", "gd", "--step", "0.1", "--x0", "24.3,6.6,0.1", "--alpha", "200", "--beta", "2",
            "--steps", "12", "--record-every", "1", "--corpus", corpus_file, "--quiet"]

    def close_the_scheduler_after_some_records():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if run_file.exists() and len(read_run(run_file).records) >= 3:
                break
            time.sleep(0.05)
        doomed.close()  # its workers, then its scheduler

    closer = threading.Thread(target=close_the_scheduler_after_some_records)
    closer.start()
    try:
        started = time.monotonic()
        lost = invoke(args + ["--scheduler", doomed.scheduler_address, "--out", str(run_file)])
        assert time.monotonic() - started < 30
    finally:
        closer.join()
    assert_one_line_error(lost, "lost the Dask scheduler", "--resume")
    interrupted = read_run(run_file)
    assert interrupted.result is None and 3 <= len(interrupted.records) < 13

    resumed = invoke(args + ["--scheduler", cluster.scheduler_address, "--resume", str(run_file)])
    assert resumed.exit_code == 0, resumed.output
    reference = tmp_path / "reference.jsonl"
    on_threads = invoke(args + ["--out", str(reference)])
    assert resumed.stdout == on_threads.stdout
    assert _without_seconds(run_file) == _without_seconds(reference)


def test_a_worker_out_of_memory_is_reported_as_that(small_corpus):
    """A run far too big for the workers' memory limit: the nanny kills the worker, and the
    batch ends with an error naming the run's memory (here after one death, not the default
    three, to keep the test short), not a hang."""
    _distributed()
    import dask

    from fastrnn.backends import get_backend
    from fastrnn.running.dask_executor import DaskExecutor, estimated_bytes

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        small = _distributed().LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit="400MiB",
                                            dashboard_address=None, scheduler_kwargs=dict(dashboard_address="127.0.0.1:0"),
                                            silence_logs=logging.CRITICAL)
    huge = RunSpec(5000, 5, 0.1, small_corpus.vocab_size, 0, 2)
    assert estimated_bytes(huge) > 400 * 2**20
    client = _distributed().Client(small, set_as_default=False)
    executor = DaskExecutor(client)
    try:
        with pytest.raises(ExecutorError, match=r"died 1 time .* h=5000, s=5 \(about [\d,]+ MB a run.* limit of 400 MB: "
                                                r"most likely out of memory"):
            executor.run(get_backend("numba"), small_corpus.data, [huge])
    finally:
        executor.close()
        client.close()
        small.close()


def test_an_unreachable_scheduler_is_a_clear_error():
    _distributed()
    from fastrnn.running.dask_executor import DaskExecutor

    with pytest.raises(ExecutorError, match="cannot reach a Dask scheduler at tcp://127.0.0.1:9 "):
        DaskExecutor(scheduler="tcp://127.0.0.1:9", connect_timeout=0.5)


# -- the command line ----------------------------------------------------------------------------------
def test_objective_json_says_which_executor_ran(cluster, corpus_file, small_corpus):
    result = invoke(["objective", "24.5", "7.25", "0.1", "--alpha", "6", "--beta", "2", "--corpus", corpus_file,
                      "--scheduler", cluster.scheduler_address, "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["executor"] == dict(executor="dask", scheduler=cluster.scheduler_address, workers=2)
    assert record["value"] == Objective(small_corpus, alpha=6, beta=2, kind="paper")((24.5, 7.25, 0.1))
    assert record["counters"]["trainings_run"] == 8
    on_threads = json.loads(invoke(["objective", "24", "7", "0.1", "--alpha", "2", "--corpus", corpus_file,
                                     "--threads", "1", "--json"]).stdout)
    assert on_threads["executor"] == dict(executor="threads", threads=1)


def test_local_workers_start_and_close_a_cluster(corpus_file, small_corpus):
    _distributed()
    result = invoke(["gradient", "24.5", "7.25", "0.1", "--alpha", "4", "--corpus", corpus_file,
                      "--local-workers", "1"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["executor"]["workers"] == 1
    on_threads = json.loads(invoke(["gradient", "24.5", "7.25", "0.1", "--alpha", "4", "--corpus", corpus_file]).stdout)
    assert record["gradient"] == on_threads["gradient"]


def test_reproduce_on_the_cluster_writes_the_same_run_files(cluster, corpus_file, tmp_path):
    args = ["reproduce", "--trial", "4", "--scale", "0.001", "--no-intensive", "--corpus", corpus_file, "--quiet"]
    on_dask = invoke(args + ["--out", str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address])
    assert on_dask.exit_code == 0, on_dask.output
    on_threads = invoke(args + ["--out", str(tmp_path / "threads")])
    names = sorted(path.name for path in (tmp_path / "threads").glob("trial4-*.jsonl"))
    assert len(names) == 3
    for name in names:
        assert _without_seconds(tmp_path / "dask" / name) == _without_seconds(tmp_path / "threads" / name)
    assert on_threads.exit_code == 0


def test_scheduler_and_local_workers_exclude_each_other(corpus_file):
    result = invoke(["objective", "24", "7", "0.1", "--corpus", corpus_file, "--scheduler", "tcp://127.0.0.1:9",
                      "--local-workers", "2"])
    assert_one_line_error(result, "--scheduler", "--local-workers")


# -- without the extra (these run whether or not dask is installed) ---------------------------------
@pytest.fixture
def without_dask(monkeypatch):
    """Imports of distributed and dask fail, as where the extra is not installed."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("distributed", "dask") or name == "fastrnn.running.dask_executor":
            monkeypatch.delitem(sys.modules, name)
    for name in ("distributed", "dask", "fastrnn.running.dask_executor"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delattr(fastrnn, "dask_executor", raising=False)


def test_without_the_extra_the_library_says_how_to_install_it(without_dask, small_corpus):
    with pytest.raises(ExecutorUnavailable, match=r"pip install 'fastrnn\[dask\]'"):
        Objective(small_corpus, executor="dask", kind="paper")
    with pytest.raises(ExecutorUnavailable, match=r"pip install 'fastrnn\[dask\]'"):
        make_executor("dask", scheduler="tcp://127.0.0.1:8786")
    assert isinstance(ExecutorUnavailable("x"), ExecutorError)
    assert Objective(small_corpus, alpha=2, kind="paper")(POINTS[1]) > 0  # the threads executor does not need it


@pytest.mark.parametrize("command", [
    ["objective", "24", "7", "0.1"],
    ["gradient", "24", "7", "0.1"],
    ["tune", "--steps", "1"],
    ["reproduce", "--trial", "4", "--scale", "0.001"],
])
@pytest.mark.parametrize("option", [["--local-workers", "2"], ["--scheduler", "tcp://127.0.0.1:8786"]])
def test_without_the_extra_the_cli_exits_2_with_one_line(without_dask, corpus_file, tmp_path, command, option):
    extra = ["--out", str(tmp_path / "out")] if command[0] == "reproduce" else []
    result = invoke(command + ["--corpus", corpus_file, "--alpha" if command[0] != "reproduce" else "--seed", "2"]
                     + extra + option)
    assert_one_line_error(result, "pip install 'fastrnn[dask]'")
    assert not (tmp_path / "out").exists()


def test_unknown_executor_and_stray_scheduler_are_value_errors(small_corpus):
    with pytest.raises(ValueError, match="valid executors: threads, dask"):
        Objective(small_corpus, executor="mpi", kind="paper")
    with pytest.raises(ValueError, match="executor='dask'"):
        Objective(small_corpus, scheduler="tcp://127.0.0.1:8786", kind="paper")
