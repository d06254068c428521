"""The ``dask`` executor: each batch of training runs goes to the workers of a Dask cluster.

Needs the ``fastrnn[dask]`` extra (``distributed``); :mod:`fastrnn.running.executors` imports this module
only when the dask executor is asked for. Every worker needs fastrnn installed too (the same
version: a task names the backend and its run specs, and the worker trains them with its own copy).

How a batch travels:

* **Texts once per worker.** An array a task reads (the corpus; later a held-out text) goes to
  every worker once, in a worker plugin named by a hash of its content and the client's id
  (:meth:`DaskExecutor.ship`; the id, so that one client unregistering its texts at exit never
  takes them from another client's batches); tasks refer to it by that name, so a task message
  holds only run specs (a few hundred bytes).
  The scheduler hands the plugin to workers that join later (a restarted one too). A plugin
  rather than ``scatter(broadcast=True)``: Dask's active memory manager drops replicas of
  scattered data that no task is waiting for, and workers would then fetch the text again.
* **Runs grouped by cost.** A task costs a few milliseconds of scheduling whatever it computes,
  so small runs are packed together (:func:`group_runs`): one task per worker, or tasks of about
  :data:`TASK_SECONDS` when there is more work, and no more tasks than the scheduler can hand out
  in the time they take. Each task trains its runs one after another on one thread, from their
  own seeds, so grouping never changes a result.
* **Pure tasks.** A task's key is a hash of its backend, text and specs; a worker that dies
  mid-task costs a rerun of that task on another worker (``retries`` more for errors raised in
  the task), and the batch's outcomes are the same.
* **Warm kernels.** The first batch in each (backend, dtype) trains a two-step run on every
  worker, so numba loads its on-disk cache (or compiles) once per worker process, outside the
  first real batch; worker processes are long-lived, so no task compiles again.

Faults become an :class:`~fastrnn.running.executors.ExecutorError` with a message that says what to do:
the scheduler went away, workers keep dying on a task (out of memory on a large ``h``, most
likely: the message gives the run's estimated memory), or the cluster has had no workers for
``no_worker_timeout`` seconds. A tuning run keeps its finished records; ``--resume`` continues it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import weakref
from concurrent.futures import CancelledError
from typing import Sequence

import dask
import numpy as np
from dask.base import tokenize
from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin, wait

from ..backends import RunSpec, get_backend
from ..network.model import parameter_count
from .runs import ExecutorError, RunOutcome, default_threads

#: Training time a task aims for when there is more work than workers: tasks of this size keep
#: the cost of scheduling them (below) under a tenth of the work.
TASK_SECONDS = 0.05
#: What one task costs the scheduler and client, one task after another: about 3 ms measured on
#: the 2-core development machine (``fastrnn bench --executor dask``; see docs/SCALING.md), less on
#: a dedicated scheduler node. A batch of total work T split into n tasks on many workers takes
#: about n * this + T / n, least at n = sqrt(T / this): more tasks than that only wait for the scheduler.
SCHEDULING_SECONDS = 0.003
#: For grouping only: training speed of one core in forward multiply-adds per second (backward
#: included) and a fixed cost per update, fitted to the numba kernel at (20, 5) and (100, 25).
MULTIPLY_ADDS_PER_SECOND = 3e9
SECONDS_PER_UPDATE = 5e-6
#: How often a waiting batch looks at the cluster's health (seconds).
POLL_SECONDS = 0.5
#: How long a batch trusts the last worker count when it sizes its tasks: asking the scheduler
#: costs a round trip, and the count only decides how finely the runs are split.
WORKER_COUNT_SECONDS = 5.0


def estimated_seconds(spec: RunSpec) -> float:
    """Rough single-core training time of a run, to size tasks (never affects results)."""
    return spec.steps * (spec.step_cost / MULTIPLY_ADDS_PER_SECOND + SECONDS_PER_UPDATE)


def estimated_bytes(spec: RunSpec) -> int:
    """Rough memory a run needs while training: weights, Adagrad memory and gradients, plus the
    activations of one sequence (each in the run's precision)."""
    itemsize = np.dtype(spec.dtype).itemsize
    weights = parameter_count(spec.hidden, spec.vocab_size)
    activations = (spec.seq_length + 1) * (2 * spec.hidden + 2 * spec.vocab_size)
    return itemsize * (3 * weights + activations)


def group_runs(specs: Sequence[RunSpec], workers: int, task_seconds: float = TASK_SECONDS,
               scheduling_seconds: float = SCHEDULING_SECONDS) -> list[list[int]]:
    """Indices of ``specs`` split into tasks, costliest task first.

    One task per worker, or tasks of about ``task_seconds`` when there is more work than that,
    but never more than ``sqrt(total / scheduling_seconds)`` tasks, past which the scheduler's
    per-task cost outweighs what another worker adds. Runs are dealt longest first to the least
    loaded task, so the tasks end up about equally long.
    """
    if not specs:
        return []
    seconds = [estimated_seconds(spec) for spec in specs]
    total = sum(seconds)
    wanted = max(workers, int(total / task_seconds))
    worth_scheduling = max(1, int(math.sqrt(total / scheduling_seconds)))
    n_tasks = min(len(specs), wanted, worth_scheduling)
    loads = [0.0] * n_tasks
    groups: list[list[int]] = [[] for _ in range(n_tasks)]
    for k in sorted(range(len(specs)), key=lambda k: -seconds[k]):
        target = min(range(n_tasks), key=loads.__getitem__)
        groups[target].append(k)
        loads[target] += seconds[k]
    order = sorted(range(n_tasks), key=lambda t: -loads[t])
    return [groups[t] for t in order if groups[t]]


# -- what runs on the workers ---------------------------------------------------------------------
#: The arrays shipped to this worker process, by content key.
_ARRAYS: dict[str, np.ndarray] = {}


class ShippedArray(WorkerPlugin):
    """Puts one array into every worker's :data:`_ARRAYS` (and takes it out when unregistered)."""

    def __init__(self, key: str, array: np.ndarray):
        self.name = key
        self.array = array

    def setup(self, worker) -> None:
        _ARRAYS[self.name] = self.array

    def teardown(self, worker) -> None:
        _ARRAYS.pop(self.name, None)


def _shipped(key: str) -> np.ndarray:
    try:
        return _ARRAYS[key]
    except KeyError:
        raise RuntimeError(f"this worker has no array {key}: its plugin was unregistered while the batch ran") from None


def _train_group(backend_name: str, data_key: str, specs: list[RunSpec], heldout_key: str | None = None
                 ) -> list[RunOutcome]:
    """One task: train ``specs`` one after another on this worker's one thread (and score each
    on the held-out text, when its key is given)."""
    heldout = None if heldout_key is None else _shipped(heldout_key)
    return get_backend(backend_name).run_specs(_shipped(data_key), specs, threads=1, heldout=heldout)


def _warm_up(backend_name: str, dtype: str) -> int:
    """Load (or compile) the backend's kernel in this worker process; return the process id."""
    import os

    data = np.arange(16, dtype=np.uint8) % 4
    get_backend(backend_name).train_fresh(data, [RunSpec(2, 2, 0.1, 4, 0, 2, dtype)], threads=1)
    return os.getpid()


# -- the client side ----------------------------------------------------------------------------
def _check_address(scheduler: str) -> None:
    """ExecutorError unless ``scheduler`` is an address a Client can dial (a scheme Dask knows,
    a host and a port). Checked before the Client is made: one made from a malformed address
    fails in its constructor and then spends its connect timeout closing itself."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend as comm_backend

    try:
        scheme, location = parse_address(str(scheduler))
        comm_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise ExecutorError(f"--scheduler {scheduler!r} is not a Dask scheduler address ({_reason(exc)}); give "
                            "one as tcp://HOST:PORT (the address `dask scheduler` prints)") from None


class DaskExecutor:
    """Runs every batch on a Dask cluster.

    Parameters
    ----------
    client : distributed.Client, optional
        The cluster to use. Without it: ``scheduler``'s cluster, else the current default
        client, else a new :class:`~distributed.LocalCluster` of one single-threaded worker
        process per core (closed by :meth:`close`).
    scheduler : str, optional
        Address of a running scheduler, ``tcp://HOST:PORT``.
    retries : int
        Reruns of a task that raised (a task on a worker that died is rerun anyway, up to the
        scheduler's ``allowed-failures``).
    no_worker_timeout : float
        Seconds a batch waits on a cluster without workers before it gives up.
    connect_timeout : float
        Seconds to wait for the scheduler when connecting.
    """

    name = "dask"

    def __init__(self, client: Client | None = None, *, scheduler: str | None = None, retries: int = 2,
                 no_worker_timeout: float = 120.0, connect_timeout: float = 10.0):
        self._owned: list = []  # what close() shuts down: only what this executor started
        if client is None and scheduler is not None:
            _check_address(scheduler)
            try:
                client = Client(scheduler, timeout=connect_timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ExecutorError(f"cannot reach a Dask scheduler at {scheduler} ({_reason(exc)}); "
                                    "start one with `dask scheduler` or check the address") from None
            self._owned.append(client)
        elif client is None:
            try:
                from distributed import default_client

                client = default_client()
            except ValueError:  # no client yet in this process
                cluster = _local_cluster(default_threads())
                client = Client(cluster, set_as_default=False)
                self._owned += [client, cluster]
        self.client = client
        self.retries = int(retries)
        self.no_worker_timeout = float(no_worker_timeout)
        self.address = client.scheduler.address
        self._shipped: set[str] = set()  # content keys of the arrays this executor sent
        self._content_keys: dict[int, tuple[weakref.ref, str]] = {}
        self._warm: set[tuple[str, str]] = set()
        self._worker_count = (0, -math.inf)  # (count, when)

    @classmethod
    def for_client(cls, client: Client) -> "DaskExecutor":
        """The executor of ``client``: one per client, so Objectives sharing a client share the
        texts it has shipped."""
        executor = _by_client.get(client.id)
        if executor is None or executor.client is not client:
            executor = _by_client[client.id] = cls(client)
        return executor

    @classmethod
    def local(cls, workers: int, **options) -> "DaskExecutor":
        """A new LocalCluster of ``workers`` single-threaded worker processes, closed by :meth:`close`."""
        cluster = _local_cluster(workers)
        client = Client(cluster, set_as_default=False)
        executor = cls(client, **options)
        executor._owned += [client, cluster]
        return executor

    # -- the executor interface -------------------------------------------------------------------
    def run(self, backend, data, specs: Sequence[RunSpec], heldout=None) -> list[RunOutcome]:
        """Train every spec on the cluster (and score it on ``heldout`` text, shipped once per
        worker like the training text); the outcomes equal the threads executor's, in order."""
        specs = list(specs)
        if not specs:
            return []
        backend_name = backend.name
        self._require_running()
        data_key = self.ship(data)
        heldout_key = None if heldout is None else self.ship(heldout)
        for dtype in sorted({spec.dtype for spec in specs}):
            self.warm_up(backend_name, dtype)
        groups = group_runs(specs, max(1, self.workers(max_age=WORKER_COUNT_SECONDS)))
        tasks = [[specs[k] for k in group] for group in groups]
        keys = [f"fastrnn-train-{tokenize(backend_name, data_key, heldout_key, [tuple(s) for s in task])}"
                for task in tasks]
        try:
            futures = self.client.map(_train_group, [backend_name] * len(tasks), [data_key] * len(tasks), tasks,
                                      [heldout_key] * len(tasks), key=keys, pure=True, retries=self.retries)
            results = self._gather(futures, tasks)
        except (OSError, CancelledError) as exc:  # the scheduler went away (or someone cancelled the tasks)
            raise self._lost(exc) from None
        outcomes: list = [None] * len(specs)
        for group, result in zip(groups, results):
            for k, outcome in zip(group, result):
                outcomes[k] = RunOutcome(*outcome)
        return outcomes

    def describe(self) -> dict:
        return dict(executor=self.name, scheduler=self.address, workers=self.workers())

    def close(self) -> None:
        """Shut down what this executor started (a client it connected, a LocalCluster); an
        existing client passed in stays open (without the arrays this executor shipped)."""
        if self.client.status == "running":
            for key in self._shipped:
                try:
                    self.client.unregister_worker_plugin(key)
                except Exception:  # gone already (another executor on this client unregistered it)
                    pass
        self._shipped.clear()
        while self._owned:
            try:
                self._owned.pop().close()
            except Exception:  # closing a cluster that already went away
                pass

    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- helpers ----------------------------------------------------------------------------------
    def workers(self, max_age: float = 0.0) -> int:
        """Workers in the cluster now (or as counted at most ``max_age`` seconds ago)."""
        count, when = self._worker_count
        if time.monotonic() - when > max_age:
            try:
                count = len(self.client.scheduler_info(n_workers=-1)["workers"])
            except TypeError:  # distributed before 2025: no n_workers, and all workers listed
                count = len(self.client.scheduler_info()["workers"])
            self._worker_count = (count, time.monotonic())
        return count

    def ship(self, array: np.ndarray) -> str:
        """Send ``array`` to every worker, present and future, once; return the key tasks name it by."""
        key = self._content_key(array)
        if key not in self._shipped:
            try:
                self.client.register_plugin(ShippedArray(key, np.ascontiguousarray(array)))
            except (OSError, CancelledError) as exc:
                raise self._lost(exc) from None
            self._shipped.add(key)
        return key

    def warm_up(self, backend_name: str, dtype: str) -> list[int]:
        """Load the kernel in every current worker (once per executor and (backend, dtype));
        returns the worker process ids."""
        if (backend_name, dtype) in self._warm:
            return []
        try:
            pids = self.client.run(_warm_up, backend_name, dtype)
        except (OSError, CancelledError) as exc:
            raise self._lost(exc) from None
        self._warm.add((backend_name, dtype))
        return list(pids.values())

    def _content_key(self, array: np.ndarray) -> str:
        cached = self._content_keys.get(id(array))
        if cached is not None and cached[0]() is array:
            return cached[1]
        digest = hashlib.blake2b(np.ascontiguousarray(array).view(np.uint8), digest_size=16)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        key = f"fastrnn-array-{digest.hexdigest()}-{self.client.id}"
        self._content_keys[id(array)] = (weakref.ref(array), key)
        return key

    def _require_running(self) -> None:
        if self.client.status not in ("running", "newly-created"):
            raise self._lost(None)

    def _gather(self, futures, tasks) -> list:
        """Wait for ``futures`` while watching the cluster: a lost scheduler, or no workers for
        too long, raise instead of hanging. Ctrl-C cancels the batch's tasks."""
        no_workers_since = None
        try:
            while True:
                try:
                    with self.client.as_current():
                        wait(futures, timeout=POLL_SECONDS)
                    break
                except TimeoutError:
                    pass
                self._require_running()
                if self.workers() == 0:
                    no_workers_since = no_workers_since or time.monotonic()
                    if time.monotonic() - no_workers_since > self.no_worker_timeout:
                        raise ExecutorError(
                            f"the Dask cluster at {self.address} has had no workers for {self.no_worker_timeout:g} s; "
                            "start workers (`dask worker ADDRESS`); finished records are kept, continue with --resume")
                else:
                    no_workers_since = None
            self._require_running()
            return self.client.gather(futures)
        except KilledWorker as exc:
            raise self._killed(exc, futures, tasks) from None
        except KeyboardInterrupt:
            if self.client.status == "running":
                self.client.cancel(futures)
            raise

    def _lost(self, exc) -> ExecutorError:
        if isinstance(exc, CancelledError):  # the futures may learn of a lost scheduler before the client does
            deadline = time.monotonic() + 2.0
            while self.client.status == "running" and time.monotonic() < deadline:
                time.sleep(0.05)
        if isinstance(exc, CancelledError) and self.client.status == "running":
            return ExecutorError(f"the Dask cluster at {self.address} cancelled this batch's tasks (another client "
                                 "cancelled them, or the cluster is restarting); finished records are kept, "
                                 "continue with --resume")
        detail = f": {_reason(exc)}" if exc is not None else ""
        return ExecutorError(f"lost the Dask scheduler at {self.address}{detail}; finished records are kept, "
                             "continue with --resume once a cluster is back")

    def _killed(self, exc: KilledWorker, futures, tasks) -> ExecutorError:
        task = next((t for f, t in zip(futures, tasks) if f.key == exc.task), None) or max(tasks, key=len)
        biggest = max(task, key=estimated_bytes)
        deaths = exc.allowed_failures + 1
        limit = getattr(exc.last_worker, "memory_limit", None)
        limit_text = f" with a worker memory limit of {limit / 2**20:,.0f} MB" if limit else ""
        return ExecutorError(
            f"Dask workers died {deaths} time{'s' if deaths > 1 else ''} running a task of {len(task)} run(s), the "
            f"largest h={biggest.hidden}, s={biggest.seq_length} (about {estimated_bytes(biggest) / 2**20:,.0f} MB a "
            f"run, plus the text){limit_text}: most likely out of memory; give workers more memory "
            "(dask worker --memory-limit) or keep h smaller")


_by_client: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


#: Tasks the scheduler hands a worker thread at a time. Dask's default (1.1, rounded up: 2 for a
#: one-thread worker) queues a second task behind the running one; a rung's second-costliest
#: network then waits behind its costliest while the other worker runs out of work.
WORKER_SATURATION = 1.0


def _local_cluster(workers: int) -> LocalCluster:
    # No dashboard; the scheduler's HTTP server (always started) on a free port, so a second
    # cluster on the machine does not warn that port 8787 is taken.
    with dask.config.set({"distributed.scheduler.worker-saturation": WORKER_SATURATION}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                            scheduler_kwargs=dict(dashboard_address="127.0.0.1:0"), silence_logs=logging.ERROR)


def _reason(exc) -> str:
    """One line about ``exc`` (distributed's messages run over several lines)."""
    if isinstance(exc, CancelledError):
        return "the connection closed and the batch's tasks were cancelled"
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
