"""The paper's objective: the loss of a char-RNN after ``alpha`` updates, averaged over ``beta`` runs.

``f(h, s, l)`` is the discrete objective on integer hidden size ``h`` and sequence length ``s``;
``F(h, s, l)`` makes it continuous by bilinear interpolation between the four integer corners
around ``(h, s)`` (the paper's ``continuousNetworkLoss``), with learning rate ``l`` used as is.

Every integer corner first passes the paper's sanity check: for each hyperparameter outside
its range (20 <= h <= 800, 5 <= s <= 40, 1e-4 <= l <= 1) the corner's value is increased by
``1e6 + (x - c)^2`` with ``c`` = 410, 25, 0.5, and no network is trained for it.

Randomness. ``noise="common"`` (the default) trains replica ``r`` from seed ``seed + r`` at every
corner, so F is a deterministic function of its arguments and finite differences measure the
hyperparameters' effect, not the difference between two random initialisations (common random
numbers). ``noise="fresh"`` draws new seeds for every corner of every evaluation from a generator
seeded with ``seed``, as the paper did: noisy, but reproducible from the seed.

Example::

    from fastrnn.objective import Objective
    F = Objective(alpha=100, beta=2)          # built-in Shakespeare corpus
    F([40.25, 12.8, 0.1])                     # trains 2 runs at each of 4 corners, in parallel
    F.evaluate_many([[40.25, 12.8, 0.1], [40.25, 12.8, 0.1 + 1e-8]])
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

from ._validation import check_int
from .backends import DEFAULT_BACKEND, Backend, RunSpec, check_backend_dtype, get_backend
from .corpus import Corpus, load_corpus
from .executors import RunOutcome, make_executor
from .model import STATUS_DIVERGED
from .paper import INSANITY_PENALTY, PAPER_BOUNDS, SANE_RANGES, random_start, sanity_penalty

NOISE_KINDS = ("common", "fresh")
#: ``smooth``: min-char-rnn's smoothed loss after the last update (the paper's);
#: ``last``: the loss of the last training sequence alone.
LOSS_KINDS = ("smooth", "last")
#: Value of a run whose loss or weights stopped being finite.
DEFAULT_DIVERGED_VALUE = 1e6


@dataclass
class Counters:
    """What the objective has done so far."""

    evaluations: int = 0
    trainings_run: int = 0
    trainings_from_memo: int = 0
    trainings_diverged: int = 0
    training_steps: int = 0
    seconds: float = 0.0

    @property
    def memo_share(self) -> float:
        """Share of the trainings asked for that the memo served."""
        asked = self.trainings_run + self.trainings_from_memo
        return self.trainings_from_memo / asked if asked else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "memo_share": self.memo_share}


def interpolation_weights(value: float) -> tuple[int, float, float]:
    """``(floor, weight of floor, weight of floor + 1)``, as the paper's continuousNetworkLoss."""
    low = math.floor(value)
    high_weight = value - low
    return int(low), 1.0 - high_weight, high_weight


@dataclass
class _PointPlan:
    """One point's corners: each is None (weight zero: not trained), a penalty, or memo keys."""

    hidden_weights: tuple[float, float]
    seq_weights: tuple[float, float]
    corners: list  # order (h0, s0), (h0, s0+1), (h0+1, s0), (h0+1, s0+1)

    def training_keys(self):
        return [key for spec in self.corners if isinstance(spec, list) for key in spec]


def _as_point(x) -> tuple[float, float, float]:
    try:
        values = np.asarray(x, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a point must be three numbers (hidden size, sequence length, learning rate), got {x!r}") from exc
    if values.shape != (3,):
        raise ValueError(f"a point must be three numbers (hidden size, sequence length, learning rate), got {values.size}")
    if not np.isfinite(values).all():
        raise ValueError(f"hyperparameters must be finite numbers, got {values.tolist()}")
    return float(values[0]), float(values[1]), float(values[2])


class Objective:
    """F(h, s, l), callable on a point and on a batch of points.

    Parameters
    ----------
    corpus : Corpus or path, optional
        Training text; the built-in Shakespeare corpus when omitted.
    alpha : int
        Training updates per run.
    beta : int
        Independently initialised runs averaged per integer corner.
    noise : "common" or "fresh"
        Seeds per replica (see the module docstring).
    seed : int
        Base seed (common) or generator seed (fresh).
    threads : int, optional
        Worker threads for the trainings of one batch; all cores by default. Results are
        bit-identical whatever the value.
    executor : "threads", "dask", a distributed.Client, or an executor object
        What computes each batch of training runs (:mod:`fastrnn.executors`); results do not
        depend on it.
    scheduler : str, optional
        With ``executor="dask"``: the address of the Dask scheduler, ``tcp://HOST:PORT``.
    backend : str
        Training backend name (``fastrnn.backends.BACKEND_NAMES``).
    loss : "smooth" or "last"
        Which loss a run reports (see :data:`LOSS_KINDS`).
    diverged_value : float
        Value a run contributes when it diverges (its loss or weights become non-finite).
    dtype : "float64" or "float32"
        Training precision; float32 (compiled backends only) is faster where the paper's exact
        numerics do not matter.
    """

    def __init__(
        self,
        corpus: Corpus | str | None = None,
        alpha: int = 100,
        beta: int = 1,
        *,
        noise: str = "common",
        seed: int = 0,
        threads: int | None = None,
        backend: str | Backend = DEFAULT_BACKEND,
        loss: str = "smooth",
        diverged_value: float = DEFAULT_DIVERGED_VALUE,
        dtype: str = "float64",
        executor="threads",
        scheduler: str | None = None,
    ):
        self.corpus = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
        self.alpha = check_int("alpha", alpha, 1)
        self.beta = check_int("beta", beta, 1)
        if noise not in NOISE_KINDS:
            raise ValueError(f"unknown noise {noise!r}; valid: {', '.join(NOISE_KINDS)}")
        if loss not in LOSS_KINDS:
            raise ValueError(f"unknown loss kind {loss!r}; valid: {', '.join(LOSS_KINDS)}")
        self.noise = noise
        self.seed = check_int("seed", seed, 0)
        self.executor = make_executor(executor, threads=None if threads is None else check_int("threads", threads, 1),
                                      scheduler=scheduler)
        self.backend = get_backend(backend)
        self.dtype = check_backend_dtype(self.backend, dtype)
        self.loss = loss
        self.diverged_value = float(diverged_value)
        self.counters = Counters()
        self._memo: dict[tuple, float] = {}
        # Part of every memo key, so a value is never served for other settings.
        self._memo_scope = (self.corpus.fingerprint, self.alpha, self.loss, self.backend.name, self.dtype)
        self._fresh_seeds = np.random.default_rng(self.seed)

    # -- public API -------------------------------------------------------------------------
    def __call__(self, x) -> float:
        """F at one point ``x = (h, s, l)``."""
        return float(self.evaluate_many([x])[0])

    def discrete(self, hidden: int, seq_length: int, learning_rate: float) -> float:
        """f(h, s, l) at an integer corner: the mean loss of beta runs, or the sanity penalty."""
        if hidden != int(hidden) or seq_length != int(seq_length):
            raise ValueError(f"the discrete objective needs whole hidden size and sequence length, got {hidden}, {seq_length}")
        return self(np.array([hidden, seq_length, learning_rate], dtype=float))

    def evaluate_many(self, points: Iterable) -> np.ndarray:
        """F at every point, with all the trainings they need run as one parallel batch."""
        started = time.perf_counter()
        parsed = [_as_point(x) for x in points]
        plans = [self._plan(*point) for point in parsed]
        self._train_missing(key for plan in plans for key in plan.training_keys())
        values = np.array([self._combine(plan) for plan in plans])
        self.counters.evaluations += len(parsed)
        self.counters.seconds += time.perf_counter() - started
        return values

    def noise_state(self) -> dict | None:
        """The fresh-noise seed generator's state (None for common noise), to resume a run."""
        return self._fresh_seeds.bit_generator.state if self.noise == "fresh" else None

    def set_noise_state(self, state: dict) -> None:
        self._fresh_seeds.bit_generator.state = state

    @property
    def threads(self) -> int | None:
        return getattr(self.executor, "threads", None)

    def initial_point(self, seed) -> np.ndarray:
        """Where an optimizer starts when given no x0: the paper's uniform draw from [0, 10]^3."""
        return random_start(seed)

    @property
    def bounds(self) -> tuple:
        """The box outside which the quasi-Newton methods take a fallback step (the paper's)."""
        return PAPER_BOUNDS

    @property
    def memo_size(self) -> int:
        return len(self._memo)

    def settings(self) -> dict:
        """The settings that define F, for run records."""
        return dict(
            corpus=self.corpus.name,
            corpus_fingerprint=self.corpus.fingerprint,
            alpha=self.alpha,
            beta=self.beta,
            noise=self.noise,
            seed=self.seed,
            backend=self.backend.name,
            dtype=self.dtype,
            loss=self.loss,
            diverged_value=self.diverged_value,
        )

    # -- internals --------------------------------------------------------------------------
    def _replica_seeds(self) -> list[int]:
        if self.noise == "common":
            return [self.seed + r for r in range(self.beta)]
        return [int(s) for s in self._fresh_seeds.integers(0, 2**31 - 1, size=self.beta)]

    def _plan(self, hidden: float, seq_length: float, learning_rate: float) -> _PointPlan:
        h0, h_low, h_high = interpolation_weights(hidden)
        s0, s_low, s_high = interpolation_weights(seq_length)
        corners = []
        for h, h_weight in ((h0, h_low), (h0 + 1, h_high)):
            for s, s_weight in ((s0, s_low), (s0 + 1, s_high)):
                if h_weight == 0.0 or s_weight == 0.0:
                    corners.append(None)
                elif (penalty := sanity_penalty(h, s, learning_rate)) > 0.0:
                    corners.append(penalty)
                else:
                    corners.append([(*self._memo_scope, h, s, learning_rate, seed) for seed in self._replica_seeds()])
        return _PointPlan((h_low, h_high), (s_low, s_high), corners)

    def _train_missing(self, keys: Iterable[tuple]) -> None:
        missing: dict[tuple, None] = {}
        for key in keys:
            if key in self._memo or key in missing:
                self.counters.trainings_from_memo += 1
            else:
                missing[key] = None
        if not missing:
            return
        specs = [
            RunSpec(hidden, seq_length, learning_rate, self.corpus.vocab_size, seed, self.alpha, self.dtype)
            for *_scope, hidden, seq_length, learning_rate, seed in missing
        ]
        for spec in specs:
            self.corpus.require_length(spec.seq_length)
        outcomes = self.executor.run(self.backend, self.corpus.data, specs)
        for key, outcome in zip(missing, outcomes):
            self._memo[key] = self._run_value(outcome)
            self.counters.trainings_run += 1
            self.counters.training_steps += outcome.steps
            self.counters.trainings_diverged += outcome.status == STATUS_DIVERGED

    def _run_value(self, outcome: RunOutcome) -> float:
        if outcome.status == STATUS_DIVERGED:
            return self.diverged_value
        value = outcome.smooth_loss if self.loss == "smooth" else outcome.last_loss
        return value if math.isfinite(value) else self.diverged_value

    def _corner_value(self, spec) -> float:
        if spec is None:
            return 0.0  # weight zero: the paper's 0 * f, without training f
        if isinstance(spec, list):
            return sum(self._memo[key] for key in spec) / len(spec)
        return spec

    def _combine(self, plan: _PointPlan) -> float:
        """The paper's formula: w_h0 (w_s0 f00 + w_s1 f01) + w_h1 (w_s0 f10 + w_s1 f11)."""
        f00, f01, f10, f11 = (self._corner_value(spec) for spec in plan.corners)
        (h_low, h_high), (s_low, s_high) = plan.hidden_weights, plan.seq_weights
        return h_low * (s_low * f00 + s_high * f01) + h_high * (s_low * f10 + s_high * f11)


def objective(hidden: float, seq_length: float, learning_rate: float, **settings) -> float:
    """One-off F(h, s, l) with a new :class:`Objective` (no memo shared between calls)."""
    return Objective(**settings)((hidden, seq_length, learning_rate))


__all__ = [
    "Objective",
    "Counters",
    "objective",
    "sanity_penalty",
    "interpolation_weights",
    "SANE_RANGES",
    "INSANITY_PENALTY",
    "NOISE_KINDS",
    "LOSS_KINDS",
]
