"""Why a run stops (:class:`Status`), and how the function being minimised stops it from inside
(:class:`StopOptimization`) or turns a sampler's batch away (:class:`SkipTrials`)."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """Why :func:`minimize` stopped (the values are those stored in run files)."""

    CONVERGED = 0
    MAX_STEPS = 1
    NON_FINITE = 2
    CALLBACK = 3
    STEP_LOST = 4
    BUDGET = 5

    @property
    def message(self) -> str:
        return STATUS_MESSAGES[self]


STATUS_MESSAGES = {
    Status.CONVERGED: "converged",
    Status.MAX_STEPS: "maximum number of steps reached",
    Status.NON_FINITE: "non-finite objective value or gradient",
    Status.CALLBACK: "stopped by callback",
    Status.STEP_LOST: "difference step lost in rounding (x + h == x)",
    Status.BUDGET: "training budget spent",
}


class StopOptimization(Exception):
    """Raised while the function is evaluated to end the run with ``status`` (e.g. BUDGET: the
    guard :func:`fastrnn.tuning.tune` hands the objective as its ``before_training`` hook).

    A step it interrupts is dropped: the run ends at the last whole step.
    """

    def __init__(self, status: Status, message: str = ""):
        super().__init__(message or status.message)
        self.status = status


class SkipTrials(StopOptimization):
    """Raised while a sampler's batch is evaluated, before anything is trained: the batch is not
    worth training (e.g. a time budget cannot pay for it), but the run need not end. A sampler
    (:class:`~fastrnn.optimize.steppers.SampleRun`) records the batch's trials as skipped and asks
    for new ones; every other caller stops, as for :class:`StopOptimization` (status BUDGET)."""

    def __init__(self, message: str = ""):
        super().__init__(Status.BUDGET, message)


__all__ = ["STATUS_MESSAGES", "SkipTrials", "Status", "StopOptimization"]
