"""The ``numba`` backend: :mod:`fastrnn.backends._numba_kernel`, compiled on first use and cached on disk."""

from __future__ import annotations

import numba

from . import _numba_kernel
from ._base import Backend, KernelResult


class NumbaBackend(Backend):
    """Releases the GIL, so a batch of runs trains on the thread pool, one run per task."""

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
