"""The objective F(h, s, l): the function itself (``function``: corners, memo, interpolation),
its settings as one frozen value (``settings``), the held-out split (``heldout``), the search
spaces (``space``) and the paper's box, penalty and start (``paper``).

``fastrnn.objective.Objective`` (and the other names of ``function``) are re-exported here.
"""

from .function import (
    DEFAULT_TRAIN_CHARS,
    INSANITY_PENALTY,
    KINDS,
    LOSS_KINDS,
    NOISE_KINDS,
    SANE_RANGES,
    Counters,
    Objective,
    interpolation_weights,
    objective,
    sanity_penalty,
)

__all__ = [
    "Objective", "Counters", "KINDS", "DEFAULT_TRAIN_CHARS", "objective", "sanity_penalty", "interpolation_weights",
    "SANE_RANGES", "INSANITY_PENALTY", "NOISE_KINDS", "LOSS_KINDS",
]
