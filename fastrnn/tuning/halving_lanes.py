"""Where successive halving trains: a rung's networks advanced together on every core, or on a Dask
cluster's workers; and how fast that goes (:class:`Pace`), measured on the machine itself.

Each network is trained by one thread (or one worker) from its own state, in whole updates, so a
network's result does not depend on the number of threads or workers, nor on how its training is
split into pieces (continuing a state is bit-identical to training straight through).

On the threads executor the backend advances the states in place (packed batches on numba and
cython). On the Dask executor (``--scheduler`` / ``--local-workers``) the states travel: each task
takes a group of states (grouped by cost as the executor groups fresh runs), trains and scores
them on one worker thread and sends them back; the texts go to each worker once, as for F.
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import NamedTuple, Sequence

import numpy as np

from ..backends import RunSpec, get_backend
from ..network.model import STATUS_OK, TrainState
from ..running.runs import default_threads

#: The cost model of training, per character, in units of about one multiply-add: the matrix
#: products h (h + V), Adagrad's pass over the P weights once per update (P / s per character,
#: ADAGRAD_WEIGHT units a weight), a fixed CHARACTER_OVERHEAD, all times 1 + (h / CACHE_HIDDEN)^2
#: (scaled by the bytes of a weight) for weights that no longer fit the caches. Fitted to numba on
#: two threads at h 32 to 800 and s 5 and 25 (within 15% of one rate); the pace learns the rate.
ADAGRAD_WEIGHT = 3.3
CHARACTER_OVERHEAD = 4_000
CACHE_HIDDEN = 800
#: Scoring a character costs about this share of the matrix products of training on one (forward only).
SCORING_SHARE = 0.35
#: Batches shorter than this do not teach the pace (their fixed costs would pose as slowness).
MIN_TIMED_SECONDS = 0.3


def work(hidden: int, seq_length: int, vocab_size: int, chars: float, scoring: bool = False, itemsize: int = 4
         ) -> float:
    """Units of work (see above) of training ``chars`` characters, or of scoring them."""
    cache = 1.0 + (hidden / CACHE_HIDDEN) ** 2 * itemsize / 4
    if scoring:
        return chars * SCORING_SHARE * (hidden * (hidden + vocab_size) + CHARACTER_OVERHEAD) * cache
    weights = hidden * (hidden + 2 * vocab_size) + hidden + vocab_size
    return chars * (hidden * (hidden + vocab_size) + ADAGRAD_WEIGHT * weights / seq_length + CHARACTER_OVERHEAD) * cache


class Pace:
    """Seconds per unit of work on one lane, learnt from the batches this run trains.

    A batch's time is predicted as ``a * max(longest network, total / lanes)``. Each observation
    moves ``a`` halfway, but a slower one is taken at once: on a shared machine the budget must
    hold when others take the cores.

    The cost model is off by up to half for some shapes, so each shape (h, s) trained on a lane
    of its own also gets its own ``a`` (:meth:`observe_shape`, the same rule), which
    :meth:`of_shape` prefers: networks sized to equal times by it end together, and no lane
    waits for another.
    """

    def __init__(self, seconds_per_unit: float | None = None):
        self.seconds_per_unit = seconds_per_unit
        self.shapes: dict[tuple[int, int], float] = {}

    @property
    def known(self) -> bool:
        return self.seconds_per_unit is not None

    def seconds(self, works: Sequence[float], lanes: int) -> float:
        if not works:
            return 0.0
        return float(self.seconds_per_unit or 0.0) * max(max(works), sum(works) / max(1, lanes))

    def observe(self, works: Sequence[float], lanes: int, seconds: float) -> None:
        span = max(max(works, default=0.0), sum(works) / max(1, lanes))
        measured = _per_unit(span, seconds)
        if measured is not None:
            self.seconds_per_unit = _moved(self.seconds_per_unit, measured)

    def of_shape(self, shape: tuple[int, int]) -> float | None:
        """Seconds per unit of a network of ``shape`` (h, s): its own, else the run's."""
        return self.shapes.get(shape, self.seconds_per_unit)

    def observe_shape(self, shape: tuple[int, int], work: float, seconds: float) -> None:
        """A network of ``shape`` trained ``work`` units in ``seconds`` on a lane of its own (NaN: not known)."""
        measured = _per_unit(work, seconds)
        if measured is not None:
            self.shapes[shape] = _moved(self.shapes.get(shape), measured)


def _per_unit(work: float, seconds: float) -> float | None:
    if not work > 0 or not seconds >= MIN_TIMED_SECONDS:  # fixed costs (Python, hand-offs) would dominate
        return None
    return seconds / work


def _moved(old: float | None, measured: float) -> float:
    return measured if old is None else max(measured, 0.5 * (old + measured))


class Advanced(NamedTuple):
    """What :meth:`Lanes.advance` returns, one entry per state: its held-out score (or None), and
    the seconds its training took on a lane of its own (NaN when its lane trained others in the
    same kernel calls; 0 when it did not train)."""

    scores: list
    seconds: list


class Lanes:
    """Trains and scores a rung's networks on the objective's backend and executor."""

    def __init__(self, F):
        self.backend = F.backend
        self.executor = F.executor
        self.data = F.corpus.data
        self.heldout = F.heldout.data
        self.vocab_size = F.corpus.vocab_size
        self.dask = getattr(self.executor, "name", "threads") == "dask"
        self.threads = getattr(self.executor, "threads", None) or default_threads()

    @property
    def count(self) -> int:
        """Networks trained at once: threads here, or the cluster's workers."""
        if self.dask:
            return max(1, self.executor.workers(max_age=5.0))
        return self.threads if self.backend.releases_gil else 1

    def describe(self) -> dict:
        return self.executor.describe() if hasattr(self.executor, "describe") else {"executor": "threads"}

    def advance(self, states: list[TrainState], steps: Sequence[int], score: bool) -> Advanced:
        """Train each state ``steps`` more updates in place; with ``score``, each healthy network's
        mean held-out loss per character (None for the others, and for all without ``score``)."""
        if self.dask:
            return self._advance_dask(states, steps, score)
        cancel = threading.Event()
        try:
            seconds = self.backend.train_many(self.data, states, list(steps), threads=self.threads, cancel=cancel)
            scores = self._scores(self.backend, states, self.heldout, self.threads, cancel) if score else \
                [None] * len(states)
            return Advanced(scores, [float(x) for x in seconds])
        except BaseException:
            cancel.set()
            raise

    @staticmethod
    def _scores(backend, states, heldout, threads, cancel=None) -> list[float | None]:
        scores: list = [None] * len(states)
        healthy = [k for k, state in enumerate(states) if state.status == STATUS_OK]
        totals = backend.heldout_totals([states[k] for k in healthy], heldout, threads, cancel)
        for k, total in zip(healthy, totals):
            scores[k] = float(total) / (len(heldout) - 1)
        return scores

    def _advance_dask(self, states, steps, score):
        from ..running.dask_executor import group_runs

        executor = self.executor
        data_key = executor.ship(self.data)
        heldout_key = executor.ship(self.heldout) if score else None
        for dtype in sorted({state.dtype.name for state in states}):
            executor.warm_up(self.backend.name, dtype)
        specs = [RunSpec(s.hidden, s.seq_length, s.learning_rate, s.vocab_size, 0, int(n), s.dtype.name)
                 for s, n in zip(states, steps)]
        groups = group_runs(specs, self.count)
        tasks = [[(_pack(states[k]), int(steps[k])) for k in group] for group in groups]
        try:
            # The states go with their tasks, not scattered first: scattered data is placed on the
            # workers round-robin, and each task then runs where its data lies (a static split
            # that left a worker idle while the other trained a rung's largest networks). Sent
            # with the tasks, they go to whichever worker is free, costliest first.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Ll]arge.*graph", category=UserWarning)
                futures = executor.client.map(_advance_group, [self.backend.name] * len(tasks),
                                              [data_key] * len(tasks), [heldout_key] * len(tasks), tasks, pure=False,
                                              retries=executor.retries)
            results = executor._gather(futures, [[specs[k] for k in group] for group in groups])
        except (OSError, _cancelled_error()) as exc:
            raise executor._lost(exc) from None
        scores: list = [None] * len(states)
        seconds = [0.0] * len(states)
        for group, result in zip(groups, results):
            for k, (packed, value, own) in zip(group, result):
                _unpack_into(states[k], packed)
                scores[k], seconds[k] = value, own
        return Advanced(scores, seconds)


def _cancelled_error():
    from concurrent.futures import CancelledError

    return CancelledError


def _pack(state: TrainState) -> tuple:
    """A state as it travels; a new one (no update yet) as its recipe, drawn again where it trains."""
    if state.steps == 0 and state.position == 0 and state.seed is not None:
        return ("new", state.hidden, state.seq_length, state.learning_rate, state.vocab_size, state.seed,
                state.dtype.name)
    return (state.hidden, state.seq_length, state.learning_rate, state.vocab_size, state.params, state.memory,
            state.hprev, state.position, state.smooth_loss, state.last_loss, state.steps, state.status, state.seed)


def _unpack(packed: tuple) -> TrainState:
    if packed[0] == "new":
        return TrainState.fresh(*packed[1:])
    h, s, lr, V, params, memory, hprev, position, smooth, last, steps, status, seed = packed
    return TrainState(h, s, lr, V, np.array(params), np.array(memory), np.array(hprev), position, smooth, last, steps,
                      status, seed)


def _unpack_into(state: TrainState, packed: tuple) -> None:
    trained = _unpack(packed)
    state.params[...] = trained.params
    state.memory[...] = trained.memory
    state.hprev = np.array(trained.hprev, dtype=state.params.dtype)
    for name in ("position", "smooth_loss", "last_loss", "steps", "status"):
        setattr(state, name, getattr(trained, name))


def _advance_group(backend_name: str, data_key: str, heldout_key: str | None, items: list) -> list:
    """One Dask task: continue each packed state on this worker's one thread, score it if asked."""
    from ..running.dask_executor import _shipped

    backend = get_backend(backend_name)
    states = [_unpack(packed) for packed, _ in items]
    data = _shipped(data_key)
    # one state per call, so that each one's time is its own (the same bits as all in one call)
    seconds = [float(backend.train_many(data, [state], [n], threads=1)[0]) for state, (_, n) in zip(states, items)]
    scores = Lanes._scores(backend, states, _shipped(heldout_key), 1) if heldout_key is not None else \
        [None] * len(states)
    return [(_pack(state), value, own) for state, value, own in zip(states, scores, seconds)]


def calibrate(lanes: Lanes, dtype: str, seconds: float = MIN_TIMED_SECONDS) -> float:
    """Seconds per unit of work on this machine, from networks of (128, 25) trained on every lane
    for about ``seconds`` (thrown away after: they are no trial).

    A timing long enough is taken again and the shorter kept: a one-off cost in the first (on the
    first run after installing, numba compiles a kernel variant the first time a batch of that
    length trains: 4.4 s instead of 0.13 s measured) would pose as a machine 30 times slower, and a
    time budget's plan would start a handful of networks where it could afford eighteen."""
    count = lanes.count
    itemsize = 8 if dtype == "float64" else 4
    steps = 40
    while True:
        elapsed = _timed_training(lanes, dtype, count, steps)
        confirmed = False
        if elapsed >= seconds:  # long enough to count: once more, the shorter kept
            elapsed = min(elapsed, _timed_training(lanes, dtype, count, steps))
            confirmed = elapsed >= seconds / 2
        if confirmed or steps >= 2**20:
            return max(elapsed, 1e-9) / work(128, 25, lanes.vocab_size, steps * 25, itemsize=itemsize)
        steps *= 4 if elapsed < seconds / 8 else 2


def _timed_training(lanes: Lanes, dtype: str, count: int, steps: int) -> float:
    """Seconds to train ``count`` fresh (128, 25) networks ``steps`` updates each, one per lane."""
    states = [TrainState.fresh(128, 25, 0.01, lanes.vocab_size, k, dtype) for k in range(count)]
    lanes.advance(states, [2] * count, score=True)  # the kernels loaded (or compiled) outside the timing
    started = time.perf_counter()
    lanes.advance(states, [steps] * count, score=False)
    return time.perf_counter() - started
