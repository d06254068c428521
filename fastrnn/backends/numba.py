"""The ``numba`` backend: :mod:`fastrnn.backends._numba_kernel`, compiled on first use and cached on disk."""

from __future__ import annotations

import contextlib
import threading

import numba

from . import _numba_kernel
from ._base import KernelResult
from ._packed import PackedBackend


class NumbaBackend(PackedBackend):
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

    def _kernel_train_batch(self, args, threads):
        threads = min(threads, numba.config.NUMBA_NUM_THREADS)
        if threads > 1:
            numba.set_num_threads(threads)  # this calling thread's setting only
            with numba.parallel_chunksize(1), _launch_guard():  # one run at a time to whichever thread is free
                _numba_kernel.train_batch_parallel(*args)
        else:
            _numba_kernel.train_batch(*args)


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
