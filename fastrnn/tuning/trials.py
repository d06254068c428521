"""The trials of a run file: each point a run evaluated, its value and what the run had spent by then.

A sampler's record (random, tpe) carries the trial it made (``record["trial"]``, or a batch's
``record["trials"]``; in a format-1 file the new entries of ``state["trials"]``, in the search
space's coordinates; a trial skipped before training, value None, is left out); a gradient
method's record is its iterate (``x``, ``fun``). :func:`trials` reads either; :func:`best_trial`
is the trial ``fastrnn train --from-run`` trains: the lowest value among the points whose
networks were trained (inside the sane box, where no penalty stands in for a network).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ..objective.paper import SANE_RANGES
from ..objective.settings import settings_from_record
from ..objective.space import get_space
from .run_files import RunFile


class Trial(NamedTuple):
    """One evaluated point of a run."""

    step: int
    x: tuple[float, float, float]  # (h, s, l)
    fun: float
    #: Training characters and seconds the run's objective had spent when the record was written.
    chars: float
    seconds: float
    #: The record's trial as written (a sampler's), for what a method adds to it; {} otherwise.
    extra: dict

    @property
    def sane(self) -> bool:
        """Inside the sane box: its value is a trained network's, not a penalty."""
        return all(low <= value <= high for value, (low, high, _) in zip(self.x, SANE_RANGES))

    @property
    def whole(self) -> bool:
        """Whole h and s: one network per replica, no interpolation between corners."""
        return float(self.x[0]).is_integer() and float(self.x[1]).is_integer()


def trials(run: RunFile) -> list[Trial]:
    """Every trial of ``run``, in order (see the module docstring)."""
    found: list[Trial] = []
    seen_format1 = 0
    space = None
    for record in run.records:
        counters = record.get("counters") or {}
        chars, seconds = float(counters.get("training_chars", math.nan)), float(counters.get("seconds", math.nan))
        state = record.get("state") or {}
        if "trial" in record or "trials" in record:  # a step's trial, or a batch's
            entries = [(trial["x"], trial["fun"], trial) for trial in record.get("trials", [record.get("trial")])]
        elif "trials" in state:  # format 1: every trial so far, in the search space's coordinates
            if space is None:
                space = get_space(settings_from_record(run.settings["objective"]).space)
            new = state["trials"][seen_format1:]
            seen_format1 = len(state["trials"])
            entries = [(space.to_point(z).tolist(), value, {}) for z, value in new]
        else:
            entries = [(record["x"], record["fun"], {})]
        for x, fun, extra in entries:
            if fun is None:  # skipped: never trained
                continue
            found.append(Trial(int(record["step"]), tuple(float(v) for v in x), float(fun), chars, seconds, dict(extra)))
    return found


def best_trial(run: RunFile) -> Trial | None:
    """The trial with the lowest finite value among those inside the sane box; None if there is none."""
    candidates = [trial for trial in trials(run) if trial.sane and math.isfinite(trial.fun)]
    return min(candidates, key=lambda trial: trial.fun) if candidates else None
