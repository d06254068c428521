"""Minimise a function with finite-difference derivatives, as the paper does.

One entry point, :func:`minimize`, in the spirit of ``scipy.optimize.minimize``:

====== ====================================================================
method step rule
====== ====================================================================
gd     x <- x - step * g / |g|                    (normalised gradient)
newton x <- x - multiplier * H^-1 g; if det(H) == 0, a normalised gradient
       step of length fallback_step                ("gd-fallback")
bfgs   x <- x + alpha p, p = -V g, alpha from a backtracking Armijo line
dfp    search; V (approximate inverse Hessian) updated by BFGS or DFP;
       normalised gradient step of length fallback_step when the current
       point is outside ``bounds`` or |alpha p| < min_step
====== ====================================================================

Options (defaults are the paper's; unknown names raise ValueError):

* all methods: ``grad_step=1e-8``, ``grad_method="forward"`` (or "central")
* gd: ``step=0.1``
* newton: ``multiplier=1.0`` (the paper's trial 7 used 1000),
  ``fallback_step=10.0``, ``hessian_method="recursive"`` (or "stencil"),
  ``hessian_step=None`` (the Hessian method's default: 1e-6 for recursive)
* bfgs, dfp: ``c=0.99``, ``tau=0.5``, ``max_halvings=20`` (line-search
  tries), ``fallback_step=1.0``, ``min_step=1e-6``, ``bounds="paper"``
  (:data:`PAPER_BOUNDS` when n == 3, no check otherwise; None disables;
  or n (low, high) pairs)

The paper's c = 0.99 is far stricter than the usual 1e-4: on a quadratic
model Armijo then accepts only alpha <= 2 (1 - c) = 0.02 of the Newton step,
so BFGS/DFP crawl, and near a minimum |alpha p| can drop below min_step
before |g| < gtol, triggering a fallback step of length 1 away from it.

Derivatives come from :mod:`fastrnn.calculus`; every batch of points one
step needs goes to ``f.evaluate_many`` in one call when f has it (newton
evaluates f, g and H at a new point in one batch).  ``nfev`` counts every
point evaluated.

Statuses:

====== ==========================================
status message
====== ==========================================
0      converged (|gradient| < gtol)
1      maximum number of steps reached
2      non-finite objective value or gradient
3      stopped by callback
4      difference step lost in rounding (x + h == x)
====== ==========================================

Status 4: at an iterate so large that ``x_i + h == x_i`` for a finite-difference step h
(``grad_step``, or newton's ``hessian_step``), the differences along that axis are exactly 0
whatever f does, so a zero gradient there would be reported as convergence. The run stops
with status 4 instead (checked before the gradient norm).

Every run is resumable: each trajectory record and the result carry a
JSON-serialisable ``state``; ``minimize(f, method=..., state=state, ...)``
with the same options continues exactly where that state was taken, so an
interrupted run ends bit-for-bit like an uninterrupted one (given a
deterministic f).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from fastrnn.calculus import (
    DEFAULT_RECURSIVE_HESSIAN_STEP,
    GRADIENT_METHODS,
    HESSIAN_METHODS,
    CountedFunction,
    step_lost_in_rounding,
    value_and_gradient,
    value_gradient_and_hessian,
)

METHODS = ("gd", "newton", "bfgs", "dfp")

# The paper's sanity box for (hidden size, sequence length, learning rate) as
# the quasi-Newton fallback checks it (its learning-rate floor there is 1e-6,
# not the objective's 1e-4).
PAPER_BOUNDS = ((20.0, 800.0), (5.0, 40.0), (1e-6, 1.0))

STATUS_MESSAGES = {
    0: "converged",
    1: "maximum number of steps reached",
    2: "non-finite objective value or gradient",
    3: "stopped by callback",
    4: "difference step lost in rounding (x + h == x)",
}

SKIPPED_UPDATE_NOTE = "skipped update: s.y <= 0"

_GRADIENT_OPTIONS = {"grad_step": 1e-8, "grad_method": "forward"}
_OPTIONS = {
    "gd": {"step": 0.1, **_GRADIENT_OPTIONS},
    "newton": {
        "multiplier": 1.0,
        "fallback_step": 10.0,
        "hessian_step": None,  # None: the Hessian method's default (1e-6 for recursive)
        "hessian_method": "recursive",
        **_GRADIENT_OPTIONS,
    },
    "bfgs": {
        "c": 0.99,
        "tau": 0.5,
        "max_halvings": 20,
        "fallback_step": 1.0,
        "min_step": 1e-6,
        "bounds": "paper",  # PAPER_BOUNDS when n == 3, else no check
        **_GRADIENT_OPTIONS,
    },
}
_OPTIONS["dfp"] = _OPTIONS["bfgs"]


@dataclass(frozen=True)
class OptimizeResult:
    """Outcome of :func:`minimize`; ``state`` resumes the run."""

    x: np.ndarray
    fun: float
    nit: int
    nfev: int
    status: int
    message: str
    trajectory: list = field(repr=False)
    state: dict = field(repr=False)

    @property
    def success(self) -> bool:
        return self.status == 0


class BFGSUpdate:
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


class DFPUpdate:
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

    def __init__(self, f: CountedFunction, method: str, options: dict):
        self.f = f
        self.method = method
        self.options = options
        self.nit = 0
        self.rule = "start"
        self.note = None

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
        self.fun, self.gradient = value_and_gradient(
            self.f, self.x, self.options["grad_step"], self.options["grad_method"], fun
        )

    def _mark_non_finite(self) -> None:
        self.fun, self.gradient = np.nan, np.full(self.x.size, np.nan)

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
        self.fun, self.gradient, self.hessian = value_gradient_and_hessian(
            self.f,
            self.x,
            options["grad_step"],
            options["grad_method"],
            options["hessian_step"],
            options["hessian_method"],
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

    def __init__(self, f, method, options, update_rule):
        super().__init__(f, method, options)
        self.update_rule = update_rule

    def start(self, x0):
        self.inverse_hessian = np.eye(x0.size)
        self.bounds = self._resolve_bounds(x0.size)
        super().start(x0)

    def _resolve_bounds(self, n: int) -> np.ndarray | None:
        bounds = self.options["bounds"]
        if isinstance(bounds, str) and bounds == "paper":
            return np.array(PAPER_BOUNDS) if n == len(PAPER_BOUNDS) else None
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
            s, y = self.x - x_old, self.gradient - gradient_old
            if s @ y > 0:
                self.inverse_hessian = self.update_rule.update(self.inverse_hessian, s, y)
            else:
                self.note = "; ".join(filter(None, (self.note, SKIPPED_UPDATE_NOTE)))


def _make_stepper(method: str, f: CountedFunction, options: dict) -> _Stepper:
    if method == "gd":
        return _GradientDescent(f, method, options)
    if method == "newton":
        return _Newton(f, method, options)
    update_rule = BFGSUpdate if method == "bfgs" else DFPUpdate
    return _QuasiNewton(f, method, options, update_rule)


def _resolve_options(method: str, options: dict) -> dict:
    valid = _OPTIONS[method]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for method {method!r}; "
            f"valid options: {', '.join(sorted(valid))}"
        )
    resolved = {**valid, **options}
    if resolved["grad_method"] not in GRADIENT_METHODS:
        raise ValueError(
            f"unknown grad_method {resolved['grad_method']!r}; valid: {', '.join(GRADIENT_METHODS)}"
        )
    if "hessian_method" in resolved and resolved["hessian_method"] not in HESSIAN_METHODS:
        raise ValueError(
            f"unknown hessian_method {resolved['hessian_method']!r}; "
            f"valid: {', '.join(HESSIAN_METHODS)}"
        )
    for name in ("step", "fallback_step", "grad_step", "min_step"):
        if name in resolved and not resolved[name] > 0:
            raise ValueError(f"option {name} must be positive, got {resolved[name]!r}")
    for name in ("c", "tau"):
        if name in resolved and not 0 < resolved[name] < 1:
            raise ValueError(f"option {name} must lie in (0, 1), got {resolved[name]!r}")
    if "max_halvings" in resolved and not (
        isinstance(resolved["max_halvings"], int) and resolved["max_halvings"] >= 1
    ):
        raise ValueError(f"option max_halvings must be an int >= 1, got {resolved['max_halvings']!r}")
    return resolved


def _initial_point(x0, seed, state) -> np.ndarray | None:
    if state is not None:
        if x0 is not None:
            raise ValueError("give x0 or state, not both")
        return None
    if x0 is None:
        # The paper draws each hyperparameter uniformly from [0, 10].
        return np.random.default_rng(seed).uniform(0.0, 10.0, size=3)
    x0 = np.array(x0, dtype=float)
    if x0.ndim != 1 or x0.size == 0 or not np.all(np.isfinite(x0)):
        raise ValueError(f"x0 must be a finite non-empty 1-D array, got {x0!r}")
    return x0


def _steps_lost(x: np.ndarray, options: dict) -> bool:
    """Whether a finite-difference step of ``options`` vanishes in rounding at x (status 4)."""
    steps = [options["grad_step"]]
    if options.get("hessian_method") == "recursive":
        steps.append(options["hessian_step"] or DEFAULT_RECURSIVE_HESSIAN_STEP)
    elif options.get("hessian_step") is not None:  # the stencil's default steps are relative: never lost
        steps.append(options["hessian_step"])
    return any(step_lost_in_rounding(x, step) for step in steps)


def minimize(
    f: Callable[[np.ndarray], float],
    x0=None,
    method: str = "gd",
    *,
    seed=None,
    max_steps: int = 10000,
    gtol: float = 1e-4,
    record_every: int = 1,
    callback: Callable[[dict], object] | None = None,
    state: dict | None = None,
    **options,
) -> OptimizeResult:
    """Minimise f from x0 (default: uniform in [0, 10]^3 drawn with ``seed``).

    Stops when |g| < gtol (or g == 0), after ``max_steps`` steps in total
    (counting steps before a resume), on a non-finite f or gradient, or when
    ``callback(record)`` returns true.  The trajectory holds a record every
    ``record_every`` steps plus the first and last: step, x, fun,
    gradient_norm, rule (what made the step), note, nfev and the resumable
    state.  ``state`` (from a record or a result) resumes a run; pass the same
    method and options.  ``options`` are method-specific: see ``_OPTIONS``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    resolved = _resolve_options(method, options)
    if not (isinstance(max_steps, (int, np.integer)) and max_steps >= 0):
        raise ValueError(f"max_steps must be a non-negative int, got {max_steps!r}")
    if not (isinstance(record_every, (int, np.integer)) and record_every >= 1):
        raise ValueError(f"record_every must be a positive int, got {record_every!r}")
    if not gtol >= 0:
        raise ValueError(f"gtol must be non-negative, got {gtol!r}")

    start = _initial_point(x0, seed, state)
    stepper = _make_stepper(method, CountedFunction(f), resolved)
    if state is None:
        stepper.start(start)
    else:
        stepper.restore(state)

    trajectory = []

    def record_and_ask_to_stop() -> bool:
        record = stepper.record()
        trajectory.append(record)
        return bool(callback(record)) if callback is not None else False

    status = 3 if record_and_ask_to_stop() else None
    while status is None:
        gradient_norm = np.linalg.norm(stepper.gradient)
        if not stepper.finite:
            status = 2
        elif _steps_lost(stepper.x, resolved):
            status = 4
        elif gradient_norm < gtol or gradient_norm == 0:
            status = 0
        elif stepper.nit >= max_steps:
            status = 1
        else:
            stepper.step()
            if stepper.nit % record_every == 0 and record_and_ask_to_stop():
                status = 3
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


def default_options(method: str) -> dict:
    """The options ``method`` uses when none are given (the paper's settings)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    return dict(_OPTIONS[method])
