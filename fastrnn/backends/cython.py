"""The ``cython`` backend: ``fastrnn.backends._rnn_cython``, built from ``ext/_rnn_cython.pyx`` by setup.py.

Importing this module raises ImportError when the extension is not built;
:func:`fastrnn.backends.get_backend` turns that into :class:`BackendUnavailable` saying how to build it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..executors import run_shared
from ..model import STATUS_OK, TrainState, parameter_count
from . import _rnn_cython
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


class CythonBackend(Backend):
    """Compiled ahead of time; releases the GIL; a batch of runs trains in OpenMP calls."""

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

    def train_fresh(self, data, specs: Sequence[RunSpec], threads=None, cancel=None) -> list[TrainState]:
        """Draw every run's initial weights, then train them all in OpenMP batches.

        Large draws are spread over the thread pool (numpy's legacy generator releases the
        GIL); small ones cost less than handing them to another thread.
        """
        threads = self._usable_threads(threads)
        states: list = [None] * len(specs)

        def draw(k):
            states[k] = specs[k].new_state()

        weights = sum(parameter_count(spec.hidden, spec.vocab_size) for spec in specs)
        run_shared(draw, range(len(specs)), threads if weights >= PARALLEL_DRAW_MIN_WEIGHTS else 1, cancel)
        self._train_batches(data, states, [spec.steps for spec in specs], threads, cancel)
        return states

    def train_many(self, data, states: Sequence[TrainState], n_steps: int, threads=None, cancel=None) -> None:
        """Advance every state by ``n_steps`` in OpenMP batches on ``threads`` threads.

        Each run is computed by one thread from start to finish, so the results do not depend
        on ``threads`` and equal calling :meth:`train_steps` run by run.
        """
        self._train_batches(data, states, [n_steps] * len(states), self._usable_threads(threads), cancel)

    def _train_batches(self, data, states, steps, threads, cancel) -> None:
        runs = [k for k, s in enumerate(states) if s.status == STATUS_OK and steps[k] > 0]
        for s in (states[k] for k in runs):
            self.check_state(s)
            check_data(data, s.seq_length)
        groups: dict[np.dtype, list[int]] = {}
        # Longest runs first: dynamic scheduling hands them out in this order.
        costs = [steps[k] * step_cost(states[k].hidden, states[k].seq_length, states[k].vocab_size) for k in runs]
        for order in longest_first(costs):
            groups.setdefault(states[runs[order]].dtype, []).append(runs[order])
        for group in groups.values():
            _OpenMPBatch(data, [states[k] for k in group], [steps[k] for k in group]).run(threads, cancel)


class _OpenMPBatch:
    """Runs of one dtype packed into the flat buffers of ``train_batch``, trained chunk by chunk.

    Each call advances every unfinished run by its chunk (about ``CHUNK_COST`` multiply-adds), so
    the calling thread returns to Python several times a second and a Ctrl-C, or ``cancel``, is
    honoured; continuing runs in chunks is bit-identical to one call.
    """

    def __init__(self, data, runs: Sequence[TrainState], steps: Sequence[int]):
        self.data, self.runs = data, runs
        R = len(runs)
        self.H = np.array([s.hidden for s in runs], dtype=np.int64)
        self.V = np.array([s.vocab_size for s in runs], dtype=np.int64)
        self.S = np.array([s.seq_length for s in runs], dtype=np.int64)
        self.lr = np.array([s.learning_rate for s in runs], dtype=np.float64)
        self.remaining = np.array(steps, dtype=np.int64)
        self.chunk = np.array([chunk_steps(s.hidden, s.seq_length, s.vocab_size) for s in runs], dtype=np.int64)
        self.param_offsets = np.zeros(R + 1, dtype=np.int64)
        np.cumsum([s.params.size for s in runs], out=self.param_offsets[1:])
        self.hprev_offsets = np.zeros(R + 1, dtype=np.int64)
        np.cumsum(self.H, out=self.hprev_offsets[1:])
        self.params = np.concatenate([s.params for s in runs])
        self.memory = np.concatenate([s.memory for s in runs])
        self.hprev = np.concatenate([s.hprev for s in runs])
        self.position = np.array([s.position for s in runs], dtype=np.int64)
        self.smooth = np.array([s.smooth_loss for s in runs], dtype=np.float64)
        self.last = np.array([s.last_loss for s in runs], dtype=np.float64)
        self.done = np.zeros(R, dtype=np.int64)
        self.status = np.full(R, STATUS_OK, dtype=np.int64)

    def run(self, threads: int, cancel) -> None:
        try:
            while (self.remaining > 0).any() and not (cancel is not None and cancel.is_set()):
                self._call(threads)
        finally:
            self._write_back()

    def _call(self, threads: int) -> None:
        active = (self.remaining > 0) & (self.status == STATUS_OK)
        steps = np.where(active, np.minimum(self.chunk, self.remaining), 0)
        last = np.empty_like(self.last)
        done = np.empty_like(self.done)
        status = np.empty_like(self.status)
        _rnn_cython.train_batch(
            self.data, self.H, self.V, self.S, self.lr, steps, self.params, self.memory, self.param_offsets,
            self.hprev, self.hprev_offsets, self.position, self.smooth, last, done, status,
            threads=min(threads, int(active.sum())),
        )
        ran = steps > 0
        self.last[ran] = last[ran]
        self.done += np.where(ran, done, 0)
        self.status[ran] = status[ran]
        # A run that diverged is finished; one that did not run had nothing left.
        self.remaining = np.where(ran & (status == STATUS_OK), self.remaining - steps, 0)

    def _write_back(self) -> None:
        for k, s in enumerate(self.runs):
            a, b = self.param_offsets[k], self.param_offsets[k + 1]
            s.params[...] = self.params[a:b]
            s.memory[...] = self.memory[a:b]
            s.hprev = self.hprev[self.hprev_offsets[k]:self.hprev_offsets[k + 1]].copy()
            Backend.write_back(s, KernelResult(self.position[k], self.smooth[k], self.last[k], self.done[k], self.status[k]))
