"""Minimise a function with finite-difference derivatives, as the paper does.

One entry point, :func:`minimize`, in the spirit of ``scipy.optimize.minimize``: every method
takes the same arguments and returns one :class:`OptimizeResult`. The methods live in one
table, :data:`METHOD_TABLE`: a name, the algorithm (a stepper class that makes the step, its
docstring giving the step rule, or a :class:`fastrnn.optimize.samplers.Sampler`), and its options with
their defaults (the paper's) and rules. Adding a method is a stepper or sampler class and a table
entry; the command line builds its flags from the table.

==========  =============================================================================
method      step rule
==========  =============================================================================
gd          x <- x - step * g / |g|                              (normalised gradient)
newton      x <- x - multiplier * H^-1 g; if det(H) == 0, a normalised gradient step of
            length fallback_step                                  ("gd-fallback")
bfgs, dfp   x <- x + alpha p, p = -V g, alpha from a backtracking Armijo line search; V
            (approximate inverse Hessian) updated by :class:`BFGSUpdate` or
            :class:`DFPUpdate`; a normalised gradient step of length fallback_step when
            the current point is outside ``bounds`` or |alpha p| < min_step
random      one point uniform in the problem's box per step; x is the best seen
tpe         one point per step from Optuna's TPE sampler, one study fitted to all points
            so far (``pip install 'fastrnn[optuna]'``); x is the best seen
==========  =============================================================================

The samplers (random, tpe; :mod:`fastrnn.optimize.samplers`) compute no gradient: only max_steps, a
non-finite value, or the callback (e.g. a training budget) ends their runs. Their records carry
the trial of their step (``record["trial"]``: the point tried and its value) instead of a
gradient norm, and their states no history: the run keeps it once (resume with ``history=``).

The problem: what the function is asked is written in one place, :mod:`fastrnn.optimize.problem` (value,
batch of values, gradient, bounds, initial point, grid snap, lost steps). A plain callable is
adapted once; the RNN objective is a problem itself (:class:`fastrnn.objective.Objective`: the
paper's start in [0, 10]^3 and its sane box), and :class:`fastrnn.objective.space.SpaceView` is it in the
search space's coordinates. Every batch of points one step needs goes to ``evaluate_many`` in one
call (newton evaluates f, g and H at a new point in one batch). ``nfev`` counts every point
evaluated.

``grad_step="auto"`` takes the noise-aware step of :mod:`fastrnn.optimize.calculus` per component, and
every record then carries its diagnostics as ``record["gradient_noise"]`` (noise, step,
curvature and signal-to-noise ratio per component).

The paper's c = 0.99 is far stricter than the usual 1e-4: on a quadratic model Armijo then
accepts only alpha <= 2 (1 - c) = 0.02 of the Newton step, so BFGS/DFP crawl, and near a
minimum |alpha p| can drop below min_step before |g| < gtol, triggering a fallback step of
length 1 away from it.

Statuses are :class:`Status` values (``result.status == 0`` still reads as converged; the values
are those stored in run files). ``STEP_LOST`` (4): at an iterate so large that ``x_i + h == x_i``
for a finite-difference step h (``grad_step``, or newton's ``hessian_step``), the differences
along that axis are exactly 0 whatever f does, so a zero gradient there would be reported as
convergence; the run stops with status 4 instead (checked before the gradient norm).

Every run is resumable: each trajectory record and the result carry a JSON-serialisable
``state``; ``minimize(f, method=..., state=state, ...)`` with the same options continues
exactly where that state was taken, so an interrupted run ends bit-for-bit like an
uninterrupted one (given a deterministic f).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Callable, NamedTuple

import numpy as np

from fastrnn.optimize.calculus import (
    AUTO_STEP,
    DEFAULT_RECURSIVE_HESSIAN_STEP,
    GRADIENT_METHODS,
    HESSIAN_METHODS,
    step_lost_in_rounding,
    value_gradient_and_hessian,
)
from fastrnn.optimize.problem import Counted, as_problem
from fastrnn.optimize.samplers import RandomSampler, Sampler, TPESampler, check_box, trial_rng


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

SKIPPED_UPDATE_NOTE = "skipped update: s.y <= 0"


class StopOptimization(Exception):
    """Raised while the function is evaluated to end the run with ``status`` (e.g. BUDGET: the
    guard :func:`fastrnn.tuning.tune` hands the objective as its ``before_training`` hook).

    A step it interrupts is dropped: the run ends at the last whole step.
    """

    def __init__(self, status: "Status", message: str = ""):
        super().__init__(message or status.message)
        self.status = status


@dataclass(frozen=True)
class OptimizeResult:
    """Outcome of :func:`minimize`; ``state`` resumes the run."""

    x: np.ndarray
    fun: float
    nit: int
    nfev: int
    status: Status
    message: str
    trajectory: list = field(repr=False)
    state: dict = field(repr=False)

    @property
    def success(self) -> bool:
        return self.status == 0


class QuasiNewtonUpdate:
    """How the approximate inverse Hessian V learns from a step s and the gradient change y.

    Where the curvature condition s.y > 0 fails the update would lose positive definiteness;
    ``exception_strategy="skip_update"`` (the only one, as scipy's ``BFGS`` has it) keeps V and
    says so in the step's note.
    """

    EXCEPTION_STRATEGIES = ("skip_update",)

    def __init__(self, exception_strategy: str = "skip_update"):
        if exception_strategy not in self.EXCEPTION_STRATEGIES:
            raise ValueError(f"unknown exception_strategy {exception_strategy!r}; "
                             f"valid: {', '.join(self.EXCEPTION_STRATEGIES)}")
        self.exception_strategy = exception_strategy

    def __call__(self, V: np.ndarray, s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, str | None]:
        """(the next V, a note or None)."""
        if not s @ y > 0:
            return V, SKIPPED_UPDATE_NOTE
        return self.update(V, s, y), None

    @staticmethod
    def update(V: np.ndarray, s: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class BFGSUpdate(QuasiNewtonUpdate):
    """V+ = (I - rho s y^T) V (I - rho y s^T) + rho s s^T,  rho = 1 / (y.s)."""

    @staticmethod
    def update(V: np.ndarray, s: np.ndarray, y: np.ndarray) -> np.ndarray:
        # The paper's excerpt writes the equivalent expanded form
        # V + (1 + y.V.y / y.s) s s^T / y.s - (V y s^T + s y^T V) / y.s with
        # row vectors (its trailing comment's `sk.dot(yk.T) * V` would be wrong),
        # and its loop applies DFP with BFGS commented out.
        rho = 1.0 / (y @ s)
        left = np.eye(s.size) - rho * np.outer(s, y)
        return left @ V @ left.T + rho * np.outer(s, s)


class DFPUpdate(QuasiNewtonUpdate):
    """V+ = V + s s^T / (s.y) - V y y^T V / (y^T V y)."""

    @staticmethod
    def update(V: np.ndarray, s: np.ndarray, y: np.ndarray) -> np.ndarray:
        Vy = V @ y
        return V + np.outer(s, s) / (s @ y) - np.outer(Vy, Vy) / (y @ Vy)


def _normalised_step(gradient: np.ndarray, length: float) -> np.ndarray:
    return -length * gradient / np.linalg.norm(gradient)


class _Stepper:
    """The iterate x with f(x), its gradient, counters, and how it was reached.

    Subclasses add what their step needs, and keep ALL of it in
    ``state()`` / ``_restore_extra`` so a run can be resumed exactly.
    """

    #: True: the gradient's norm and its rounding end the run (False for the samplers' runs).
    uses_gradient = True

    def __init__(self, f: Counted, method: str, options: dict, seed=None):
        self.f = f
        self.method = method
        self.options = options
        self.seed = seed
        self.nit = 0
        self.rule = "start"
        self.note = None
        # the noise-aware gradient's diagnostics (grad_step="auto" only, else None)
        self.gradient_noise = None

    @classmethod
    def check_available(cls) -> None:
        """ValueError saying how to install what the method needs, if it is missing."""

    def start(self, x0: np.ndarray) -> None:
        self._move_to(x0)

    def _move_to(self, x: np.ndarray, fun: float | None = None) -> None:
        """Make x the iterate and evaluate what the next step needs (``fun``: known f(x))."""
        self.x = x
        if np.all(np.isfinite(x)):
            self._evaluate(fun)
        else:
            self._mark_non_finite()

    def _evaluate(self, fun: float | None) -> None:
        self.gradient_noise = self._new_diagnostics()
        self.fun, self.gradient = self.f.value_and_gradient(
            self.x, self.options["grad_step"], self.options["grad_method"], fun, self.gradient_noise,
        )

    def _new_diagnostics(self) -> dict | None:
        return {} if self.options["grad_step"] == AUTO_STEP else None

    def _mark_non_finite(self) -> None:
        self.fun, self.gradient = np.nan, np.full(self.x.size, np.nan)
        self.gradient_noise = None

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.fun) and np.all(np.isfinite(self.gradient)))

    def state(self) -> dict:
        return {
            "method": self.method,
            "nit": self.nit,
            "nfev": self.f.nfev,
            "x": self.x.tolist(),
            "fun": float(self.fun),
            "gradient": self.gradient.tolist(),
            "rule": self.rule,
            "note": self.note,
            **({} if self.gradient_noise is None else {"gradient_noise": self.gradient_noise}),
        }

    def restore(self, state: dict) -> None:
        if state.get("method") != self.method:
            raise ValueError(
                f"state was saved by method {state.get('method')!r}, not {self.method!r}"
            )
        self.nit = int(state["nit"])
        self.f.nfev = int(state["nfev"])
        self.x = np.array(state["x"], dtype=float)
        self.fun = float(state["fun"])
        self.gradient = np.array(state["gradient"], dtype=float)
        self.rule = state["rule"]
        self.note = state["note"]
        self.gradient_noise = state.get("gradient_noise")
        self._restore_extra(state)

    def _restore_extra(self, state: dict) -> None:
        pass

    def record(self) -> dict:
        return {
            "step": self.nit,
            "x": self.x.tolist(),
            "fun": float(self.fun),
            "gradient_norm": float(np.linalg.norm(self.gradient)),
            "rule": self.rule,
            "note": self.note,
            "nfev": self.f.nfev,
            **({} if self.gradient_noise is None else {"gradient_noise": self.gradient_noise}),
            "state": self.state(),
        }

    def step(self) -> None:
        self.rule, self.note, x_new, fun_new = self._next_point()
        self.nit += 1
        self._move_to(x_new, fun_new)

    def _next_point(self):
        """(rule, note, next x, f(next x) or None if not yet known)."""
        raise NotImplementedError


class _GradientDescent(_Stepper):
    """x <- x - step * g / |g|."""

    def _next_point(self):
        return "gd", None, self.x + _normalised_step(self.gradient, self.options["step"]), None


class _Newton(_Stepper):
    """x <- x - multiplier * solve(H, g); normalised gradient step if H is singular.

    f, g and H at each new point come from one batch of evaluations.
    """

    def _evaluate(self, fun):
        options = self.options
        self.gradient_noise = self._new_diagnostics()
        self.fun, self.gradient, self.hessian = value_gradient_and_hessian(
            self.f,
            self.x,
            options["grad_step"],
            options["grad_method"],
            options["hessian_step"],
            options["hessian_method"],
            self.gradient_noise,
            own_gradient=self.f.value_and_gradient,
        )

    def _mark_non_finite(self):
        super()._mark_non_finite()
        self.hessian = np.full((self.x.size, self.x.size), np.nan)

    def state(self):
        return {**super().state(), "hessian": self.hessian.tolist()}

    def _restore_extra(self, state):
        self.hessian = np.array(state["hessian"], dtype=float)

    def _next_point(self):
        newton_step = self._newton_step()
        if newton_step is None:
            fallback = _normalised_step(self.gradient, self.options["fallback_step"])
            return "gd-fallback", None, self.x + fallback, None
        return "newton", None, self.x - self.options["multiplier"] * newton_step, None

    def _newton_step(self) -> np.ndarray | None:
        """solve(H, g), or None when H is singular (the paper tests det(H) == 0)."""
        if not np.all(np.isfinite(self.hessian)) or np.linalg.det(self.hessian) == 0:
            return None
        try:
            return np.linalg.solve(self.hessian, self.gradient)
        except np.linalg.LinAlgError:
            return None


class _QuasiNewton(_Stepper):
    """p = -V g, backtracking Armijo line search, V updated by ``update_rule``.

    The gradient at the accepted point is kept for the next step, and f(x) is
    reused by the line search, so a step costs the line-search trials plus
    one gradient batch.
    """

    #: The :class:`QuasiNewtonUpdate` of the method (set by each subclass).
    update_rule: QuasiNewtonUpdate

    def start(self, x0):
        self.inverse_hessian = np.eye(x0.size)
        self.bounds = self._resolve_bounds(x0.size)
        super().start(x0)

    def _resolve_bounds(self, n: int) -> np.ndarray | None:
        bounds = self.options["bounds"]
        if isinstance(bounds, str) and bounds == "auto":
            bounds = self.f.bounds
        if bounds is None:
            return None
        bounds = np.array(bounds, dtype=float)
        if bounds.shape != (n, 2):
            raise ValueError(f"bounds must be {n} (low, high) pairs, got shape {bounds.shape}")
        return bounds

    def state(self):
        return {**super().state(), "inverse_hessian": self.inverse_hessian.tolist()}

    def _restore_extra(self, state):
        self.inverse_hessian = np.array(state["inverse_hessian"], dtype=float)
        self.bounds = self._resolve_bounds(self.x.size)

    def _out_of_bounds(self) -> bool:
        if self.bounds is None:
            return False
        return bool(np.any(self.x < self.bounds[:, 0]) or np.any(self.x > self.bounds[:, 1]))

    def _line_search(self, direction: np.ndarray) -> tuple[float, float | None]:
        """First alpha = tau**k, k < max_halvings, with
        f(x + alpha p) <= f(x) + c alpha (p.g); returns (alpha, f there).

        Like the paper's loop, if no trial passes, the alpha after the last
        halving is returned untested (f there is then None).
        """
        c, tau = self.options["c"], self.options["tau"]
        slope = direction @ self.gradient
        alpha = 1.0
        for _ in range(self.options["max_halvings"]):
            trial_value = self.f(self.x + alpha * direction)
            if trial_value <= self.fun + c * alpha * slope:
                return alpha, trial_value
            alpha *= tau
        return alpha, None

    def _next_point(self):
        options = self.options
        # The paper runs the line search before its sanity check; checking
        # first gives the same iterates without spending the search's evaluations.
        if self._out_of_bounds():
            fallback = _normalised_step(self.gradient, options["fallback_step"])
            return "gd-fallback-out-of-range", None, self.x + fallback, None
        direction = -self.inverse_hessian @ self.gradient
        alpha, fun_new = self._line_search(direction)
        s = alpha * direction
        if not np.linalg.norm(s) >= options["min_step"]:  # also catches a NaN step
            fallback = _normalised_step(self.gradient, options["fallback_step"])
            return "gd-fallback-short-step", None, self.x + fallback, None
        note = None if fun_new is not None else (
            f"line search: Armijo condition not met in {options['max_halvings']} tries"
        )
        return self.method, note, self.x + s, fun_new

    def step(self):
        x_old, gradient_old = self.x, self.gradient
        super().step()
        if not self.rule.startswith("gd-fallback") and self.finite:
            self.inverse_hessian, note = self.update_rule(self.inverse_hessian, self.x - x_old, self.gradient - gradient_old)
            self.note = "; ".join(filter(None, (self.note, note))) or None


class _BFGS(_QuasiNewton):
    update_rule = BFGSUpdate()


class _DFP(_QuasiNewton):
    update_rule = DFPUpdate()


class _SampleRun:
    """A sampler's run (:mod:`fastrnn.optimize.samplers`): x is the best point so far, and every step asks
    the sampler for one point, moves it onto the problem's grid (``snap``: whole h and s for the
    RNN objective) and evaluates it. The history of trials lives here, once; each record carries
    its own trial, and a state carries none (resuming takes the history from the records)."""

    uses_gradient = False

    def __init__(self, f: Counted, method: str, options: dict, seed=None):
        self.f, self.method, self.options, self.seed = f, method, options, seed
        self.sampler_class = METHOD_TABLE[method].algorithm
        self.nit, self.rule, self.note = 0, "start", None
        self.history: list = []

    @classmethod
    def check_available(cls) -> None:
        pass

    def _make_sampler(self, n: int) -> None:
        self.sampler = self.sampler_class(check_box(self.f.bounds, n, self.method), self.options)

    def start(self, x0: np.ndarray) -> None:
        self._make_sampler(x0.size)
        self.x = x0
        self.fun = float(self.f(x0)) if np.all(np.isfinite(x0)) else np.nan
        self.history.append((x0.tolist(), self.fun))

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.fun))

    def state(self) -> dict:
        return {"method": self.method, "nit": self.nit, "nfev": self.f.nfev, "x": self.x.tolist(),
                "fun": float(self.fun), "rule": self.rule, "note": self.note, "seed": self.seed}

    def restore(self, state: dict, history=None) -> None:
        if state.get("method") != self.method:
            raise ValueError(f"state was saved by method {state.get('method')!r}, not {self.method!r}")
        if "trials" in state:  # format 1: the state carried the history
            history = state["trials"]
        if history is None:
            raise ValueError(f"resuming method {self.method!r} needs the run's history of trials "
                             "(history=, e.g. fastrnn.optimize.samplers.history_from_records(records))")
        self.nit, self.f.nfev = int(state["nit"]), int(state["nfev"])
        self.x, self.fun = np.array(state["x"], dtype=float), float(state["fun"])
        self.rule, self.note = state["rule"], state["note"]
        self.seed = state.get("seed", self.seed)
        self.history = [(list(z), float(v)) for z, v in history][:self.nit + 1]
        self._make_sampler(self.x.size)

    def record(self) -> dict:
        z, value = self.history[-1]
        return {"step": self.nit, "x": self.x.tolist(), "fun": float(self.fun), "rule": self.rule,
                "note": self.note, "nfev": self.f.nfev, "trial": {"x": list(z), "fun": value}, "state": self.state()}

    def step(self) -> None:
        index = len(self.history)
        (candidate,) = self.sampler.ask(self.history, [trial_rng(self.seed, index)])
        candidate = np.asarray(self.f.snap(np.asarray(candidate, dtype=float)), dtype=float)
        value = float(self.f(candidate))
        self.history.append((candidate.tolist(), value))
        self.nit += 1
        self.rule = self.method
        if value < self.fun:
            self.x, self.fun = candidate, value


class Option(NamedTuple):
    """One option of a method: its default (the paper's), its rule, and what it does."""

    default: object
    #: "positive", "open_unit" (0 < v < 1), "int_min1", "choice" (one of ``choices``),
    #: "positive_or_none", "positive_or_auto", or "any" (checked where it is used).
    rule: str
    help: str
    choices: tuple = ()


class Method(NamedTuple):
    """A method: its algorithm (a stepper class that follows a gradient, or a
    :class:`fastrnn.optimize.samplers.Sampler`) and its options."""

    algorithm: type
    options: dict

    @property
    def is_sampler(self) -> bool:
        return issubclass(self.algorithm, Sampler)


_GRADIENT_OPTIONS = {
    "grad_step": Option(1e-8, "positive_or_auto",
                        "finite-difference step of the gradient, or 'auto' (noise-aware, per component)"),
    "grad_method": Option("forward", "choice", "finite-difference rule of the gradient", GRADIENT_METHODS),
}
_QUASI_NEWTON_OPTIONS = {
    "c": Option(0.99, "open_unit", "Armijo control of the line search"),
    "tau": Option(0.5, "open_unit", "backtracking factor of the line search"),
    "max_halvings": Option(20, "int_min1", "line-search tries"),
    "fallback_step": Option(1.0, "positive", "length of the gradient-descent fallback step"),
    "min_step": Option(1e-6, "positive", "steps shorter than this fall back to gradient descent"),
    "bounds": Option("auto", "any", "box of the out-of-range fallback: 'auto' (the problem's), None, or (low, high) pairs"),
    **_GRADIENT_OPTIONS,
}

#: Every method: its stepper and its options. ``METHODS`` lists the names.
METHOD_TABLE: dict[str, Method] = {
    "gd": Method(_GradientDescent, {
        "step": Option(0.1, "positive", "length of each normalised gradient step"),
        **_GRADIENT_OPTIONS,
    }),
    "newton": Method(_Newton, {
        "multiplier": Option(1.0, "positive", "factor on the Newton step (the paper's trial 7: 1000)"),
        "fallback_step": Option(10.0, "positive", "length of the gradient-descent fallback step"),
        "hessian_step": Option(None, "positive_or_none", "finite-difference step of the Hessian (None: the rule's default)"),
        "hessian_method": Option("recursive", "choice", "finite-difference rule of the Hessian", HESSIAN_METHODS),
        **_GRADIENT_OPTIONS,
    }),
    "bfgs": Method(_BFGS, _QUASI_NEWTON_OPTIONS),
    "dfp": Method(_DFP, _QUASI_NEWTON_OPTIONS),
    "random": Method(RandomSampler, {}),
    "tpe": Method(TPESampler, {
        "startup_trials": Option(10, "int_min1", "random trials before TPE's model takes over"),
    }),
}
METHODS = tuple(METHOD_TABLE)


def check_method(method: str) -> Method:
    if method not in METHOD_TABLE:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    return METHOD_TABLE[method]


def _check_option(name: str, option: Option, value) -> None:
    rule = option.rule
    if rule == "positive_or_none" and value is None:
        return
    if rule == "positive_or_auto" and isinstance(value, str):
        if value != AUTO_STEP:
            raise ValueError(f"option {name} must be a positive number or {AUTO_STEP!r}, got {value!r}")
        return
    if rule == "positive_or_auto" and not _is_real(value, lambda v: v > 0):
        raise ValueError(f"option {name} must be a positive number or {AUTO_STEP!r}, got {value!r}")
    if rule in ("positive", "positive_or_none") and not _is_real(value, lambda v: v > 0):
        raise ValueError(f"option {name} must be a positive number, got {value!r}")
    if rule == "open_unit" and not _is_real(value, lambda v: 0 < v < 1):
        raise ValueError(f"option {name} must lie in (0, 1), got {value!r}")
    if rule == "int_min1" and not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"option {name} must be an int >= 1, got {value!r}")
    if rule == "choice" and value not in option.choices:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(option.choices)}")


def _is_real(value, condition) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and bool(np.isfinite(value)) and condition(value)


def resolve_options(method: str, options: dict) -> dict:
    """The method's defaults updated with ``options``, each checked; ValueError names the rule."""
    valid = check_method(method).options
    unknown = sorted(set(options) - set(valid))
    if unknown:
        takes = f"valid options: {', '.join(sorted(valid))}" if valid else "it takes none"
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for method {method!r}; {takes}")
    resolved = {name: option.default for name, option in valid.items()}
    resolved.update(options)
    for name, option in valid.items():
        _check_option(name, option, resolved[name])
    return resolved


def _initial_point(problem, x0, seed, state) -> np.ndarray | None:
    if state is not None:
        if x0 is not None:
            raise ValueError("give x0 or state, not both")
        return None
    if x0 is None:
        x0 = problem.initial_point(seed)
    x0 = np.array(x0, dtype=float)
    if x0.ndim != 1 or x0.size == 0 or not np.all(np.isfinite(x0)):
        raise ValueError(f"x0 must be a finite non-empty 1-D array, got {x0!r}")
    return x0


def _steps_lost(x: np.ndarray, options: dict) -> bool:
    """Whether a finite-difference step of ``options`` vanishes in rounding at x (status 4).

    The noise-aware ``"auto"`` step is relative to x, so it is never lost."""
    steps = [] if options["grad_step"] == AUTO_STEP else [options["grad_step"]]
    if options.get("hessian_method") == "recursive":
        steps.append(options["hessian_step"] or DEFAULT_RECURSIVE_HESSIAN_STEP)
    elif options.get("hessian_step") is not None:  # the stencil's default steps are relative: never lost
        steps.append(options["hessian_step"])
    return any(step_lost_in_rounding(x, step) for step in steps)


def check_run_arguments(method: str, options: dict, max_steps, record_every, gtol):
    """(stepper class, resolved options): everything :func:`minimize` checks before it evaluates
    anything, so that a caller (:func:`fastrnn.tuning.tune`) can check before it writes anything."""
    entry = check_method(method)
    stepper_class = _SampleRun if entry.is_sampler else entry.algorithm
    resolved = resolve_options(method, options)
    for name, value, least in (("max_steps", max_steps, 0), ("record_every", record_every, 1)):
        if isinstance(value, bool) or not (isinstance(value, (int, np.integer)) and value >= least):
            raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")
    if isinstance(gtol, bool) or not isinstance(gtol, (int, float, np.integer, np.floating)) or not gtol >= 0:
        raise ValueError(f"gtol must be a number >= 0, got {gtol!r}")
    entry.algorithm.check_available()
    return stepper_class, resolved


def default_options(method: str) -> dict:
    """The options ``method`` uses when none are given (the paper's settings)."""
    return {name: option.default for name, option in check_method(method).options.items()}


def minimize(
    f,
    x0=None,
    method: str = "gd",
    *,
    seed=None,
    max_steps: int = 10000,
    gtol: float = 1e-4,
    record_every: int = 1,
    callback: Callable[[dict], object] | None = None,
    state: dict | None = None,
    history: list | None = None,
    **options,
) -> OptimizeResult:
    """Minimise f from x0 (default: ``f.initial_point(seed)``, e.g. the paper's random start).

    ``f`` is a :class:`fastrnn.optimize.problem.Problem`, or a callable adapted into one once
    (:func:`fastrnn.optimize.problem.as_problem`). Stops when |g| < gtol (or g == 0), after ``max_steps``
    steps in total (counting steps before a resume), on a non-finite f or gradient, when
    ``callback(record)`` returns true (status CALLBACK) or a :class:`Status` (that status), or
    when evaluating f raises :class:`StopOptimization` (:func:`fastrnn.tuning.tune`'s budget).
    The trajectory holds a record every ``record_every`` steps plus the first and last: step, x,
    fun, gradient_norm (gradient methods) or trial (samplers: the point tried and its value),
    rule (what made the step), note, nfev and the resumable state. ``state`` (from a record or a
    result) resumes a run; pass the same method and options, and for a sampler its ``history``
    (the trials of its records, :func:`fastrnn.optimize.samplers.history_from_records`). ``options`` are
    method-specific: see :data:`METHOD_TABLE`.
    """
    stepper_class, resolved = check_run_arguments(method, options, max_steps, record_every, gtol)
    problem = as_problem(f)
    start = _initial_point(problem, x0, seed, state)
    stepper = stepper_class(Counted(problem), method, resolved, seed)
    if state is None:
        stepper.start(start)
    elif stepper.uses_gradient:
        stepper.restore(state)
    else:
        stepper.restore(state, history)

    trajectory = []

    def record_and_ask_to_stop() -> bool:
        record = stepper.record()
        trajectory.append(record)
        answer = callback(record) if callback is not None else None
        if isinstance(answer, Status):
            return answer  # the caller's reason, e.g. BUDGET
        return Status.CALLBACK if answer else None

    status = record_and_ask_to_stop()
    while status is None:
        if not stepper.finite:
            status = Status.NON_FINITE
        elif stepper.uses_gradient and (_steps_lost(stepper.x, resolved) or problem.steps_lost(stepper.x)):
            status = Status.STEP_LOST
        elif stepper.uses_gradient and (np.linalg.norm(stepper.gradient) < gtol
                                        or np.linalg.norm(stepper.gradient) == 0):
            status = Status.CONVERGED
        elif stepper.nit >= max_steps:
            status = Status.MAX_STEPS
        else:
            # a sampler's step changes nothing before its evaluation returns; a stepper's is undone
            before = stepper.state() if stepper.uses_gradient else None
            try:
                stepper.step()
            except StopOptimization as stop:
                # f ended the run mid-step (e.g. a training budget): the run ends where the last
                # whole step left it, so its state is consistent and resumable
                if before is not None:
                    stepper.restore(before)
                status = stop.status
                break
            if stepper.nit % record_every == 0:
                status = record_and_ask_to_stop()
    if trajectory[-1]["step"] != stepper.nit:
        record_and_ask_to_stop()  # the run is ending anyway; its answer changes nothing

    return OptimizeResult(
        x=stepper.x.copy(),
        fun=float(stepper.fun),
        nit=stepper.nit,
        nfev=stepper.f.nfev,
        status=status,
        message=STATUS_MESSAGES[status],
        trajectory=trajectory,
        state=stepper.state(),
    )
