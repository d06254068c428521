"""The Cython backend: ``fastrnn._rnn_cython`` (built from ``ext/_rnn_cython.pyx`` by setup.py).

Importing this module raises ImportError when the extension is not built;
:func:`fastrnn.backends.get_backend` turns that into :class:`BackendUnavailable`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import _rnn_cython
from .backends import Backend, _run_cost, default_threads
from .model import STATUS_OK, TrainState


def _float_buffer(array: np.ndarray, name: str) -> np.ndarray:
    if not (isinstance(array, np.ndarray) and array.dtype == np.float64 and array.flags.c_contiguous and array.flags.writeable):
        raise TypeError(f"state.{name} must be a writable C-contiguous float64 array")
    return array


class CythonBackend(Backend):
    """Compiled ahead of time; releases the GIL; ``train_many`` runs all states in one OpenMP call."""

    name = "cython"
    releases_gil = True

    def version(self) -> str:
        openmp = "on" if _rnn_cython.openmp_enabled() else "off"
        return f"Cython kernel (built with Cython {_rnn_cython.CYTHON_VERSION}, OpenMP {openmp})"

    def threading(self) -> str:
        if _rnn_cython.openmp_enabled():
            return "OpenMP threads across runs, GIL released"
        return "single thread (built without OpenMP), GIL released"

    def train_steps(self, data, state: TrainState, n_steps: int) -> None:
        if state.status != STATUS_OK or n_steps <= 0:
            return
        state.hprev = np.ascontiguousarray(state.hprev, dtype=np.float64)
        position, smooth, last, done, status = _rnn_cython.train_steps(
            data, state.hidden, state.vocab_size, state.seq_length, state.learning_rate, n_steps,
            _float_buffer(state.params, "params"), _float_buffer(state.memory, "memory"),
            state.hprev, state.position, state.smooth_loss,
        )
        state.position, state.smooth_loss, state.last_loss = int(position), float(smooth), float(last)
        state.steps += int(done)
        state.status = int(status)

    def loss_and_gradients(self, params, hidden, vocab_size, data, start, seq_length, hprev):
        loss, grads, h_last = _rnn_cython.loss_and_gradients(
            np.ascontiguousarray(params, dtype=np.float64), hidden, vocab_size, data, start, seq_length,
            np.ascontiguousarray(hprev, dtype=np.float64),
        )
        return float(loss), grads, h_last

    def train_many(self, data, states: Sequence[TrainState], n_steps: int, threads: int | None = None) -> None:
        """Advance every state by ``n_steps`` in one ``train_batch`` call on ``threads`` OpenMP threads.

        Each run is computed by one thread from start to finish, so the results do not depend
        on ``threads`` and equal calling :meth:`train_steps` run by run.
        """
        threads = default_threads() if threads is None else threads
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if n_steps <= 0:
            return
        # Longest runs first (dynamic scheduling hands them out in this order).
        runs = sorted((s for s in states if s.status == STATUS_OK), key=lambda s: -_run_cost(s))
        if not runs:
            return
        for s in runs:
            _float_buffer(s.params, "params")
            _float_buffer(s.memory, "memory")
        R = len(runs)
        H = np.array([s.hidden for s in runs], dtype=np.int64)
        V = np.array([s.vocab_size for s in runs], dtype=np.int64)
        S = np.array([s.seq_length for s in runs], dtype=np.int64)
        lr = np.array([s.learning_rate for s in runs], dtype=np.float64)
        steps = np.full(R, n_steps, dtype=np.int64)
        param_offsets = np.zeros(R + 1, dtype=np.int64)
        np.cumsum([s.params.size for s in runs], out=param_offsets[1:])
        hprev_offsets = np.zeros(R + 1, dtype=np.int64)
        np.cumsum(H, out=hprev_offsets[1:])
        params = np.concatenate([s.params for s in runs])
        memory = np.concatenate([s.memory for s in runs])
        hprev = np.concatenate([np.asarray(s.hprev, dtype=np.float64).ravel() for s in runs])
        position = np.array([s.position for s in runs], dtype=np.int64)
        smooth = np.array([s.smooth_loss for s in runs], dtype=np.float64)
        last = np.empty(R)
        done = np.empty(R, dtype=np.int64)
        status = np.empty(R, dtype=np.int64)
        _rnn_cython.train_batch(
            data, H, V, S, lr, steps, params, memory, param_offsets, hprev, hprev_offsets,
            position, smooth, last, done, status, threads=min(threads, R),
        )
        for k, s in enumerate(runs):
            a, b = param_offsets[k], param_offsets[k + 1]
            s.params[...] = params[a:b]
            s.memory[...] = memory[a:b]
            s.hprev = hprev[hprev_offsets[k]:hprev_offsets[k + 1]].copy()
            s.position = int(position[k])
            s.smooth_loss = float(smooth[k])
            s.last_loss = float(last[k])
            s.steps += int(done[k])
            s.status = int(status[k])
