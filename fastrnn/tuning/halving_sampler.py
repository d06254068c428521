"""How successive halving chooses new networks: where no model proposes them, a space-filling
design over the search space (or independent uniform draws); else TPE fitted on the results of the
longest rung that has enough of them (as BOHB does), the networks dropped before that rung counted
as worse than any that reached it (as Optuna's TPE counts pruned trials).

Why a design: the default 600 s search starts 18 networks and models none of them, so what it
can find is what those 18 draws hold, and networks that do well for minutes are rare in the box.
With uniform draws on tinyshakespeare, the three seeds of five that met the 1.75 target answered
with networks from one corner (h 150-400 with a learning rate of 0.01-0.04, 4% of the box in log
space), the two that missed with (318, 25, 0.0079) and (141, 33, 0.0119), from outside it; 18
uniform draws hold none of that corner in 48% of seeds. A Latin hypercube (McKay, Beckman &
Conover 1979) puts one draw in each of 18 slices of every coordinate, and swaps that lower its
centered L2 discrepancy (Hickernell 1998) spread the pairs of coordinates as well (scipy's
``LatinHypercube(optimization="random-cd")`` does the same; it is written here so that a run's
networks do not change with scipy's version). Its waves hold none in 34% of seeds (600 seeds
each; ``tests/test_halving_design.py`` pins the gap over 300). With it the same five seeds all
met the target (1.6406-1.7307), four of them with networks from outside the corner (h 103-184,
learning rates 0.021-0.056): a spread wave covers the box's other good regions too.

A rung holds only the networks promoted to it, all decent: fitted on them alone TPE takes the
region around them for the bad one and proposes what nobody has survived with (in one
tinyshakespeare run, 9 of a bracket's first 12 learning rates lay between 0.33 and 0.95, where
the promoted networks had 0.04-0.17). The dropped networks say where the bad ones lie.

A proposal is a whole network: h and s are rounded to whole numbers (inside the sane box), l is
kept as drawn. Each proposal is a function of the run's seed, the indices of its wave's trials and
the results recorded before the wave, so a resumed run proposes what an uninterrupted one did,
whatever the number of threads or workers.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import NamedTuple, Sequence

import numpy as np

from ..objective.paper import SANE_RANGES
from ..objective.space import Space
from .halving_plan import DESIGNS


class Config(NamedTuple):
    """A network's hyperparameters, and where they lie in the search space."""

    hidden: int
    seq_length: int
    learning_rate: float
    z: tuple

    @property
    def x(self) -> list:
        return [self.hidden, self.seq_length, self.learning_rate]


def search_box(space: Space) -> np.ndarray:
    """The sane box in the coordinates of ``space``, as (low, high) rows."""
    return np.array([[space.coordinate(i, low), space.coordinate(i, high)]
                     for i, (low, high, _) in enumerate(SANE_RANGES)])


def config_at(space: Space, z) -> Config:
    """The network at ``z``: h and s rounded to whole numbers inside the sane box."""
    h, s, lr = space.to_point(np.asarray(z, dtype=float))
    (h_low, h_high, _), (s_low, s_high, _), (l_low, l_high, _) = SANE_RANGES
    h = int(min(max(round(h), h_low), h_high))
    s = int(min(max(round(s), s_low), s_high))
    lr = float(min(max(lr, l_low), l_high))
    return Config(h, s, lr, tuple(float(v) for v in space.from_point([h, s, lr])))


def trial_generator(seed: int, trial: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(trial), 1922])  # 1922: this method's stream, not the samplers'


class History(NamedTuple):
    """What TPE learns from: the networks with a result at one rung (``reached``: (z, value)), and
    those dropped below it (``dropped``: (z, {rung characters: value})): worse than any that
    reached it, as Optuna's TPE ranks pruned trials."""

    chars: int
    reached: list
    dropped: list

    def __bool__(self) -> bool:
        return bool(self.reached)


NO_HISTORY = History(0, [], [])


def rung_history(results: Sequence[tuple[int, tuple, float]], minimum: int) -> History:
    """The history at the longest rung with at least ``minimum`` results; ``results`` holds (rung
    characters, z, value). Networks whose results all lie above that rung (a bracket that started
    them higher) are left out: they say nothing about it. Empty when no rung has enough."""
    by_network: dict[tuple, dict[int, float]] = {}
    for chars, z, value in results:
        by_network.setdefault(tuple(z), {})[chars] = float(value)
    counts = Counter(chars for found in by_network.values() for chars in found)
    enough = [chars for chars, n in counts.items() if n >= minimum]
    if not enough:
        return NO_HISTORY
    rung = max(enough)
    reached = [(z, found[rung]) for z, found in by_network.items() if rung in found]
    dropped = [(z, found) for z, found in by_network.items() if rung not in found and max(found) < rung]
    return History(rung, reached, dropped)


def propose(sampler: str, seed: int, space: Space, trials: Sequence[int], history: History = NO_HISTORY,
            design: str = "space-filling") -> tuple[list[Config], str]:
    """Configs for the trials ``trials`` (one wave), and what made them: TPE on ``history`` when
    asked for and given any; else ``design`` over the box: "space-filling" (one design for the
    wave, seeded by its first trial) or "uniform" (each trial its own draw; recorded as "random",
    as runs written before designs existed recorded it)."""
    box = search_box(space)
    if sampler == "tpe" and history:
        return [config_at(space, z) for z in _tpe(box, seed, trials, history)], "tpe"
    trials = list(trials)
    if design == "uniform":
        points = [trial_generator(seed, trial).uniform(box[:, 0], box[:, 1]) for trial in trials]
    elif design == "space-filling":
        units = space_filling(trial_generator(seed, trials[0]), len(trials), len(box)) if trials else []
        points = [box[:, 0] + u * (box[:, 1] - box[:, 0]) for u in units]
    else:
        raise ValueError(f"unknown design {design!r}; valid: {', '.join(DESIGNS)}")
    return [config_at(space, z) for z in points], "random" if design == "uniform" else design


def space_filling(rng: np.random.Generator, n: int, dimensions: int, patience: int = 100,
                  max_swaps: int = 10_000) -> np.ndarray:
    """``n`` points in the unit cube: a Latin hypercube (each coordinate's n slices hold one point
    each), improved by swapping two points' values of one coordinate while that lowers the
    centered L2 discrepancy, until ``patience`` swaps in a row do not (see the module docstring)."""
    units = (np.argsort(rng.random((dimensions, n)), axis=1).T + rng.random((n, dimensions))) / n
    if n < 2:
        return units
    best, idle = centered_discrepancy(units), 0
    for _ in range(max_swaps):
        if idle >= patience:
            break
        column = rng.integers(dimensions)
        rows = rng.choice(n, 2, replace=False)
        units[rows, column] = units[rows[::-1], column]
        value = centered_discrepancy(units)
        if value < best:
            best, idle = value, 0
        else:
            units[rows, column] = units[rows[::-1], column]
            idle += 1
    return units


def centered_discrepancy(units: np.ndarray) -> float:
    """The squared centered L2 discrepancy of points in the unit cube (Hickernell 1998, eq. 5.1c):
    how far their counts in the boxes anchored at the cube's corners are from the boxes' volumes."""
    n, dimensions = units.shape
    a = np.abs(units - 0.5)
    single = np.prod(1 + 0.5 * a - 0.5 * a * a, axis=1).sum()
    pairs = np.prod(1 + 0.5 * a[:, None, :] + 0.5 * a[None, :, :]
                    - 0.5 * np.abs(units[:, None, :] - units[None, :, :]), axis=2).sum()
    return float((13 / 12) ** dimensions - 2 / n * single + pairs / n ** 2)


def _tpe(box: np.ndarray, seed: int, trials: Sequence[int], history) -> list[np.ndarray]:
    """One proposal per trial from a new study holding ``history``, seeded from the trial's generator."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [f"z{i}" for i in range(len(box))]
    distributions = {name: optuna.distributions.FloatDistribution(float(low), float(high))
                     for name, (low, high) in zip(names, box)}

    def params(z):
        return dict(zip(names, np.clip(z, box[:, 0], box[:, 1])))

    known = [optuna.trial.create_trial(params=params(z), distributions=distributions, value=value)
             for z, value in history.reached]
    known += [optuna.trial.create_trial(params=params(z), distributions=distributions,
                                        state=optuna.trial.TrialState.PRUNED, intermediate_values=values)
              for z, values in history.dropped]
    points = []
    for trial in trials:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            tpe = optuna.samplers.TPESampler(n_startup_trials=0, multivariate=True,
                                             seed=int(trial_generator(seed, trial).integers(2**31 - 1)))
        study = optuna.create_study(sampler=tpe)
        study.add_trials(known)
        asked = study.ask(distributions)
        points.append(np.array([asked.params[name] for name in names]))
    return points


__all__ = ["Config", "History", "NO_HISTORY", "centered_discrepancy", "config_at", "rung_history", "propose", "search_box",
           "space_filling", "trial_generator"]
