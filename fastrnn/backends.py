"""Training backends: one interface over the NumPy reference and the compiled kernels.

Importing this module never fails because a backend is missing: a backend that is not
available raises :class:`BackendUnavailable` with the way to get it when it is asked for.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from .model import STATUS_OK, TrainState, check_dtype, unpack

#: Backends in the order ``fastrnn backends`` lists them.
BACKEND_NAMES = ("numpy", "numba", "cython")
DEFAULT_BACKEND = "numba"


class BackendUnavailable(RuntimeError):
    """A backend was asked for but cannot run here; the message says how to get it."""


def default_threads() -> int:
    """All cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Backend:
    """One way to run min-char-rnn training steps.

    Subclasses implement :meth:`train_steps` and :meth:`loss_and_gradients`; a backend whose
    kernel releases the GIL runs :meth:`train_many` on a thread pool, one whole run per task,
    so results never depend on the number of threads.
    """

    name: str = ""
    releases_gil: bool = False
    #: Precisions the backend trains in.
    dtypes: tuple[str, ...] = ("float64", "float32")

    def version(self) -> str:
        raise NotImplementedError

    def threading(self) -> str:
        return "thread pool, GIL released" if self.releases_gil else "single thread (holds the GIL)"

    def train_steps(self, data: np.ndarray, state: TrainState, n_steps: int) -> None:
        """Advance ``state`` in place by up to ``n_steps`` updates (fewer if it diverges)."""
        raise NotImplementedError

    def loss_and_gradients(self, params, hidden, vocab_size, data, start, seq_length, hprev):
        """Loss, flat raw gradients and last hidden state of one sequence starting at ``start``."""
        raise NotImplementedError

    def heldout_loss(self, params, hidden, vocab_size, data) -> float:
        """Summed cross-entropy of reading all of ``data`` from a zero hidden state (forward only;
        NaN or inf when not finite). Unchecked: :func:`fastrnn.scoring.heldout_loss` validates."""
        from . import _reference

        return _reference.heldout_loss(unpack(params, hidden, vocab_size), data)

    def train_fresh(self, data: np.ndarray, specs: Sequence[tuple], n_steps: int, threads: int | None = None) -> list[TrainState]:
        """New runs from ``(hidden, seq_length, learning_rate, vocab_size, seed, dtype)`` specs, trained.

        Each task draws its run's initial weights and trains them, so drawing (numpy's legacy
        generator, about 25 ns a weight, partly without the GIL) overlaps other runs' training
        instead of running before all of them on the calling thread.
        """
        threads = self._check_threads(threads)
        states: list = [None] * len(specs)

        def draw_and_train(k):
            states[k] = _new_state(specs[k])
            self.train_steps(data, states[k], n_steps)

        run_shared(draw_and_train, _longest_first([_spec_cost(spec) for spec in specs]), threads)
        return states

    def train_many(self, data: np.ndarray, states: Sequence[TrainState], n_steps: int, threads: int | None = None) -> None:
        """Advance every state by ``n_steps``, using up to ``threads`` threads."""
        threads = self._check_threads(threads)
        costs = [run_cost(s.hidden, s.seq_length, s.vocab_size) for s in states]
        run_shared(lambda k: self.train_steps(data, states[k], n_steps), _longest_first(costs), threads)

    def _check_threads(self, threads: int | None) -> int:
        threads = default_threads() if threads is None else threads
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        return threads if self.releases_gil else 1


@functools.lru_cache(maxsize=None)
def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """One long-lived pool per size: starting threads for every batch costs more than a whole
    small training run."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastrnn")


def run_shared(task, items, threads: int) -> None:
    """``task(item)`` for every item, on ``threads`` threads including the calling one.

    The threads take items one at a time, in order, from a shared iterator. The caller works
    too, so a batch of two small runs on two threads costs one hand-off, not two.
    """
    items = list(items)
    workers = min(threads, len(items)) - 1
    if workers <= 0:
        for item in items:
            task(item)
        return
    pending = iter(items)
    lock = threading.Lock()

    def drain():
        while True:
            with lock:
                item = next(pending, _DONE)
            if item is _DONE:
                return
            task(item)

    helpers = [_thread_pool(workers).submit(drain) for _ in range(workers)]
    try:
        drain()
    finally:
        for helper in helpers:
            helper.result()


_DONE = object()
#: Below this many weights, drawing a batch's initial weights (about 25 ns each) on the calling
#: thread costs less than handing the work to other threads (about 70 us a hand-off here).
PARALLEL_DRAW_MIN_WEIGHTS = 50_000


def _new_state(spec: tuple) -> TrainState:
    return TrainState.fresh(*spec)


def run_cost(hidden: int, seq_length: int, vocab_size: int) -> int:
    """Multiply-adds of one training step: what to schedule the longest runs first by."""
    return seq_length * (hidden * hidden + hidden * vocab_size)


def _spec_cost(spec: tuple) -> int:
    hidden, seq_length, _, vocab_size = spec[:4]
    return run_cost(hidden, seq_length, vocab_size)


def _longest_first(costs: Sequence[int]) -> list[int]:
    """Indices, costliest first, so the last thread to finish is not left with a big run."""
    return sorted(range(len(costs)), key=lambda k: -costs[k])


class NumpyBackend(Backend):
    """The readable reference (``fastrnn._reference``)."""

    name = "numpy"
    dtypes = ("float64",)

    def version(self) -> str:
        return f"numpy {np.__version__}"

    def train_steps(self, data, state, n_steps):
        from . import _reference

        _reference.train_steps(data, state, n_steps)

    def loss_and_gradients(self, params, hidden, vocab_size, data, start, seq_length, hprev):
        from . import _reference

        weights = unpack(params, hidden, vocab_size)
        inputs = data[start : start + seq_length]
        targets = data[start + 1 : start + seq_length + 1]
        loss, grads, h_last = _reference.loss_and_gradients(weights, inputs, targets, hprev)
        return loss, np.concatenate([g.ravel() for g in grads]), h_last


class NumbaBackend(Backend):
    """``fastrnn._numba_kernel``: compiled on first use and cached on disk."""

    name = "numba"
    releases_gil = True

    def __init__(self):
        try:
            import numba  # noqa: F401
        except ImportError as exc:  # pragma: no cover - numba is a hard dependency
            raise BackendUnavailable(f"the numba backend needs numba: pip install numba ({exc})") from exc

    def version(self) -> str:
        import numba

        return f"numba {numba.__version__}"

    def train_steps(self, data, state, n_steps):
        from . import _numba_kernel

        if state.status != STATUS_OK or n_steps <= 0:
            return
        position, smooth, last, done, status = _numba_kernel.train_steps(
            data, state.hidden, state.vocab_size, state.seq_length, state.learning_rate, n_steps,
            state.params, state.memory, state.hprev, state.position, state.smooth_loss,
        )
        state.position, state.smooth_loss, state.last_loss = int(position), float(smooth), float(last)
        state.steps += int(done)
        state.status = int(status)

    def loss_and_gradients(self, params, hidden, vocab_size, data, start, seq_length, hprev):
        from . import _numba_kernel

        loss, grads, h_last = _numba_kernel.loss_and_gradients(
            params, hidden, vocab_size, data, start, seq_length, np.ascontiguousarray(hprev, dtype=params.dtype)
        )
        return float(loss), grads, h_last

    def heldout_loss(self, params, hidden, vocab_size, data):
        from . import _numba_kernel

        return float(_numba_kernel.heldout_loss(params, hidden, vocab_size, data, len(data)))


def _cython_backend() -> Backend:
    try:
        from ._cython_backend import CythonBackend
    except ImportError as exc:
        raise BackendUnavailable(
            "the cython backend is not built in this installation "
            f"({exc}); build it with `pip install -e .` from a source checkout "
            "(needs a C compiler; Cython and numpy are fetched as build requirements)"
        ) from exc
    return CythonBackend()


_FACTORIES = {"numpy": NumpyBackend, "numba": NumbaBackend, "cython": _cython_backend}
_instances: dict[str, Backend] = {}


def check_backend_dtype(backend: Backend, dtype) -> str:
    """The dtype's name if ``backend`` trains in it, else ValueError saying which backends do."""
    name = check_dtype(dtype).name
    if name not in backend.dtypes:
        raise ValueError(f"the {backend.name} backend trains in {', '.join(backend.dtypes)} only; "
                         f"use the numba or cython backend for {name}")
    return name


def get_backend(name: str | Backend) -> Backend:
    """The backend called ``name``; ValueError for an unknown name, BackendUnavailable if not built."""
    if isinstance(name, Backend):
        return name
    if name not in _FACTORIES:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKEND_NAMES)}")
    if name not in _instances:
        _instances[name] = _FACTORIES[name]()
    return _instances[name]


def backend_report() -> list[dict]:
    """For each backend: name, whether it is available, its threading and version (or why not)."""
    rows = []
    for name in BACKEND_NAMES:
        try:
            backend = get_backend(name)
        except BackendUnavailable as exc:
            rows.append(dict(name=name, available=False, threading="-", version="-", note=str(exc)))
        else:
            rows.append(dict(name=name, available=True, threading=backend.threading(), version=backend.version(), note=""))
    return rows
