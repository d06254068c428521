"""Checks shared by the public entry points: each raises ValueError naming the rule."""

from __future__ import annotations

import math
import numbers


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int, or ValueError naming the rule."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_learning_rate(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"learning rate must be a finite number > 0, got {value!r}")
    return float(value)
