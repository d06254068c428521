"""Samplers: methods that propose points instead of following a gradient (ask and tell, as Optuna's).

A sampler proposes points inside a box from the run's *history*, the list of every trial so far
(``(point, value)`` pairs, the start point first), and one seeded generator per proposal::

    points = sampler.ask(history, rngs)      # len(rngs) points: the option ``batch`` of a step

The generator of the trial with index i (its place in the history) is
``numpy.random.default_rng([seed, i])`` (:func:`trial_rng`), so a proposal is a function of the
run's seed and its history, and a resumed run, which rebuilds the history from its run file,
proposes exactly the points an uninterrupted run would have. Asking for k points at once gives k
proposals for the trials i, i + 1, ...: the trials of one step, evaluated in parallel. Random
search draws each trial from its own generator, so its trials do not depend on k; TPE proposes a
batch with Optuna's constant liar (the batch's earlier proposals count as bad results, so the
later ones look elsewhere).

A trial whose value is None was skipped (its batch was turned away before training, e.g. by a time
budget it would overrun): random search ignores values, TPE counts it as a failed trial.

The history lives once, in the run: :func:`fastrnn.optimize.minimize` keeps it, and each of its
records carries its own trial (``record["trial"]``), so a run file grows by one trial per step.
:func:`history_from_records` rebuilds it from records (also from format-1 files, whose records
carried every trial in their state; a record of a step of several trials carries ``trials``).

Adding a sampler: a subclass of :class:`Sampler` with ``ask`` and an entry in
:data:`fastrnn.optimize.METHOD_TABLE`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: One trial: the point (in the optimizer's coordinates) and its value (None: skipped, not evaluated).
Trial = tuple


def trial_rng(seed, index: int) -> np.random.Generator:
    """The generator of the proposal for the trial at ``index`` of the history."""
    return np.random.default_rng([0 if seed is None else int(seed), index])


def check_box(bounds, n: int, method: str) -> np.ndarray:
    """The box a sampler draws from: n finite (low, high) pairs with low < high; ValueError otherwise."""
    if bounds is None:
        raise ValueError(f"method {method!r} samples a box: give a function with .bounds (n (low, high) pairs)")
    box = np.array(bounds, dtype=float)
    if box.shape != (n, 2) or not np.all(np.isfinite(box)) or not np.all(box[:, 0] < box[:, 1]):
        raise ValueError(f"the box of method {method!r} must be {n} finite (low, high) pairs, got {box.tolist()}")
    return box


def history_from_records(records: Sequence[dict]) -> list[Trial]:
    """The trials of a sampler run, in order, from its records (each carries ``trial``; a format-1
    record carried them all in ``state["trials"]``). Points are in the optimizer's coordinates
    (``z`` where the records carry it)."""
    history: list[Trial] = []
    for record in records:
        if "trials" in record.get("state", {}):
            history = [(list(z), float(v)) for z, v in record["state"]["trials"]]
            continue
        for trial in record.get("trials", [record["trial"]] if "trial" in record else []):
            value = trial["fun"]
            history.append((list(trial.get("z", trial["x"])), None if value is None else float(value)))
    return history


class Sampler:
    """Proposes points in ``box`` (n (low, high) pairs) from the history; see the module docstring."""

    def __init__(self, box: np.ndarray, options: dict):
        self.box = box
        self.options = options

    @classmethod
    def check_available(cls) -> None:
        """ValueError saying how to install what the sampler needs, if it is missing."""

    def ask(self, history: Sequence[Trial], rngs: Sequence[np.random.Generator]) -> list[np.ndarray]:
        raise NotImplementedError


class RandomSampler(Sampler):
    """Uniform in the box, independently for every trial."""

    def ask(self, history, rngs):
        return [rng.uniform(self.box[:, 0], self.box[:, 1]) for rng in rngs]


class TPESampler(Sampler):
    """Optuna's TPE sampler (``fastrnn[optuna]``), multivariate, with ``startup_trials`` random trials.

    One study for the run: each ``ask`` first adds the trials of the history it has not seen yet
    (those inside the box), so a resumed run rebuilds the study once from its history. Each
    proposal reseeds the sampler from its trial's generator, so it is a function of the seed and
    the history, as the samplers' contract asks.
    """

    @classmethod
    def check_available(cls):
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise ValueError("method 'tpe' needs Optuna: pip install 'fastrnn[optuna]'") from None

    def __init__(self, box, options):
        import warnings

        import optuna

        super().__init__(box, options)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._names = [f"z{i}" for i in range(len(box))]
        self._distributions = {name: optuna.distributions.FloatDistribution(low, high)
                               for name, (low, high) in zip(self._names, box)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # constant liar only for batches: with one trial per step no trial is pending at an ask
            liar = dict(constant_liar=True) if options.get("batch", 1) > 1 else {}
            self._sampler = optuna.samplers.TPESampler(n_startup_trials=options["startup_trials"], multivariate=True,
                                                       **liar)
        self._study = optuna.create_study(sampler=self._sampler)
        self._seen = 0  # trials of the history already in the study

    def _add_new_trials(self, history) -> None:
        import optuna

        inside = [(z, v) for z, v in history[self._seen:]
                  if np.all((self.box[:, 0] <= z) & (z <= self.box[:, 1]))]
        # a skipped trial (value None) was never evaluated: a failed trial, which TPE leaves out of
        # its model (the point is neither good nor bad), as Optuna does with a trial that raised
        self._study.add_trials([
            optuna.trial.create_trial(params=dict(zip(self._names, z)), distributions=self._distributions,
                                      **(dict(state=optuna.trial.TrialState.FAIL) if v is None else dict(value=v)))
            for z, v in inside])
        self._seen = len(history)

    def _reseed(self, seed: int) -> None:
        # TPESampler(seed=s)'s two generators, set as a new sampler would set them
        self._sampler._rng.rng.seed(seed)
        self._sampler._random_sampler._rng.rng.seed(seed)

    def ask(self, history, rngs):
        from optuna.trial import TrialState

        self._add_new_trials(history)
        asked, points = [], []
        for rng in rngs:
            self._reseed(int(rng.integers(2**31 - 1)))
            trial = self._study.ask(self._distributions)
            asked.append(trial)
            points.append(np.array([trial.params[name] for name in self._names]))
        for trial in asked:  # proposals, not results: the history's trials are what the study learns from
            self._study.tell(trial, state=TrialState.FAIL)
        return points


__all__ = ["Sampler", "RandomSampler", "TPESampler", "Trial", "trial_rng", "history_from_records", "check_box"]
