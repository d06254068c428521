"""How a batch of training runs is computed: the seam between the objective and the machines.

The objective hands an executor a list of :class:`~fastrnn.backends.RunSpec` and gets back one
:class:`RunOutcome` per spec, in order. Each run is computed start to finish by one worker from
its own seed, so the outcomes do not depend on the executor, the number of workers, or which
runs share a batch.

``threads`` (:class:`ThreadExecutor`, the default) trains on this machine's cores: the numba
backend in packed `prange` calls on Numba's threads, the cython backend in OpenMP calls.
``dask`` (:class:`fastrnn.dask_executor.DaskExecutor`, the ``fastrnn[dask]`` extra) sends the runs
to the workers of a Dask cluster; its module is imported only when asked for, so fastrnn never
needs dask otherwise.
"""

from __future__ import annotations

import functools
import importlib
import numbers
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple, Sequence

if TYPE_CHECKING:  # imported for annotations only: backends import this module
    from .backends import Backend, RunSpec
    from .model import TrainState


class ExecutorError(RuntimeError):
    """An executor cannot compute a batch (its cluster is gone, a worker keeps dying, ...).

    The message says what happened and what to do; nothing of the batch is kept.
    """


class ExecutorUnavailable(ExecutorError):
    """An executor was asked for whose optional dependencies are not installed."""


class RunOutcome(NamedTuple):
    """What the objective keeps of a finished run (small, so it travels cheaply between machines)."""

    smooth_loss: float
    last_loss: float
    steps: int
    status: int
    #: Mean cross-entropy per character (nats) on held-out text, when the batch was scored.
    heldout_loss: float | None = None

    @classmethod
    def of(cls, state: "TrainState", heldout_loss: float | None = None) -> "RunOutcome":
        return cls(float(state.smooth_loss), float(state.last_loss), int(state.steps), int(state.status), heldout_loss)


class ThreadExecutor:
    """Runs every batch on this process's threads (``threads``: all cores by default)."""

    name = "threads"

    def __init__(self, threads: int | None = None):
        self.threads = check_threads(threads)

    def run(self, backend: "Backend", data, specs: Sequence["RunSpec"], heldout=None) -> list[RunOutcome]:
        """Train every spec (and score it on ``heldout`` text, if given); a Ctrl-C stops the batch
        within a fraction of a second."""
        cancel = threading.Event()
        try:
            return backend.run_specs(data, list(specs), threads=self.threads, cancel=cancel, heldout=heldout)
        except BaseException:
            cancel.set()
            raise

    def describe(self) -> dict:
        return dict(executor=self.name, threads=self.threads)

    def close(self) -> None:
        pass


EXECUTORS = ("threads", "dask")
DASK_INSTALL_HINT = "pip install 'fastrnn[dask]'"


def make_executor(executor="threads", *, threads: int | None = None, scheduler: str | None = None):
    """An executor from its name (``scheduler``: the Dask scheduler's address for ``dask``), a
    ``distributed.Client`` (its cluster runs the batches), or the executor object itself."""
    if hasattr(executor, "run") and hasattr(executor, "name"):
        return executor
    if scheduler is not None and executor != "dask":
        raise ValueError(f"scheduler={scheduler!r} is for the dask executor; pass executor='dask' with it")
    if executor == "threads":
        return ThreadExecutor(threads)
    if executor == "dask":
        return _dask_module().DaskExecutor(scheduler=scheduler)
    if type(executor).__name__ == "Client":  # a distributed.Client (not imported: dask is optional)
        return _dask_module().DaskExecutor.for_client(executor)
    raise ValueError(f"unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}, or a distributed.Client")


def dask_executor_class():
    """:class:`fastrnn.dask_executor.DaskExecutor`, or ExecutorUnavailable saying how to install it."""
    return _dask_module().DaskExecutor


def _dask_module():
    try:
        dask_executor = importlib.import_module(f"{__package__}.dask_executor")
    except ImportError as exc:
        raise ExecutorUnavailable(f"the dask executor needs Dask's distributed package ({exc}); "
                                  f"install it with {DASK_INSTALL_HINT}") from None
    return dask_executor


def default_threads() -> int:
    """All cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_threads(threads: int | None) -> int:
    """``threads`` (all cores when None) as an int, or ValueError naming the rule."""
    threads = default_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    return int(threads)


@functools.lru_cache(maxsize=None)
def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """One long-lived pool per size: starting threads for every batch costs more than a whole
    small training run."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastrnn")


_DONE = object()


def run_shared(task: Callable[[object], None], items: Iterable, threads: int,
               cancel: threading.Event | None = None) -> None:
    """``task(item)`` for every item, on ``threads`` threads including the calling one.

    The threads take items one at a time, in order, from a shared iterator. The caller works
    too, so a batch of two small runs on two threads costs one hand-off, not two. If the
    caller is interrupted (Ctrl-C) or a task raises, ``cancel`` is set, no new item is started,
    and the exception propagates once the other threads have returned.
    """
    items = list(items)
    cancel = cancel if cancel is not None else threading.Event()
    workers = min(threads, len(items)) - 1
    pending = iter(items)
    lock = threading.Lock()

    def drain():
        while not cancel.is_set():
            with lock:
                item = next(pending, _DONE)
            if item is _DONE:
                return
            try:
                task(item)
            except BaseException:
                cancel.set()  # the other threads start nothing new
                raise

    if workers <= 0:
        drain()
        return
    helpers = [_thread_pool(workers).submit(drain) for _ in range(workers)]
    error = None
    try:
        drain()
    except BaseException as exc:
        cancel.set()
        error = exc
    while helpers:  # every helper has returned before this does, even after a Ctrl-C
        try:
            helpers[0].result()
        except KeyboardInterrupt as exc:  # while waiting: wait for the same helper again
            cancel.set()
            error = error or exc
            continue
        except BaseException as exc:
            cancel.set()
            error = error or exc
        helpers.pop(0)
    if error is not None:
        raise error
