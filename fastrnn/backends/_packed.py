"""Backends whose kernel trains a packed batch of runs in one call (numba's and cython's): the
batch's buffers (:class:`PackedRuns`), how they are trained (one call for all, or each run on a
thread of its own, chunk by chunk) and how long each run took on its own thread."""

from __future__ import annotations

import threading
import time
from typing import NamedTuple, Sequence

import numpy as np

from ..network import model
from ..network.model import (
    BAD_ID_MESSAGE,
    STATUS_BAD_ID,
    STATUS_OK,
    TrainState,
    check_dtype,
    initial_smooth_loss,
    parameter_count,
)
from ..running.interrupts import deferred
from ..running.runs import RunOutcome, run_shared
from ._base import (
    PARALLEL_DRAW_MIN_WEIGHTS,
    Backend,
    KernelResult,
    RunSpec,
    _steps_per_run,
    check_data,
    chunk_steps,
    longest_first,
    step_cost,
)

#: Bytes each packed run's arrays are aligned to (a cache line), as if each had its own buffer:
#: a run's vector loads then never straddle a line shared with its neighbour.
ALIGN = 64


class PackedBackend(Backend):
    """A backend whose kernel trains a packed batch of runs in one call (``train_batch``'s
    signature: per-run sizes, rates and steps, concatenated parameters, memories and hidden
    states at offsets), spreading the runs over its own threads. The Python work is then paid
    per batch, not per run, and there is no hand-off to Python threads."""

    #: Bytes each packed run's arrays are aligned to. Runs back to back (0) share a cache line
    #: at each boundary, written every step by two threads.
    pack_align: int = ALIGN

    def _kernel_train_batch(self, args: tuple, threads: int) -> None:
        """Train the packed batch ``args`` on up to ``threads`` threads, one run per thread at a time."""
        raise NotImplementedError

    def train_fresh(self, data, specs: Sequence[RunSpec], threads=None, cancel=None) -> list[TrainState]:
        """Every run drawn into packed buffers and trained there (see :meth:`PackedRuns.from_specs`).

        Each run is trained by the kernel from its own seed, so the results equal training it
        alone, whatever the threads and the batch.
        """
        threads = self._usable_threads(threads)
        specs = list(specs)
        states: list = [None] * len(specs)
        for group, packed in self._train_specs(data, specs, threads, cancel):
            for k, state in zip(group, packed.new_states([specs[k] for k in group])):
                states[k] = state
        return states

    def run_specs(self, data, specs: Sequence[RunSpec], threads=None, cancel=None, heldout=None) -> list[RunOutcome]:
        """As :meth:`Backend.run_specs`, without making states: the outcomes (and held-out scores,
        of views into the buffers) come straight from the packed batch."""
        threads = self._usable_threads(threads)
        specs = list(specs)
        outcomes: list = [None] * len(specs)
        if heldout is not None:
            check_data(heldout, 0)
        for group, packed in self._train_specs(data, specs, threads, cancel):
            scores = self._heldout_scores(packed.networks(range(len(group))), packed.status, heldout, threads, cancel)
            for k, outcome in zip(group, packed.outcomes(scores)):
                outcomes[k] = outcome
        return outcomes

    def _train_specs(self, data, specs: list[RunSpec], threads: int, cancel):
        """(indices into ``specs``, trained :class:`PackedRuns`) per dtype: new runs, longest first."""
        if not specs:
            return []
        check_data(data, max(spec.seq_length for spec in specs))
        batches = []
        for group in self._groups(specs, [spec.steps for spec in specs], lambda spec: check_dtype(spec.dtype), idle=True):
            packed = PackedRuns.from_specs([specs[k] for k in group], self.pack_align, threads, cancel)
            packed.run(self, data, threads, cancel)
            batches.append((group, packed))
        return batches

    def train_many(self, data, states: Sequence[TrainState], n_steps: int | Sequence[int], threads=None,
                   cancel=None) -> np.ndarray:
        """Advance every state by ``n_steps`` (one count for all, or one per state) in packed
        batches, as :meth:`train_fresh` trains. Returns each state's seconds of training on a
        thread of its own (:attr:`PackedRuns.seconds`; NaN where its kernel calls trained other
        states too, 0 for a state that did not train)."""
        threads = self._usable_threads(threads)
        steps = _steps_per_run(n_steps, len(states))
        picked = [k for k, s in enumerate(states) if s.status == STATUS_OK and steps[k] > 0]
        runs, run_steps = [states[k] for k in picked], [steps[k] for k in picked]
        for s in runs:
            self.check_state(s)
            check_data(data, s.seq_length)
        seconds = np.zeros(len(states))
        for group in self._groups(runs, run_steps, lambda s: s.params.dtype):
            packed = PackedRuns.from_states([runs[k] for k in group], [run_steps[k] for k in group], self.pack_align)
            try:
                packed.run(self, data, threads, cancel)
            finally:
                seconds[[picked[k] for k in group]] = packed.seconds
        return seconds

    @staticmethod
    def _groups(runs: Sequence, steps: Sequence[int], dtype_of, idle: bool = False) -> list[list[int]]:
        """Indices of the runs, one list per dtype, each longest first (dynamic scheduling hands
        the runs out in this order). A run with no steps is left out, unless ``idle`` (new runs
        are made even when they train for no steps)."""
        todo = [k for k in range(len(runs)) if idle or steps[k] > 0]
        costs = [steps[k] * step_cost(runs[k].hidden, runs[k].seq_length, runs[k].vocab_size) for k in todo]
        groups: dict = {}
        for order in longest_first(costs):
            groups.setdefault(dtype_of(runs[todo[order]]), []).append(todo[order])
        return list(groups.values())


def _aligned_offsets(sizes, dtype, align: int = ALIGN) -> np.ndarray:
    """Start offsets (and the end) of consecutive arrays of ``sizes``, each on an ``align``-byte boundary."""
    step = max(1, align // np.dtype(dtype).itemsize)
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum([-(-size // step) * step for size in sizes], out=offsets[1:])
    return offsets


def _aligned_zeros(n: int, dtype) -> np.ndarray:
    """``n`` zeros of ``dtype`` starting on an ALIGN-byte boundary."""
    dtype = np.dtype(dtype)
    raw = np.zeros(n + ALIGN // dtype.itemsize, dtype=dtype)
    start = (-raw.ctypes.data % ALIGN) // dtype.itemsize
    return raw[start:start + n]


class PackedRuns:
    """Runs of one dtype packed into the flat buffers of ``train_batch``, trained chunk by chunk.

    Each call advances every unfinished run by its chunk (about ``CHUNK_COST`` multiply-adds), so
    the calling thread returns to Python several times a second and a Ctrl-C, or ``cancel``, is
    honoured; continuing runs in chunks is bit-identical to one call.

    Built from existing states (:meth:`from_states`, written back by :meth:`write_back`) or from
    specs (:meth:`from_specs`): new runs are drawn straight into the buffers and come out as
    outcomes, or as new states, so a small batch pays no per-run allocation and copy twice.
    """

    def __init__(self, hidden, vocab_size, seq_length, learning_rate, steps, dtype, align: int = ALIGN):
        R = len(hidden)
        self.H = np.array(hidden, dtype=np.int64)
        self.V = np.array(vocab_size, dtype=np.int64)
        self.S = np.array(seq_length, dtype=np.int64)
        self.lr = np.array(learning_rate, dtype=np.float64)
        self.remaining = np.array(steps, dtype=np.int64)
        self.chunk = np.array([chunk_steps(h, s, v) for h, s, v in zip(hidden, seq_length, vocab_size)], dtype=np.int64)
        sizes = [parameter_count(h, v) for h, v in zip(hidden, vocab_size)]
        self.param_offsets = _aligned_offsets(sizes, dtype, align)
        self.hprev_offsets = _aligned_offsets(hidden, dtype, align)
        self.params = _aligned_zeros(int(self.param_offsets[-1]), dtype)
        self.memory = _aligned_zeros(int(self.param_offsets[-1]), dtype)
        self.hprev = _aligned_zeros(int(self.hprev_offsets[-1]), dtype)
        self.position = np.zeros(R, dtype=np.int64)
        self.smooth = np.zeros(R, dtype=np.float64)
        self.last = np.full(R, np.nan)
        self.done = np.zeros(R, dtype=np.int64)
        self.status = np.full(R, STATUS_OK, dtype=np.int64)
        #: Seconds each run trained in :meth:`run` on a thread of its own (NaN for a run whose
        #: kernel calls trained other runs too: one call for all, or one thread stepping them all).
        #: On time.monotonic, as the base class times its tasks: the tuners' clock (perf_counter,
        #: which tests replace by one that ticks per call) is not read by the backends.
        self.seconds = np.zeros(R)
        self.runs: Sequence[TrainState] = ()

    @classmethod
    def from_states(cls, runs: Sequence[TrainState], steps: Sequence[int], align: int = ALIGN) -> "PackedRuns":
        """The states' current values, packed; :meth:`write_back` returns the results to them."""
        packed = cls([s.hidden for s in runs], [s.vocab_size for s in runs], [s.seq_length for s in runs],
                     [s.learning_rate for s in runs], steps, runs[0].params.dtype, align)
        packed.runs = runs
        for k, s in enumerate(runs):
            params, memory, hprev = packed.arrays(k)
            params[...] = s.params
            memory[...] = s.memory
            hprev[...] = s.hprev
        packed.position[:] = [s.position for s in runs]
        packed.smooth[:] = [s.smooth_loss for s in runs]
        packed.last[:] = [s.last_loss for s in runs]
        return packed

    @classmethod
    def from_specs(cls, specs: Sequence[RunSpec], align: int = ALIGN, threads: int = 1,
                   cancel: threading.Event | None = None) -> "PackedRuns":
        """New runs of ``specs`` (one dtype), each drawn from its seed into its place in the buffers.

        The state :meth:`RunSpec.new_state` would give: weights from ``RandomState(seed)``,
        zero memory and hidden state, the uniform guess's smooth loss.
        """
        packed = cls([s.hidden for s in specs], [s.vocab_size for s in specs], [s.seq_length for s in specs],
                     [s.learning_rate for s in specs], [s.steps for s in specs], specs[0].dtype, align)
        packed.smooth[:] = [initial_smooth_loss(s.vocab_size, s.seq_length) for s in specs]

        def draw(k):
            spec = specs[k]
            # looked up on the module, so that tests can substitute the weights of new runs
            model.initial_parameters(spec.hidden, spec.vocab_size, spec.seed, spec.dtype, out=packed.arrays(k)[0])

        # numpy's legacy generator releases the GIL while drawing, but a hand-off to another
        # thread costs more than a small draw
        if threads > 1 and packed.param_offsets[-1] >= PARALLEL_DRAW_MIN_WEIGHTS:
            run_shared(draw, range(len(specs)), threads, cancel)
        else:
            for k in range(len(specs)):
                draw(k)
        return packed

    def arrays(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Views of run ``k``'s (params, memory, hprev) in the buffers."""
        a, h = self.param_offsets[k], self.hprev_offsets[k]
        P = parameter_count(int(self.H[k]), int(self.V[k]))
        return self.params[a:a + P], self.memory[a:a + P], self.hprev[h:h + self.H[k]]

    def run(self, backend: "PackedBackend", data, threads: int, cancel) -> None:
        """Train until every run has done its steps (or diverged), or ``cancel`` is set; the
        states of :meth:`from_states` get what was trained even when this raises.

        A batch that one kernel call finishes is one call, its runs spread over the kernel's own
        threads. A longer batch is not called chunk by chunk for all runs at once: each call
        would end at its slowest run's chunk, and chunks of unequal real time (a small network's
        per-character overhead is not in :func:`step_cost`) would idle a thread at every call
        (two networks of equal time took 141% CPU, not 200%). Each thread instead takes a whole
        run, longest first, and trains it chunk by chunk on its own.
        """
        try:
            active = self.remaining > 0
            if threads > 1 and active.sum() > 1 and (self.remaining[active] > self.chunk[active]).any():
                self._run_each(backend, data, threads, cancel)
            else:
                began = time.monotonic()
                self.seconds[active] = np.nan
                while (self.remaining > 0).any() and not (cancel is not None and cancel.is_set()):
                    self._call(backend, data, threads)
                if active.sum() == 1:  # alone in its calls: their time is its own
                    self.seconds[active] = time.monotonic() - began
        finally:
            if self.runs:
                with deferred():
                    self.write_back()

    def _run_each(self, backend: "PackedBackend", data, threads: int, cancel) -> None:
        """Every run on one thread at a time, chunk by chunk (each call writes only run ``k``'s
        slices and entries, so the threads never share an output)."""
        cancel = cancel if cancel is not None else threading.Event()
        todo = [k for k in range(len(self.H)) if self.remaining[k] > 0]
        costs = [int(self.remaining[k]) * step_cost(int(self.H[k]), int(self.S[k]), int(self.V[k])) for k in todo]

        def train(k):
            began = time.monotonic()
            while self.remaining[k] > 0 and not cancel.is_set():
                self._call(backend, data, 1, k)
            self.seconds[k] = time.monotonic() - began

        run_shared(train, [todo[i] for i in longest_first(costs)], threads, cancel)

    def _call(self, backend: "PackedBackend", data, threads: int, run: int | None = None) -> None:
        """One chunk of every unfinished run, or of run ``run`` alone (its one-run views)."""
        window = slice(None) if run is None else slice(run, run + 1)
        offsets = slice(None) if run is None else slice(run, run + 2)
        steps = np.minimum(self.chunk[window], self.remaining[window])
        last = np.empty_like(self.last[window])
        done = np.zeros_like(self.done[window])
        status = np.full_like(self.status[window], STATUS_OK)
        args = (data, self.H[window], self.V[window], self.S[window], self.lr[window], steps, self.params, self.memory,
                self.param_offsets[offsets], self.hprev, self.hprev_offsets[offsets], self.position[window],
                self.smooth[window], last, done, status)
        with deferred():  # a Ctrl-C waits for the kernel's results to be in the books
            backend._kernel_train_batch(args, min(threads, int((steps > 0).sum())))
            bad = status == STATUS_BAD_ID
            status[bad] = STATUS_OK  # trained up to the bad window: keep that, then refuse the data
            ran = steps > 0
            self.last[window][ran] = last[ran]
            self.done[window] += done
            self.status[window][ran] = status[ran]
            # A run that diverged is finished; one that did not run had nothing left.
            self.remaining[window] = np.where(ran & (status == STATUS_OK), self.remaining[window] - steps, 0)
        if bad.any():
            raise ValueError(BAD_ID_MESSAGE)

    def write_back(self) -> None:
        for k, s in enumerate(self.runs):
            params, memory, hprev = self.arrays(k)
            s.params[...] = params
            s.memory[...] = memory
            s.hprev[...] = hprev
            Backend.write_back(s, self._result(k))

    def _result(self, k: int) -> KernelResult:
        return KernelResult(self.position[k], self.smooth[k], self.last[k], self.done[k], self.status[k])

    def new_states(self, specs: Sequence[RunSpec]) -> list[TrainState]:
        """The runs of :meth:`from_specs` as states that own copies of their arrays."""
        states = []
        for k, spec in enumerate(specs):
            params, memory, hprev = self.arrays(k)
            state = TrainState(spec.hidden, spec.seq_length, float(spec.learning_rate), spec.vocab_size, params.copy(),
                               memory.copy(), hprev.copy(), seed=spec.seed)
            Backend.write_back(state, self._result(k))
            states.append(state)
        return states

    def outcomes(self, heldout_losses: Sequence[float | None] | None = None) -> list[RunOutcome]:
        heldout_losses = heldout_losses or [None] * len(self.H)
        return [RunOutcome(float(self.smooth[k]), float(self.last[k]), int(self.done[k]), int(self.status[k]),
                           heldout_losses[k]) for k in range(len(self.H))]

    def networks(self, runs: Sequence[int]) -> list["_PackedNetwork"]:
        """Runs ``runs`` as (params, hidden, vocab_size) for scoring, views into the buffers."""
        return [_PackedNetwork(self.arrays(k)[0], int(self.H[k]), int(self.V[k])) for k in runs]


class _PackedNetwork(NamedTuple):
    params: np.ndarray
    hidden: int
    vocab_size: int
