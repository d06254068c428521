"""Checks shared by the public entry points: each raises ValueError naming the rule."""

from __future__ import annotations

import math
import numbers

#: Largest count a setting may hold: the kernels count in int64.
MAX_COUNT = 2**62


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int, or ValueError naming the rule."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if value > MAX_COUNT:
        raise ValueError(f"{name} must be at most 2**62, got {value}")
    return int(value)


#: Largest seed of numpy's RandomState, which draws min-char-rnn's initial weights.
MAX_SEED = 2**32 - 1


def check_seed(value, runs: int = 1) -> int:
    """A seed for ``runs`` runs seeded ``value``, ``value + 1``, ...: each must fit RandomState."""
    value = check_int("seed", value, 0)
    if value + runs - 1 > MAX_SEED:
        limit = "2**32 - 1" if runs == 1 else f"2**32 - {runs} (the {runs} replicas take seed, seed + 1, ...)"
        raise ValueError(f"seed must be at most {limit}, got {value}")
    return value


def check_learning_rate(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"learning rate must be a finite number > 0, got {value!r}")
    return float(value)
