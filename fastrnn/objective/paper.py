"""The paper's policy, in one place: its sane box, the penalty outside it, its bounds and start point.

The generic machinery (the objective's interpolation, the optimizers) takes these as settings;
only this module knows the paper's numbers.
"""

from __future__ import annotations

import numpy as np

#: (lower, upper, centre) of the sane range of (hidden size, sequence length, learning rate).
SANE_RANGES = ((20, 800, 410.0), (5, 40, 25.0), (1e-4, 1.0, 0.5))
#: The sane box as (low, high) pairs: where no corner of F is penalised.
SANE_BOX = tuple((low, high) for low, high, _ in SANE_RANGES)
#: Added to the value of a corner for each hyperparameter outside its sane range.
INSANITY_PENALTY = 1e6
#: The sane box as the paper's quasi-Newton fallback checks it (its learning-rate floor there
#: is 1e-6, not the objective's 1e-4).
PAPER_BOUNDS = ((20.0, 800.0), (5.0, 40.0), (1e-6, 1.0))
#: The paper draws each hyperparameter of the starting point uniformly from this interval.
START_INTERVAL = (0.0, 10.0)


#: The squared distance in the penalty saturates here (at |x - c| >= 1e150), so the penalty
#: of any finite point is finite: Python's float ** raises OverflowError past 1.8e308.
MAX_SQUARED_DISTANCE = 1e300


def sanity_penalty(hidden: float, seq_length: float, learning_rate: float) -> float:
    """The paper's ``sanityChecks``: 0 for sane hyperparameters, else 1e6 + (x - c)^2 per offender.

    ``(x - c)^2`` saturates at :data:`MAX_SQUARED_DISTANCE` (|x - c| >= 1e150), where the paper's
    formula would overflow; at such points a 1e-8 difference step is lost in rounding anyway.
    """
    penalty = 0.0
    for value, (low, high, centre) in zip((hidden, seq_length, learning_rate), SANE_RANGES):
        if value < low or value > high:
            distance = abs(float(value) - centre)
            penalty += INSANITY_PENALTY + (distance * distance if distance < 1e150 else MAX_SQUARED_DISTANCE)
    return penalty


def random_start(seed) -> np.ndarray:
    """The paper's starting point: each of (h, s, l) uniform in [0, 10], drawn from ``seed``."""
    low, high = START_INTERVAL
    return np.random.default_rng(seed).uniform(low, high, size=3)
