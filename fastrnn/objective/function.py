"""The objective: how good a char-RNN with hyperparameters (h, s, l) is, averaged over ``beta`` runs.

Two kinds (``kind=``):

``"heldout"`` (the default)
    Each network trains on the first part of the corpus (``1 - heldout_fraction``, 90% by
    default; or all of it when held-out text is given separately) for ``train_chars`` characters
    of training text (ceil(train_chars / s) updates, so every sequence length sees the same data
    and about the same compute; or ``alpha`` updates when given), then reads the held-out text
    (its first ``heldout_chars``) continuously from a zero hidden state. The value is the mean
    cross-entropy per character in nats (``value / ln 2`` is bits per character). The
    vocabulary is that of the whole text, so held-out characters are always known. Training
    never reads held-out text: the data pointer wraps within the training part.
``"paper"``
    The paper's: min-char-rnn's smoothed training loss (summed over a sequence) after ``alpha``
    updates. ``fastrnn reproduce`` pins it.

``f(h, s, l)`` is the value at integer hidden size ``h`` and sequence length ``s``; ``F(h, s, l)``
makes it continuous by bilinear interpolation between the four integer corners around
``(h, s)`` (the paper's ``continuousNetworkLoss``), with the learning rate used as is.

Every integer corner first passes the sanity check: for each hyperparameter outside its range
(20 <= h <= 800, 5 <= s <= 40, 1e-4 <= l <= 1) the corner's value is increased by
``1e6 + (u(x) - u(c))^2`` with centres ``c`` = 410, 25, 0.5, and no network is trained for it.
``u`` is the coordinate of the search space (:mod:`fastrnn.objective.space`): the identity in the paper's
``linear`` space (its ``sanityChecks`` exactly), log2/log10 in the ``log`` space (the held-out
objective's default), so the penalty's slope points back into the box at a sensible scale.

Randomness. ``noise="common"`` (the default) trains replica ``r`` from seed ``seed + r`` at every
corner, so F is a deterministic function of its arguments and finite differences measure the
hyperparameters' effect, not the difference between two random initialisations (common random
numbers); F is then bilinear inside each integer cell, and :meth:`Objective.cell_partials` gives
its exact partials along h and s. ``noise="fresh"`` draws new seeds for every corner of every
evaluation from a generator seeded with ``seed``, as the paper did: noisy, but reproducible.

A run that diverges is worth ``diverged_value`` and counted in ``counters.trainings_diverged``.
For the paper's objective a run diverges when its loss or weights stop being finite, and is worth
1e6 (as its penalty). For the held-out objective a run also diverges when its held-out loss is
above ln V, the loss of a uniform guess over the V characters: its weights blew up (a learning
rate too large for its size: 412 nats per character at (400, 25, 1.0) on the built-in corpus) and
it does worse than a network that learned nothing; it is worth ln V, as much as a network that
learned nothing. A run's value is then min(loss, ln V): continuous where a network starts to blow
up, and one blown-up network, however large its loss, cannot pose as a gradient or drown the
average of its replicas.

Example::

    from fastrnn.objective.function import Objective
    F = Objective(beta=2)                     # held-out loss on the built-in Shakespeare corpus
    F([40.25, 12.8, 0.1])                     # trains 2 runs at each of 4 corners, in parallel
    P = Objective(alpha=100, kind="paper")    # the paper's objective
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import numpy as np

from .._validation import check_int
from ..backends import DEFAULT_BACKEND, RunSpec, check_backend_dtype, get_backend
from ..network.corpus import Corpus
from ..network.model import STATUS_DIVERGED
from ..optimize.problem import Problem
from ..running.executors import RunOutcome, make_executor
from ..running.memory import batch_bytes, check_memory
from .paper import INSANITY_PENALTY, PAPER_BOUNDS, SANE_BOX, SANE_RANGES, sanity_penalty
from .settings import (
    DEFAULT_TRAIN_CHARS,
    KINDS,
    LOSS_KINDS,
    NOISE_KINDS,
    Evaluation,
    ObjectiveSettings,
    make_settings,
)
from .space import Space, SpaceView, get_space


@dataclass
class Counters:
    """What the objective has done so far."""

    evaluations: int = 0
    trainings_run: int = 0
    trainings_from_memo: int = 0
    trainings_diverged: int = 0
    training_steps: int = 0
    #: Characters of training text read: updates x sequence length, summed over trainings run
    #: (what a tuning run is charged; trainings served by the memo are free).
    training_chars: int = 0
    #: Multiply-adds of the trainings run (:attr:`fastrnn.backends.RunSpec.cost`): with ``seconds``,
    #: the machine's measured speed, from which a time budget predicts a batch's time.
    training_cost: int = 0
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


class Objective(Problem):
    """F(h, s, l), callable on a point and on a batch of points: a :class:`~fastrnn.optimize.problem.Problem`
    in (h, s, l) with the paper's start, box and finite differences.

    ``Objective(settings, evaluation)``: F as :mod:`fastrnn.objective.settings` defines it
    (:class:`~fastrnn.objective.settings.PaperSettings` or :class:`~fastrnn.objective.settings.HeldoutSettings`),
    computed as ``evaluation`` says (:class:`~fastrnn.objective.settings.Evaluation`: backend, threads,
    executor; results do not depend on them).

    ``Objective(corpus, alpha, beta, kind=..., **settings)`` builds the settings from keywords
    (:func:`fastrnn.objective.settings.make_settings`; every field of the kind's class: ``train_chars``,
    ``heldout_fraction``, ``heldout``, ``heldout_chars``, ``space``, ``noise``, ``seed``,
    ``loss``, ``diverged_value``, ``dtype``, ...), and the evaluation from ``backend``,
    ``threads``, ``executor`` and ``scheduler``. ``corpus`` and ``heldout`` may be paths; the
    built-in corpus when ``corpus`` is omitted.
    """

    def __init__(self, corpus: Corpus | str | ObjectiveSettings | None = None, alpha: int | None = None,
                 beta: int = 1, *, kind: str = "heldout", evaluation: Evaluation | None = None,
                 backend=DEFAULT_BACKEND, threads: int | None = None, executor="threads",
                 scheduler: str | None = None, **settings):
        if isinstance(corpus, ObjectiveSettings):
            if alpha is not None or beta != 1 or settings:
                raise TypeError("give the objective's settings as one value or as keywords, not both")
            definition = corpus
        else:
            definition = make_settings(kind, corpus=corpus, alpha=alpha, beta=beta, **settings)
        evaluation = evaluation or Evaluation(backend=backend, threads=threads, executor=executor,
                                              scheduler=scheduler)
        definition = definition.loaded()
        self.executor = make_executor(evaluation.executor, scheduler=evaluation.scheduler,
                                      threads=None if evaluation.threads is None
                                      else check_int("threads", evaluation.threads, 1))
        self.backend = get_backend(evaluation.backend)
        check_backend_dtype(self.backend, definition.dtype)
        self.source_corpus = definition.corpus  # the whole text, as given
        self.corpus, self.heldout = definition.split()
        #: F's settings, every default resolved: what F is (:mod:`fastrnn.objective.settings`).
        self.definition: ObjectiveSettings = definition.resolved(self.corpus.vocab_size)
        self.space: Space = get_space(self.definition.space)
        self.counters = Counters()
        self._divergence_threshold = self.definition.divergence_threshold(self.corpus.vocab_size)
        #: Called with the RunSpecs of every batch of new trainings before it trains (memo hits do
        #: not call it); it may raise to stop a run (:func:`fastrnn.tuning.tune` sets its budget's
        #: guard here).
        self.before_training: Callable[[list], None] | None = None
        self._memo: dict[tuple, float] = {}
        # Part of every memo key, so a value is never served for other settings.
        self._memo_scope = (json.dumps(self.settings()), self.backend.name)
        self._fresh_seeds = np.random.default_rng(self.seed)

    # -- the settings, by name -------------------------------------------------------------
    kind = property(lambda self: self.definition.kind)
    alpha = property(lambda self: self.definition.alpha)
    beta = property(lambda self: self.definition.beta)
    noise = property(lambda self: self.definition.noise)
    seed = property(lambda self: self.definition.seed)
    dtype = property(lambda self: self.definition.dtype)
    diverged_value = property(lambda self: self.definition.diverged_value)

    # -- public API -------------------------------------------------------------------------
    def __call__(self, x) -> float:
        """F at one point ``x = (h, s, l)``."""
        return float(self.evaluate_many([x])[0])

    def discrete(self, hidden: int, seq_length: int, learning_rate: float) -> float:
        """f(h, s, l) at an integer corner: the mean value of beta runs, or the sanity penalty."""
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

    @property
    def exact_cell_partials(self) -> bool:
        """Whether :meth:`cell_partials` gives F's partials along h and s (common noise only)."""
        return self.noise == "common"

    def steps_lost(self, x) -> bool:
        """Whether derivatives of F at x are lost in rounding: h or s so large (>= 2**52) that the
        corners of its cell, a whole number apart, are one float, so every difference along it is
        0. :func:`~fastrnn.optimize.minimize` then stops with STEP_LOST instead of "converged"."""
        x = np.asarray(x, dtype=float)
        return not bool(np.all(np.abs(x[:2]) < 2.0**52))

    def cell_partials(self, x) -> tuple[float, float, float]:
        """(F, dF/dh, dF/ds) at x, exactly: differences of the corners of x's integer cell.

        Inside a cell, F is bilinear (common noise): dF/dh = w_s0 (f10 - f00) + w_s1 (f11 - f01),
        likewise for s. On a cell border (a whole h or s) the partial is one-sided: the cell to
        the right [k, k + 1] is used, or the one to the left at the sane box's upper edge, so the
        difference never takes a penalised corner when the point is sane. All four corners are
        trained in one batch (including those whose interpolation weight is zero).
        """
        if not self.exact_cell_partials:
            raise ValueError("exact corner partials need common noise (with fresh noise F is not a fixed surface)")
        started = time.perf_counter()
        hidden, seq_length, learning_rate = _as_point(x)
        h0, h_low, h_high = _cell(hidden, SANE_RANGES[0][1])
        s0, s_low, s_high = _cell(seq_length, SANE_RANGES[1][1])
        plan = self._plan_cell(h0, s0, (h_low, h_high), (s_low, s_high), learning_rate, all_corners=True)
        self._train_missing(plan.training_keys())
        f00, f01, f10, f11 = (self._corner_value(spec) for spec in plan.corners)
        value = self._combine(self._plan(hidden, seq_length, learning_rate))
        self.counters.evaluations += 1
        self.counters.seconds += time.perf_counter() - started
        return value, s_low * (f10 - f00) + s_high * (f11 - f01), h_low * (f01 - f00) + h_high * (f11 - f10)

    def noise_state(self) -> dict | None:
        """The fresh-noise seed generator's state (None for common noise), to resume a run."""
        return self._fresh_seeds.bit_generator.state if self.noise == "fresh" else None

    def set_noise_state(self, state: dict) -> None:
        self._fresh_seeds.bit_generator.state = state

    @property
    def threads(self) -> int | None:
        return getattr(self.executor, "threads", None)

    @property
    def sane_ranges(self) -> tuple:
        """(low, high, centre) of each hyperparameter's sane range."""
        return SANE_RANGES

    def initial_point(self, seed, space: Space | None = None) -> np.ndarray:
        """Where an optimizer starts when given no x0, in (h, s, l).

        The paper's objective: its uniform draw from [0, 10]^3 (in the penalty region). The
        held-out objective: uniform inside the sane box in the coordinates of ``space`` (its
        own by default), so tuning trains networks from its first step.
        """
        return self.definition.initial_point(seed, space or self.space)

    @property
    def bounds(self) -> tuple:
        """The box to search, as (low, high) per hyperparameter, in (h, s, l).

        The held-out objective: the sane box (20..800, 5..40, 1e-4..1), where no corner is
        penalised, so ``scipy.optimize.minimize(F, x0, bounds=F.bounds)`` or a sampler searches
        trained networks only. The paper's objective: the paper's own quasi-Newton fallback box,
        whose learning-rate floor is 1e-6 (``reproduce`` runs BFGS and DFP with it).
        """
        return PAPER_BOUNDS if self.kind == "paper" else SANE_BOX

    def log_space(self) -> SpaceView:
        """F as a plain function of z = (log2 h, log2 s, log10 l), for SciPy, Optuna or your own code.

        The view is callable on z, has ``bounds`` (the sane box in z), ``initial_point(seed)``,
        ``to_point(z)`` (z back to (h, s, l)) and ``value_and_grad(z)`` ((F, gradient in z), with
        exact corner differences along h and s: ``jac=True`` for ``scipy.optimize.minimize``).
        One step of 1 doubles h or s or multiplies l by ten: the scale on which F changes.
        """
        return SpaceView(self, "log")

    @property
    def memo_size(self) -> int:
        return len(self._memo)

    @property
    def heldout_fingerprint(self) -> str | None:
        return None if self.heldout is None else self.heldout.fingerprint

    def updates(self, seq_length: int) -> int:
        """Training updates of one run at sequence length ``seq_length``."""
        return self.definition.updates(seq_length)

    def settings(self) -> dict:
        """The settings that define F, as run files record them (:meth:`ObjectiveSettings.record`)."""
        return self.definition.record()

    # -- internals --------------------------------------------------------------------------
    def _replica_seeds(self) -> list[int]:
        if self.noise == "common":
            return [self.seed + r for r in range(self.beta)]
        return [int(s) for s in self._fresh_seeds.integers(0, 2**31 - 1, size=self.beta)]

    def _penalty(self, hidden: float, seq_length: float, learning_rate: float) -> float:
        if self.space.name == "linear":
            return sanity_penalty(hidden, seq_length, learning_rate)
        penalty = 0.0
        for i, (value, (low, high, centre)) in enumerate(zip((hidden, seq_length, learning_rate), SANE_RANGES)):
            if value < low or value > high:
                # A non-positive value has no log: it counts as far below the box.
                offset = self.space.coordinate(i, value) - self.space.coordinate(i, centre)
                penalty += INSANITY_PENALTY + (min(abs(offset), 1e3) ** 2)
        return penalty

    def _plan(self, hidden: float, seq_length: float, learning_rate: float) -> _PointPlan:
        h0, h_low, h_high = interpolation_weights(hidden)
        s0, s_low, s_high = interpolation_weights(seq_length)
        return self._plan_cell(h0, s0, (h_low, h_high), (s_low, s_high), learning_rate)

    def _plan_cell(self, h0, s0, hidden_weights, seq_weights, learning_rate, all_corners=False) -> _PointPlan:
        corners = []
        for h, h_weight in zip((h0, h0 + 1), hidden_weights):
            for s, s_weight in zip((s0, s0 + 1), seq_weights):
                if (h_weight == 0.0 or s_weight == 0.0) and not all_corners:
                    corners.append(None)
                elif (penalty := self._penalty(h, s, learning_rate)) > 0.0:
                    corners.append(penalty)
                else:
                    corners.append([(*self._memo_scope, h, s, learning_rate, seed) for seed in self._replica_seeds()])
        return _PointPlan(tuple(hidden_weights), tuple(seq_weights), corners)

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
            RunSpec(hidden, seq_length, learning_rate, self.corpus.vocab_size, seed, self.updates(seq_length), self.dtype)
            for *_scope, hidden, seq_length, learning_rate, seed in missing
        ]
        for spec in specs:
            self.corpus.require_length(spec.seq_length)
        if self.before_training is not None:
            self.before_training(specs)
        if self.executor.name == "threads":  # a cluster's workers check their own memory
            check_memory(batch_bytes([(spec.hidden, spec.seq_length, spec.vocab_size, spec.dtype) for spec in specs],
                                     self.threads),
                         f"training {len(specs)} runs at once (up to hidden size {max(spec.hidden for spec in specs)})",
                         "use a smaller beta or hidden size")
        heldout = None if self.heldout is None else self.heldout.data
        outcomes = self.executor.run(self.backend, self.corpus.data, specs, heldout=heldout)
        for key, spec, outcome in zip(missing, specs, outcomes):
            value = self._run_value(outcome)
            self._memo[key] = self.diverged_value if value is None else value
            self.counters.trainings_run += 1
            self.counters.training_steps += outcome.steps
            self.counters.training_chars += outcome.steps * spec.seq_length
            self.counters.training_cost += outcome.steps * spec.step_cost
            self.counters.trainings_diverged += value is None

    def _run_value(self, outcome: RunOutcome) -> float | None:
        """The run's value, or None if it diverged (see the module docstring)."""
        if outcome.status == STATUS_DIVERGED:
            return None
        value = self.definition.run_value(outcome)
        if value is None or not math.isfinite(value) or value > self._divergence_threshold:
            return None
        return value

    def _corner_value(self, spec) -> float:
        if spec is None:
            return 0.0  # weight zero: the paper's 0 * f, without training f
        if isinstance(spec, list):
            return sum(self._memo[key] for key in spec) / len(spec)
        return spec

    def _combine(self, plan: _PointPlan) -> float:
        """The paper's formula: w_h0 (w_s0 f00 + w_s1 f01) + w_h1 (w_s0 f10 + w_s1 f11)."""
        f00, f01, f10, f11 = (self._corner_value(spec) if w_h * w_s else 0.0
                              for spec, w_h, w_s in zip(plan.corners, _repeat2(plan.hidden_weights), plan.seq_weights * 2))
        (h_low, h_high), (s_low, s_high) = plan.hidden_weights, plan.seq_weights
        return h_low * (s_low * f00 + s_high * f01) + h_high * (s_low * f10 + s_high * f11)


def _repeat2(pair):
    return (pair[0], pair[0], pair[1], pair[1])


def _cell(value: float, upper: float) -> tuple[int, float, float]:
    """The integer cell [k, k + 1] whose corners give the partial at ``value`` (see cell_partials)."""
    k, low_weight, high_weight = interpolation_weights(value)
    if high_weight == 0.0 and value >= upper:
        return k - 1, 0.0, 1.0  # the box's upper edge: the cell to the left
    return k, low_weight, high_weight


def objective(hidden: float, seq_length: float, learning_rate: float, **settings) -> float:
    """One-off F(h, s, l) with a new :class:`Objective` (no memo shared between calls)."""
    return Objective(**settings)((hidden, seq_length, learning_rate))


__all__ = [
    "Objective",
    "Counters",
    "KINDS",
    "DEFAULT_TRAIN_CHARS",
    "objective",
    "sanity_penalty",
    "interpolation_weights",
    "SANE_RANGES",
    "INSANITY_PENALTY",
    "NOISE_KINDS",
    "LOSS_KINDS",
]
