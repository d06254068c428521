"""What every training backend shares: run specs, input validation, write-back (the packed
batches of runs of the compiled backends are in :mod:`fastrnn.backends._packed`).

A backend only calls its kernel (:meth:`Backend._kernel_train_steps`,
:meth:`Backend._kernel_loss_and_gradients`, :meth:`Backend._kernel_heldout_loss`); this base class checks what goes in and writes
what comes out back into the :class:`~fastrnn.network.model.TrainState`, so every backend validates
the same way and none repeats the bookkeeping. A kernel's call and that write-back are one region
that Ctrl-C and SIGTERM do not interrupt (:mod:`fastrnn.running.interrupts`). It imports no
concrete backend (the registry in :mod:`fastrnn.backends` loads them) and nothing above the
backends: what it shares with the executors (:class:`~fastrnn.running.runs.RunOutcome`,
:func:`~fastrnn.running.runs.run_shared`) is in :mod:`fastrnn.running.runs`.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple, Sequence

import numpy as np

from ..network.model import (
    BAD_ID_MESSAGE,
    STATUS_BAD_ID,
    STATUS_OK,
    TrainState,
    parameter_count,
)
from ..running.interrupts import deferred
from ..running.runs import RunOutcome, check_threads, default_threads, run_shared  # noqa: F401 (re-exported)


class BackendUnavailable(RuntimeError):
    """A backend was asked for but cannot run here; the message says how to get it."""


class RunSpec(NamedTuple):
    """One training run, start to finish: the currency between the objective, executors and backends.

    The run draws its weights from ``RandomState(seed)`` as min-char-rnn does and takes
    ``steps`` Adagrad updates, so a spec alone determines its result, wherever it is computed.
    """

    hidden: int
    seq_length: int
    learning_rate: float
    vocab_size: int
    seed: int
    steps: int
    dtype: str = "float64"

    def new_state(self) -> TrainState:
        return TrainState.fresh(self.hidden, self.seq_length, self.learning_rate, self.vocab_size, self.seed, self.dtype)

    @property
    def step_cost(self) -> int:
        return step_cost(self.hidden, self.seq_length, self.vocab_size)

    @property
    def cost(self) -> int:
        """Multiply-adds of the whole run: what schedulers balance and order by."""
        return self.steps * self.step_cost


class KernelResult(NamedTuple):
    """What a training kernel returns besides the arrays it updates in place."""

    position: int
    smooth_loss: float
    last_loss: float
    steps_done: int
    status: int


def step_cost(hidden: int, seq_length: int, vocab_size: int) -> int:
    """Multiply-adds of one training step (forward; the backward is a fixed multiple)."""
    return seq_length * (hidden * hidden + hidden * vocab_size)


#: Multiply-adds a thread trains before it looks whether the batch was cancelled (Ctrl-C): about
#: 0.1 s here, so an interrupt is honoured within a fraction of a second, while the cost of the
#: extra kernel calls (microseconds each) stays far below 0.1%.
CHUNK_COST = 300_000_000


def chunk_steps(hidden: int, seq_length: int, vocab_size: int) -> int:
    """Updates per kernel call such that one call costs about :data:`CHUNK_COST`."""
    return max(1, CHUNK_COST // step_cost(hidden, seq_length, vocab_size))


#: Below this many weights, drawing a batch's initial weights (about 25 ns each) on the calling
#: thread costs less than handing the work to other threads (tens of microseconds a hand-off).
PARALLEL_DRAW_MIN_WEIGHTS = 50_000


def longest_first(costs: Sequence[int]) -> list[int]:
    """Indices, costliest first, so the last thread to finish is not left with a big run."""
    return sorted(range(len(costs)), key=lambda k: -costs[k])


class Backend:
    """One way to run min-char-rnn training steps.

    Subclasses set ``name``, ``dtypes`` and ``releases_gil`` and implement the three kernel hooks
    (training steps, loss and gradients of a window, held-out loss).
    A backend whose kernel releases the GIL trains a batch on a thread pool, one whole run per
    task, so results never depend on the number of threads.
    """

    name: str = ""
    releases_gil: bool = False
    #: Precisions the backend trains in.
    dtypes: tuple[str, ...] = ("float64", "float32")

    # -- what a backend implements ------------------------------------------------------------
    def version(self) -> str:
        raise NotImplementedError

    def threading(self) -> str:
        return "thread pool, GIL released" if self.releases_gil else "single thread (holds the GIL)"

    def _kernel_train_steps(self, data: np.ndarray, state: TrainState, n_steps: int) -> KernelResult:
        """Advance ``state.params``, ``.memory`` and ``.hprev`` in place; return the rest."""
        raise NotImplementedError

    def _kernel_loss_and_gradients(self, params, hidden, vocab_size, data, start, seq_length, hprev):
        """(loss, flat raw gradients, last hidden state) of one window, in the precision of params."""
        raise NotImplementedError

    def _kernel_heldout_loss(self, params, hidden, vocab_size, data) -> float:
        """Summed cross-entropy of reading all of ``data`` from a zero hidden state (forward only;
        NaN or inf when not finite)."""
        raise NotImplementedError

    def _kernel_heldout_totals(self, networks: Sequence, data, totals: np.ndarray, threads: int,
                               cancel) -> None:
        """:meth:`_kernel_heldout_loss` of every network into ``totals``, costliest first on the pool."""
        def score(k):
            net = networks[k]
            with deferred():
                totals[k] = self._kernel_heldout_loss(net.params, net.hidden, net.vocab_size, data)

        run_shared(score, longest_first([net.params.size for net in networks]), threads, cancel)

    # -- the validated public interface ---------------------------------------------------------
    def train_steps(self, data: np.ndarray, state: TrainState, n_steps: int) -> None:
        """Advance ``state`` in place by up to ``n_steps`` updates (fewer if it diverges)."""
        if state.status != STATUS_OK or n_steps <= 0:
            return
        self.check_state(state)
        check_data(data, state.seq_length)
        with deferred():  # a Ctrl-C waits for the kernel's results to be in the state
            result = self._kernel_train_steps(data, state, int(n_steps))
            if result.status == STATUS_BAD_ID:
                self.write_back(state, result._replace(status=STATUS_OK))  # what was trained stays consistent
                raise ValueError(BAD_ID_MESSAGE)
            self.write_back(state, result)

    def loss_and_gradients(self, params, hidden, vocab_size, data, start, seq_length, hprev):
        """Loss, flat raw gradients and last hidden state of one sequence starting at ``start``.

        In the precision of ``params`` (float32 stays float32; anything else is float64).
        """
        params = np.asarray(params)
        dtype = np.float32 if params.dtype == np.float32 else np.float64
        params = np.ascontiguousarray(params, dtype=dtype)
        if params.shape != (parameter_count(hidden, vocab_size),):
            raise ValueError(f"params has shape {params.shape}; H={hidden}, V={vocab_size} needs "
                             f"({parameter_count(hidden, vocab_size)},)")
        check_data(data, seq_length)
        if not 0 <= start <= len(data) - seq_length - 1:
            raise ValueError(f"window [{start}, {start + seq_length + 1}) lies outside data of length {len(data)}")
        hprev = np.ascontiguousarray(hprev, dtype=dtype)
        with deferred():
            loss, grads, h_last = self._kernel_loss_and_gradients(params, hidden, vocab_size, data, start, seq_length,
                                                                  hprev)
        return float(loss), grads, h_last

    def heldout_loss(self, params, hidden, vocab_size, data) -> float:
        """Summed cross-entropy of reading ``data`` from a zero hidden state with these weights.

        Checks only what the kernel needs; :func:`fastrnn.network.scoring.heldout_loss` is the user-facing
        wrapper (means, bits, vocabulary checks).
        """
        params = np.ascontiguousarray(params)
        if params.dtype.name not in self.dtypes:
            raise TypeError(f"the {self.name} backend scores {', '.join(self.dtypes)} weights; got {params.dtype}")
        check_data(data, 0)
        with deferred():
            return float(self._kernel_heldout_loss(params, hidden, vocab_size, data))

    def heldout_totals(self, networks: Sequence, data, threads: int | None = None,
                       cancel: threading.Event | None = None) -> np.ndarray:
        """:meth:`heldout_loss` of every network (anything with params, hidden, vocab_size), in
        parallel; each network is scored by one thread, so the results equal scoring one by one."""
        totals = np.full(len(networks), np.nan)
        for net in networks:
            if net.params.dtype.name not in self.dtypes:
                raise TypeError(f"the {self.name} backend scores {', '.join(self.dtypes)} weights; got {net.params.dtype}")
        check_data(data, 0)
        if networks:
            self._kernel_heldout_totals(list(networks), data, totals, self._usable_threads(threads), cancel)
        return totals

    def run_specs(self, data: np.ndarray, specs: Sequence[RunSpec], threads: int | None = None,
                  cancel: threading.Event | None = None, heldout: np.ndarray | None = None) -> list[RunOutcome]:
        """Train every spec (:meth:`train_fresh`) and, given ``heldout`` text, score each healthy run on it.

        This is the unit of work an executor hands out: what comes back is small
        (:class:`~fastrnn.running.runs.RunOutcome`), whatever the size of the networks.
        """
        if heldout is not None:
            check_data(heldout, 0)
        states = self.train_fresh(data, specs, threads, cancel)
        scores = self._heldout_scores(states, [s.status for s in states], heldout, threads, cancel)
        return [RunOutcome.of(state, score) for state, score in zip(states, scores)]

    def _heldout_scores(self, networks: Sequence, statuses: Sequence[int], heldout, threads, cancel) -> list:
        """Mean held-out loss per character of each healthy network (None for the others, and
        for all when ``heldout`` is None)."""
        scores: list = [None] * len(networks)
        if heldout is not None:
            healthy = [k for k, status in enumerate(statuses) if status == STATUS_OK]
            totals = self.heldout_totals([networks[k] for k in healthy], heldout, threads, cancel)
            for k, total in zip(healthy, totals):
                scores[k] = float(total) / (len(heldout) - 1)
        return scores

    def train_fresh(self, data: np.ndarray, specs: Sequence[RunSpec], threads: int | None = None,
                    cancel: threading.Event | None = None) -> list[TrainState]:
        """New runs from ``specs``, each trained for its ``steps``, on up to ``threads`` threads.

        Each task draws its run's initial weights and trains them, so drawing (numpy's legacy
        generator, about 25 ns a weight, partly without the GIL) overlaps other runs' training
        instead of running before all of them on the calling thread.
        """
        threads = self._usable_threads(threads)
        states: list = [None] * len(specs)

        def draw_and_train(k):
            states[k] = specs[k].new_state()
            self._train_in_chunks(data, states[k], specs[k].steps, cancel)

        self._run_tasks(draw_and_train, [spec.cost for spec in specs], threads, cancel)
        return states

    def train_many(self, data: np.ndarray, states: Sequence[TrainState], n_steps: int | Sequence[int],
                   threads: int | None = None, cancel: threading.Event | None = None) -> np.ndarray:
        """Advance every state by ``n_steps`` (one count for all, or one per state), using up to
        ``threads`` threads. Returns the seconds each state's training took on its own thread
        (here every state is one task; 0 for no steps)."""
        threads = self._usable_threads(threads)
        steps = _steps_per_run(n_steps, len(states))
        costs = [n * step_cost(s.hidden, s.seq_length, s.vocab_size) for n, s in zip(steps, states)]
        seconds = np.zeros(len(states))

        def train(k):
            if steps[k] > 0 and states[k].status == STATUS_OK:
                began = time.monotonic()
                self._train_in_chunks(data, states[k], steps[k], cancel)
                seconds[k] = time.monotonic() - began

        self._run_tasks(train, costs, threads, cancel)
        return seconds

    # -- shared machinery ------------------------------------------------------------------------
    def check_state(self, state: TrainState) -> None:
        """The state's buffers as the kernels need them: writable, C-contiguous, of one trained dtype."""
        params, memory = state.params, state.memory
        for name, array in (("params", params), ("memory", memory)):
            if not (isinstance(array, np.ndarray) and array.flags.c_contiguous and array.flags.writeable):
                raise TypeError(f"state.{name} must be a writable C-contiguous numpy array")
        if params.dtype.name not in self.dtypes:
            raise TypeError(f"the {self.name} backend trains in {', '.join(self.dtypes)}; state.params is {params.dtype}")
        if memory.dtype != params.dtype:
            raise TypeError(f"state.memory is {memory.dtype}, but the parameters are {params.dtype}")
        expected = parameter_count(state.hidden, state.vocab_size)
        if params.shape != (expected,) or memory.shape != (expected,):
            raise ValueError(f"state.params and .memory need {expected} entries for H={state.hidden}, "
                             f"V={state.vocab_size}; got {params.shape} and {memory.shape}")
        if state.position < 0:
            raise ValueError(f"state.position must be >= 0, got {state.position}")
        if not (isinstance(state.hprev, np.ndarray) and state.hprev.dtype == params.dtype
                and state.hprev.flags.c_contiguous and state.hprev.flags.writeable):
            state.hprev = np.array(state.hprev, dtype=params.dtype)
        if state.hprev.shape != (state.hidden,):
            raise ValueError(f"state.hprev has shape {state.hprev.shape}, expected ({state.hidden},)")

    @staticmethod
    def write_back(state: TrainState, result: KernelResult) -> None:
        state.position = int(result.position)
        state.smooth_loss = float(result.smooth_loss)
        state.last_loss = float(result.last_loss)
        state.steps += int(result.steps_done)
        state.status = int(result.status)

    def _train_in_chunks(self, data, state: TrainState, n_steps: int, cancel: threading.Event | None) -> None:
        """``train_steps`` in calls of about :data:`CHUNK_COST`, stopping early once ``cancel`` is set.

        Continuing a run in chunks gives bit-identical results to one call.
        """
        chunk = chunk_steps(state.hidden, state.seq_length, state.vocab_size)
        remaining = n_steps
        while remaining > 0 and state.status == STATUS_OK and not (cancel is not None and cancel.is_set()):
            self.train_steps(data, state, min(chunk, remaining))
            remaining -= chunk

    def _usable_threads(self, threads: int | None) -> int:
        threads = check_threads(threads)
        return threads if self.releases_gil else 1

    @staticmethod
    def _run_tasks(task, costs: Sequence[int], threads: int, cancel: threading.Event | None) -> None:
        run_shared(task, longest_first(costs), threads, cancel)


def _steps_per_run(n_steps, runs: int) -> list[int]:
    """``n_steps`` (one count, or one per run) as a list of ``runs`` counts."""
    if isinstance(n_steps, (int, np.integer)):
        return [int(n_steps)] * runs
    steps = [int(n) for n in n_steps]
    if len(steps) != runs:
        raise ValueError(f"give one step count, or one per run: {len(steps)} counts for {runs} runs")
    return steps


def check_data(data: np.ndarray, seq_length: int) -> None:
    """Encoded text as the kernels read it: a 1-D integer array long enough for one window."""
    if not (isinstance(data, np.ndarray) and data.ndim == 1 and data.dtype.kind in "iu"):
        raise TypeError("data must be a 1-D integer array of character ids (Corpus.data)")
    if len(data) < max(seq_length + 2, 2):
        raise ValueError(f"data has {len(data)} characters; seq_length {seq_length} needs at least {seq_length + 2}")
