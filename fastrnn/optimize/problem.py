"""What an optimizer may ask of the function it minimises: the problem protocol, in one place.

:func:`fastrnn.optimize.minimize` and the samplers work on a :class:`Problem`:

==========================================  ==================================================
``problem.evaluate_many(points)``           f at every point, as one batch (an array)
``problem(x)``                              f at one point (one batch of one)
``problem.value_and_gradient(x, h, ...)``   (f(x), gradient); finite differences unless the
                                            problem knows some partials better
``problem.bounds``                          the box, n (low, high) pairs, or None: the
                                            quasi-Newton fallback's and the samplers' box
``problem.initial_point(seed)``             where to start when no x0 is given
``problem.snap(x)``                         x moved onto the problem's grid (the samplers try
                                            points on it); x itself by default
``problem.steps_lost(x)``                   whether the problem's own differences vanish in
                                            rounding at x (status 4); False by default
==========================================  ==================================================

:class:`Problem` is the base class with those defaults; a subclass gives ``evaluate_many`` and
what it knows beyond it (:class:`fastrnn.objective.Objective`: the paper's start and box, lost
corner differences; :class:`fastrnn.objective.space.SpaceView`: the objective in the search space's
coordinates, with exact corner partials). A plain callable is adapted once by :func:`as_problem`
(as scipy's ``ScalarFunction`` adapts a function): the attributes of the same names it has
(``evaluate_many``, ``bounds``, ``initial_point``, ``snap``, ``steps_lost``) are read then, and
nothing is looked up afterwards.

A run is stopped from outside the function: the optimizer's callback returns a status, or
something the function calls raises :class:`fastrnn.optimize.StopOptimization` (the objective's
``before_training`` hook, which :func:`fastrnn.tuning.tune` sets to its budget guard).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .calculus import BatchFunction, span_value_and_gradient
from .calculus import value_and_gradient as finite_difference_value_and_gradient


class Problem:
    """The base of the protocol (module docstring); subclasses give :meth:`evaluate_many`."""

    #: The box: n (low, high) pairs, or None (no box: the samplers refuse such a problem).
    bounds = None

    def evaluate_many(self, points: Sequence) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x) -> float:
        return float(self.evaluate_many([x])[0])

    def value_and_gradient(self, x, h, method: str, f0: float | None = None, diagnostics: dict | None = None,
                           evaluate: Callable | None = None) -> tuple[float, np.ndarray]:
        """(f(x), gradient) by finite differences (:func:`fastrnn.optimize.calculus.value_and_gradient`;
        ``method="span"``: :func:`~fastrnn.optimize.calculus.span_value_and_gradient` on this
        problem's grid and box).

        ``evaluate`` is the batch function the derivative's points go through (the optimizer's
        counting one); :meth:`evaluate_many` by default."""
        batch = BatchFunction(evaluate or self.evaluate_many)
        if method == "span":
            return span_value_and_gradient(batch, x, h, self.snap, self.bounds, f0, diagnostics)
        return finite_difference_value_and_gradient(batch, x, h, method, f0, diagnostics)

    def initial_point(self, seed) -> np.ndarray:
        raise ValueError("give x0: this function has no initial_point(seed) to start from")

    def snap(self, x) -> np.ndarray:
        return x

    def steps_lost(self, x) -> bool:
        return False


class FunctionProblem(Problem):
    """A plain callable as a :class:`Problem`; its optional attributes are read once, here."""

    def __init__(self, f: Callable):
        self.function = f
        batch = getattr(f, "evaluate_many", None)
        self._batch = batch if batch is not None else (lambda points: [float(f(point)) for point in points])
        self.bounds = getattr(f, "bounds", None)
        for name in ("initial_point", "snap", "steps_lost"):
            own = getattr(f, name, None)
            if own is not None:
                setattr(self, name, own)

    def __call__(self, x) -> float:
        return float(self.function(x))

    def evaluate_many(self, points) -> np.ndarray:
        values = np.asarray(self._batch(list(points)), dtype=float).reshape(-1)
        if values.shape != (len(points),):
            raise ValueError(f"f.evaluate_many returned {values.size} values for {len(points)} points")
        return values


def as_problem(f) -> Problem:
    """``f`` as a :class:`Problem`: itself if it is one, else adapted once (:class:`FunctionProblem`)."""
    return f if isinstance(f, Problem) else FunctionProblem(f)


class Counted(Problem):
    """``problem`` with a running count ``nfev`` of the points it was evaluated at."""

    def __init__(self, problem: Problem, nfev: int = 0):
        self.problem = problem
        self.nfev = nfev
        self.bounds = problem.bounds

    def __call__(self, x) -> float:
        self.nfev += 1
        return float(self.problem(x))

    def evaluate_many(self, points) -> np.ndarray:
        values = self.problem.evaluate_many(points)
        self.nfev += len(points)
        return values

    def value_and_gradient(self, x, h, method, f0=None, diagnostics=None, evaluate=None):
        return self.problem.value_and_gradient(x, h, method, f0, diagnostics, evaluate=evaluate or self.evaluate_many)

    def initial_point(self, seed):
        return self.problem.initial_point(seed)

    def snap(self, x):
        return self.problem.snap(x)

    def steps_lost(self, x) -> bool:
        return self.problem.steps_lost(x)
