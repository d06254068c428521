"""Training runs as backends and executors exchange them, below both: what a finished run comes
back as (:class:`RunOutcome`), the thread plumbing that computes a batch of runs on this machine
(:func:`run_shared`, :func:`check_threads`), and the error an executor raises when it cannot.

:mod:`fastrnn.backends` and :mod:`fastrnn.running.executors` (and the dask executor) import this module;
it imports no other module of the package (only fastrnn.network.model, for type checking), so none of them
imports another that imports it back.
"""

from __future__ import annotations

import functools
import numbers
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple

if TYPE_CHECKING:
    from ..network.model import TrainState


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
