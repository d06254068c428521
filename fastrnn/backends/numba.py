"""The ``numba`` backend: :mod:`fastrnn.backends._numba_kernel`, compiled on first use and cached on disk."""

from __future__ import annotations

import contextlib
import threading
from typing import Sequence

import numba
import numpy as np

from ..executors import run_shared
from ..model import STATUS_OK, TrainState, parameter_count
from . import _numba_kernel
from ._base import (
    PARALLEL_DRAW_MIN_WEIGHTS,
    Backend,
    KernelResult,
    RunSpec,
    check_data,
    chunk_steps,
    longest_first,
    step_cost,
)


class NumbaBackend(Backend):
    """Releases the GIL; a batch of runs is packed and trained in one call per chunk, its runs
    spread over Numba's threads, so the Python work is paid per batch and there is no hand-off
    to Python threads."""

    name = "numba"
    releases_gil = True

    def version(self) -> str:
        return f"numba {numba.__version__}"

    def _kernel_train_steps(self, data, state, n_steps):
        return KernelResult(*_numba_kernel.train_steps(
            data, state.hidden, state.vocab_size, state.seq_length, state.learning_rate, n_steps,
            state.params, state.memory, state.hprev, state.position, state.smooth_loss,
        ))

    def _kernel_loss_and_gradients(self, params, hidden, vocab_size, data, start, seq_length, hprev):
        return _numba_kernel.loss_and_gradients(params, hidden, vocab_size, data, start, seq_length, hprev)

    def _kernel_heldout_loss(self, params, hidden, vocab_size, data):
        return _numba_kernel.heldout_loss(params, hidden, vocab_size, data, len(data))

    def threading(self) -> str:
        return "Numba threads across runs (prange), GIL released"

    def train_fresh(self, data, specs: Sequence[RunSpec], threads=None, cancel=None) -> list[TrainState]:
        """Draw every run's initial weights, then train them all in packed batches on Numba's threads.

        Large draws are spread over the thread pool (numpy's legacy generator releases the
        GIL); small ones cost less than handing them to another thread. Each run is trained by
        :func:`~fastrnn.backends._numba_kernel.train_steps` from its own seed, so the results
        equal training it alone, whatever the threads and the batch.
        """
        threads = self._usable_threads(threads)
        specs = list(specs)
        if specs:
            check_data(data, max(spec.seq_length for spec in specs))
        states: list = [None] * len(specs)

        def draw(k):
            states[k] = specs[k].new_state()

        weights = sum(parameter_count(spec.hidden, spec.vocab_size) for spec in specs)
        run_shared(draw, range(len(specs)), threads if weights >= PARALLEL_DRAW_MIN_WEIGHTS else 1, cancel)
        _train_packed(data, states, [spec.steps for spec in specs], threads, cancel)
        return states

    def train_many(self, data, states: Sequence[TrainState], n_steps: int, threads=None, cancel=None) -> None:
        """Advance every state by ``n_steps`` in packed batches, as :meth:`train_fresh` trains."""
        threads = self._usable_threads(threads)
        runs = [s for s in states if s.status == STATUS_OK] if n_steps > 0 else []
        for s in runs:
            self.check_state(s)
            check_data(data, s.seq_length)
        _train_packed(data, runs, [n_steps] * len(runs), threads, cancel)


def _train_packed(data, states: Sequence[TrainState], steps: Sequence[int], threads: int,
                  cancel: threading.Event | None) -> None:
    """Train ``states`` (checked, healthy) by ``steps``, one packed batch per dtype, longest runs first.

    A run with no steps is left as it is, as :meth:`Backend.train_steps` leaves it.
    """
    runs = [k for k in range(len(states)) if steps[k] > 0]
    costs = [steps[k] * step_cost(states[k].hidden, states[k].seq_length, states[k].vocab_size) for k in runs]
    groups: dict[np.dtype, list[int]] = {}
    for order in longest_first(costs):  # dynamic scheduling hands the runs out in this order
        groups.setdefault(states[runs[order]].params.dtype, []).append(runs[order])
    for group in groups.values():
        _PackedRuns([states[k] for k in group], [steps[k] for k in group]).run(data, threads, cancel)


#: Bytes each packed run's arrays are aligned to (a cache line), as if each had its own buffer:
#: a run's vector loads then never straddle a line shared with its neighbour.
ALIGN = 64


def _aligned_offsets(sizes, dtype) -> np.ndarray:
    """Start offsets (and the end) of consecutive arrays of ``sizes``, each on an ALIGN boundary."""
    step = ALIGN // np.dtype(dtype).itemsize
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum([-(-size // step) * step for size in sizes], out=offsets[1:])
    return offsets


def _pack(arrays, offsets) -> np.ndarray:
    """``arrays`` at ``offsets`` in one ALIGN-aligned buffer (the gaps zero)."""
    dtype = arrays[0].dtype
    raw = np.zeros(int(offsets[-1]) + ALIGN // dtype.itemsize, dtype=dtype)
    start = (-raw.ctypes.data % ALIGN) // dtype.itemsize
    packed = raw[start:start + int(offsets[-1])]
    for array, a in zip(arrays, offsets[:-1]):
        packed[a:a + array.size] = array
    return packed


#: Numba's fallback threading layer (workqueue, when neither TBB nor OpenMP loads) aborts the
#: process if two threads launch parallel kernels at once; the first launch, which picks the
#: layer, and every launch on workqueue are therefore one at a time.
_WORKQUEUE_LOCK = threading.Lock()


def _launch_guard():
    try:
        threadsafe = numba.threading_layer() != "workqueue"
    except ValueError:  # no parallel kernel has run yet: the layer is not chosen
        threadsafe = False
    return contextlib.nullcontext() if threadsafe else _WORKQUEUE_LOCK


class _PackedRuns:
    """Runs of one dtype packed into the flat buffers of ``train_batch``, trained chunk by chunk.

    Each call advances every unfinished run by its chunk (about ``CHUNK_COST`` multiply-adds), so
    the calling thread returns to Python several times a second and a Ctrl-C, or ``cancel``, is
    honoured; continuing runs in chunks is bit-identical to one call.
    """

    def __init__(self, runs: Sequence[TrainState], steps: Sequence[int]):
        self.runs = runs
        R = len(runs)
        self.H = np.array([s.hidden for s in runs], dtype=np.int64)
        self.V = np.array([s.vocab_size for s in runs], dtype=np.int64)
        self.S = np.array([s.seq_length for s in runs], dtype=np.int64)
        self.lr = np.array([s.learning_rate for s in runs], dtype=np.float64)
        self.remaining = np.array(steps, dtype=np.int64)
        self.chunk = np.array([chunk_steps(s.hidden, s.seq_length, s.vocab_size) for s in runs], dtype=np.int64)
        dtype = runs[0].params.dtype
        self.param_offsets = _aligned_offsets([s.params.size for s in runs], dtype)
        self.hprev_offsets = _aligned_offsets(self.H, dtype)
        self.params = _pack([s.params for s in runs], self.param_offsets)
        self.memory = _pack([s.memory for s in runs], self.param_offsets)
        self.hprev = _pack([s.hprev for s in runs], self.hprev_offsets)
        self.position = np.array([s.position for s in runs], dtype=np.int64)
        self.smooth = np.array([s.smooth_loss for s in runs], dtype=np.float64)
        self.last = np.array([s.last_loss for s in runs], dtype=np.float64)
        self.done = np.zeros(R, dtype=np.int64)
        self.status = np.full(R, STATUS_OK, dtype=np.int64)

    def run(self, data, threads: int, cancel) -> None:
        try:
            while (self.remaining > 0).any() and not (cancel is not None and cancel.is_set()):
                self._call(data, threads)
        finally:
            self._write_back()

    def _call(self, data, threads: int) -> None:
        steps = np.minimum(self.chunk, self.remaining)
        last = np.empty_like(self.last)
        done = np.zeros_like(self.done)
        status = np.full_like(self.status, STATUS_OK)
        args = (data, self.H, self.V, self.S, self.lr, steps, self.params, self.memory, self.param_offsets,
                self.hprev, self.hprev_offsets, self.position, self.smooth, last, done, status)
        threads = min(threads, int((steps > 0).sum()), numba.config.NUMBA_NUM_THREADS)
        if threads > 1:
            numba.set_num_threads(threads)  # this calling thread's setting only
            with numba.parallel_chunksize(1), _launch_guard():  # one run at a time to whichever thread is free
                _numba_kernel.train_batch_parallel(*args)
        else:
            _numba_kernel.train_batch(*args)
        ran = steps > 0
        self.last[ran] = last[ran]
        self.done += done
        self.status[ran] = status[ran]
        # A run that diverged is finished; one that did not run had nothing left.
        self.remaining = np.where(ran & (status == STATUS_OK), self.remaining - steps, 0)

    def _write_back(self) -> None:
        for k, s in enumerate(self.runs):
            a, h = self.param_offsets[k], self.hprev_offsets[k]
            s.params[...] = self.params[a:a + s.params.size]
            s.memory[...] = self.memory[a:a + s.memory.size]
            s.hprev[...] = self.hprev[h:h + s.hidden]
            Backend.write_back(s, KernelResult(self.position[k], self.smooth[k], self.last[k], self.done[k], self.status[k]))
