"""The Cython backend: ``fastrnn._rnn_cython`` (built from ``ext/_rnn_cython.pyx`` by setup.py).

Importing this module raises ImportError when the extension is not built;
:func:`fastrnn.backends.get_backend` turns that into :class:`BackendUnavailable`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import _rnn_cython
from .backends import PARALLEL_DRAW_MIN_WEIGHTS, Backend, default_threads, run_cost, run_shared
from .model import STATUS_OK, TrainState, parameter_count

_DTYPES = tuple(np.dtype(name) for name in _rnn_cython.DTYPES)


def _float_buffer(array: np.ndarray, name: str, dtype=None) -> np.ndarray:
    """``array`` itself (the kernel updates it in place), checked: writable, C-contiguous,
    float64 or float32 (``dtype`` if given)."""
    if not (isinstance(array, np.ndarray) and array.dtype in _DTYPES and array.flags.c_contiguous
            and array.flags.writeable):
        raise TypeError(f"state.{name} must be a writable C-contiguous float64 or float32 array")
    if dtype is not None and array.dtype != dtype:
        raise TypeError(f"state.{name} is {array.dtype}, but the parameters are {dtype}")
    return array


def _state_buffers(state: TrainState) -> tuple[np.ndarray, np.ndarray]:
    params = _float_buffer(state.params, "params")
    return params, _float_buffer(state.memory, "memory", params.dtype)


class CythonBackend(Backend):
    """Compiled ahead of time; releases the GIL; ``train_many`` runs all states in one OpenMP call."""

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

    def train_steps(self, data, state: TrainState, n_steps: int) -> None:
        if state.status != STATUS_OK or n_steps <= 0:
            return
        params, memory = _state_buffers(state)
        state.hprev = np.ascontiguousarray(state.hprev, dtype=params.dtype)
        position, smooth, last, done, status = _rnn_cython.train_steps(
            data, state.hidden, state.vocab_size, state.seq_length, float(state.learning_rate), n_steps,
            params, memory, state.hprev, state.position, state.smooth_loss,
        )
        state.position, state.smooth_loss, state.last_loss = int(position), float(smooth), float(last)
        state.steps += int(done)
        state.status = int(status)

    def loss_and_gradients(self, params, hidden, vocab_size, data, start, seq_length, hprev):
        """In the precision of ``params`` (float32 stays float32; anything else is float64)."""
        params = np.asarray(params)
        dtype = np.float32 if params.dtype == np.float32 else np.float64
        loss, grads, h_last = _rnn_cython.loss_and_gradients(
            np.ascontiguousarray(params, dtype=dtype), hidden, vocab_size, data, start, seq_length,
            np.ascontiguousarray(hprev, dtype=dtype),
        )
        return float(loss), grads, h_last

    def heldout_loss(self, params, hidden, vocab_size, data):
        return float(_rnn_cython.heldout_loss(params, hidden, vocab_size, data, len(data)))

    def train_fresh(self, data, specs: Sequence[tuple], n_steps: int, threads: int | None = None) -> list[TrainState]:
        """Draw every run's initial weights, then train them all in one OpenMP batch.

        Large draws are spread over the thread pool (numpy's legacy generator releases the
        GIL); small ones cost less than handing them to another thread.
        """
        threads = self._check_threads(threads)
        states: list = [None] * len(specs)

        def draw(k):
            states[k] = TrainState.fresh(*specs[k])

        weights = sum(parameter_count(spec[0], spec[3]) for spec in specs)
        run_shared(draw, range(len(specs)), threads if weights >= PARALLEL_DRAW_MIN_WEIGHTS else 1)
        self.train_many(data, states, n_steps, threads)
        return states

    def train_many(self, data, states: Sequence[TrainState], n_steps: int, threads: int | None = None) -> None:
        """Advance every state by ``n_steps`` in one ``train_batch`` call per dtype on ``threads`` OpenMP threads.

        Each run is computed by one thread from start to finish, so the results do not depend
        on ``threads`` and equal calling :meth:`train_steps` run by run.
        """
        threads = default_threads() if threads is None else threads
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if n_steps <= 0:
            return
        # Longest runs first (dynamic scheduling hands them out in this order).
        runs = sorted((s for s in states if s.status == STATUS_OK), key=lambda s: -run_cost(s.hidden, s.seq_length, s.vocab_size))
        groups: dict[np.dtype, list[TrainState]] = {}
        for s in runs:
            params, _ = _state_buffers(s)
            groups.setdefault(params.dtype, []).append(s)
        for dtype, group in groups.items():
            self._train_batch(data, group, n_steps, threads, dtype)

    @staticmethod
    def _train_batch(data, runs: Sequence[TrainState], n_steps: int, threads: int, dtype: np.dtype) -> None:
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
        hprev = np.concatenate([np.asarray(s.hprev, dtype=dtype).ravel() for s in runs])
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
