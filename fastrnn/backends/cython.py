"""The ``cython`` backend: ``fastrnn.backends._rnn_cython``, built from ``ext/_rnn_cython.pyx`` by setup.py.

Importing this module raises ImportError when the extension is not built;
:func:`fastrnn.backends.get_backend` turns that into :class:`BackendUnavailable` saying how to build it.
"""

from __future__ import annotations

import numpy as np

from . import _rnn_cython
from ._base import KernelResult, longest_first
from ._packed import PackedBackend


class CythonBackend(PackedBackend):
    """Compiled ahead of time; releases the GIL; a packed batch of runs trains in one OpenMP call per chunk."""

    name = "cython"
    releases_gil = True

    def version(self) -> str:
        openmp = "on" if _rnn_cython.openmp_enabled() else "off"
        simd = "on" if _rnn_cython.simd_dispatch_enabled() else "off"
        return (f"Cython kernel (built with Cython {_rnn_cython.CYTHON_VERSION}, OpenMP {openmp}, "
                f"SIMD dispatch {simd}: {_rnn_cython.SIMD_DISPATCH})")

    def threading(self) -> str:
        simd = "AVX2 dispatch on" if _rnn_cython.simd_dispatch_enabled() else "AVX2 dispatch off"
        if _rnn_cython.openmp_enabled():
            return f"OpenMP threads across runs, GIL released ({simd})"
        return f"single thread (built without OpenMP), GIL released ({simd})"

    def _kernel_train_steps(self, data, state, n_steps):
        return KernelResult(*_rnn_cython.train_steps(
            data, state.hidden, state.vocab_size, state.seq_length, float(state.learning_rate), n_steps,
            state.params, state.memory, state.hprev, state.position, state.smooth_loss,
        ))

    def _kernel_loss_and_gradients(self, params, hidden, vocab_size, data, start, seq_length, hprev):
        return _rnn_cython.loss_and_gradients(params, hidden, vocab_size, data, start, seq_length, hprev)

    def _kernel_heldout_loss(self, params, hidden, vocab_size, data):
        return _rnn_cython.heldout_loss(params, hidden, vocab_size, data, len(data))

    def _kernel_heldout_totals(self, networks, data, totals, threads, cancel) -> None:
        """Each precision's networks in one OpenMP call (each thread writes only its own total)."""
        order = longest_first([net.params.size for net in networks])
        for dtype in (np.float64, np.float32):
            group = [k for k in order if networks[k].params.dtype == dtype]
            if not group:
                continue
            offsets = np.zeros(len(group) + 1, dtype=np.int64)
            np.cumsum([networks[k].params.size for k in group], out=offsets[1:])
            losses = np.empty(len(group))
            _rnn_cython.heldout_loss_batch(
                data, len(data),
                np.array([networks[k].hidden for k in group], dtype=np.int64),
                np.array([networks[k].vocab_size for k in group], dtype=np.int64),
                np.concatenate([networks[k].params for k in group]), offsets, losses,
                threads=min(threads, len(group)),
            )
            totals[group] = losses

    def _kernel_train_batch(self, args, threads):
        _rnn_cython.train_batch(*args, threads=threads)
