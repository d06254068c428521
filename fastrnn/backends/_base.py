"""What every training backend shares: run specs, input validation, write-back, batches of runs.

A backend only calls its kernel (:meth:`Backend._kernel_train_steps`,
:meth:`Backend._kernel_loss_and_gradients`, :meth:`Backend._kernel_heldout_loss`); this base class checks what goes in and writes
what comes out back into the :class:`~fastrnn.network.model.TrainState`, so every backend validates
the same way and none repeats the bookkeeping. It imports no concrete backend (the registry in
:mod:`fastrnn.backends` loads them) and nothing above the backends: what it shares with the
executors (:class:`~fastrnn.running.runs.RunOutcome`, :func:`~fastrnn.running.runs.run_shared`) is in :mod:`fastrnn.running.runs`.
"""

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
            totals[k] = self._kernel_heldout_loss(net.params, net.hidden, net.vocab_size, data)

        run_shared(score, longest_first([net.params.size for net in networks]), threads, cancel)

    # -- the validated public interface ---------------------------------------------------------
    def train_steps(self, data: np.ndarray, state: TrainState, n_steps: int) -> None:
        """Advance ``state`` in place by up to ``n_steps`` updates (fewer if it diverges)."""
        if state.status != STATUS_OK or n_steps <= 0:
            return
        self.check_state(state)
        check_data(data, state.seq_length)
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
        loss, grads, h_last = self._kernel_loss_and_gradients(params, hidden, vocab_size, data, start, seq_length, hprev)
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
                began = time.perf_counter()
                self._train_in_chunks(data, states[k], steps[k], cancel)
                seconds[k] = time.perf_counter() - began

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
                began = time.perf_counter()
                self.seconds[active] = np.nan
                while (self.remaining > 0).any() and not (cancel is not None and cancel.is_set()):
                    self._call(backend, data, threads)
                if active.sum() == 1:  # alone in its calls: their time is its own
                    self.seconds[active] = time.perf_counter() - began
        finally:
            if self.runs:
                self.write_back()

    def _run_each(self, backend: "PackedBackend", data, threads: int, cancel) -> None:
        """Every run on one thread at a time, chunk by chunk (each call writes only run ``k``'s
        slices and entries, so the threads never share an output)."""
        cancel = cancel if cancel is not None else threading.Event()
        todo = [k for k in range(len(self.H)) if self.remaining[k] > 0]
        costs = [int(self.remaining[k]) * step_cost(int(self.H[k]), int(self.S[k]), int(self.V[k])) for k in todo]

        def train(k):
            began = time.perf_counter()
            while self.remaining[k] > 0 and not cancel.is_set():
                self._call(backend, data, 1, k)
            self.seconds[k] = time.perf_counter() - began

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
