"""The step rules of :func:`fastrnn.optimize.minimize`'s methods (module docstring of
:mod:`fastrnn.optimize.methods`: the table of rules), one stepper class each, and the run of a
sampler (:class:`SampleRun`: one trial a step, asked of a :class:`~fastrnn.optimize.samplers.Sampler`).

A stepper holds the iterate x with f(x), its gradient and counters, makes one step at a time and
keeps everything it needs in ``state()`` so a run resumes exactly. The quasi-Newton updates of
the approximate inverse Hessian (:class:`BFGSUpdate`, :class:`DFPUpdate`) are here too.
"""

from __future__ import annotations

import numpy as np

from fastrnn.optimize.calculus import AUTO_STEP, value_gradient_and_hessian
from fastrnn.optimize.problem import Counted
from fastrnn.optimize.samplers import RandomSampler, check_box, trial_rng
from fastrnn.optimize.stops import SkipTrials

#: The rule of a step that found no lower value along the gradient (gd with ``backtrack``).
NO_DECREASE_RULE = "gd-no-decrease"
#: With ``backtrack``, gd's step length doubles after each success, up to this (or ``step`` if
#: larger): one unit of the held-out objective's log space, a doubling of h or s, a decade of l.
MAX_GROWN_STEP = 1.0
#: The rule of such a step when gd restarts (``restart_trials``).
RESTART_RULE = "gd-restart"

SKIPPED_UPDATE_NOTE = "skipped update: s.y <= 0"


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


class Stepper:
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
        # the start's trials (option start_trials), carried by the step-0 record
        self.start_trials: list[dict] = []
        # trial indices drawn so far by the start and restarts (trial_rng(seed, i), i = 1, 2, ...)
        self.trials_drawn = 0
        #: True once the step rule can make no further progress (the run then ends as converged).
        self.stalled = False

    @classmethod
    def check_available(cls) -> None:
        """ValueError saying how to install what the method needs, if it is missing."""

    def start(self, x0: np.ndarray) -> None:
        fun = None
        if self.options.get("start_trials", 0) and np.all(np.isfinite(x0)):
            x0, fun = self._best_start(np.asarray(x0, dtype=float), self.options["start_trials"])
        self._move_to(self._snapped(x0), fun)

    def _snapped(self, x: np.ndarray) -> np.ndarray:
        """x on the problem's grid (option ``snap``; whole h and s for the RNN objective)."""
        if not self.options.get("snap", False) or not np.all(np.isfinite(x)):
            return x
        return np.asarray(self.f.snap(np.asarray(x, dtype=float)), dtype=float)

    def _best_start(self, x0: np.ndarray, trials: int, fun: float | None = None) -> tuple[np.ndarray, float]:
        """(the best of x0 and ``trials`` points uniform in the problem's box, its value): one batch,
        every point on the grid. Trial i is random search's proposal from ``trial_rng(seed, i)``; a
        later call (gd's restarts) draws the next indices; ``fun``, if given, is f(x0), and x0 is
        then taken as it is (the iterate)."""
        box = check_box(self.f.bounds, x0.size, f"{self.method} with start_trials")
        first = self.trials_drawn + 1
        self.trials_drawn += trials
        rngs = [trial_rng(self.seed, i) for i in range(first, first + trials)]
        drawn = [np.asarray(self.f.snap(point), dtype=float) for point in RandomSampler(box, {}).ask([], rngs)]
        if fun is None:
            candidates = [np.asarray(self.f.snap(x0), dtype=float)] + drawn
            values = np.asarray(self.f.evaluate_many(candidates), dtype=float)
        else:  # a restart: x0 is the iterate, whose value is known
            candidates = [x0] + drawn
            values = np.concatenate([[fun], np.asarray(self.f.evaluate_many(drawn), dtype=float)])
        self.start_trials = [{"x": c.tolist(), "fun": float(v)} for c, v in zip(candidates, values)]
        ranked = np.where(np.isnan(values), np.inf, values)
        best = int(np.argmin(ranked))  # the first of equal values: x0 before the trials
        self.note = f"{'start' if fun is None else 'restart'}: the best of {len(candidates)} trials"
        return candidates[best], float(values[best])

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
        """A dict the gradient fills with its diagnostics (noise-aware and span rules), else None."""
        return {} if self.options["grad_step"] == AUTO_STEP or self.options["grad_method"] == "span" else None

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
            **({"stalled": True} if self.stalled else {}),
            **({"trials_drawn": self.trials_drawn} if self.trials_drawn else {}),
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
        self.stalled = bool(state.get("stalled", False))
        self.trials_drawn = int(state.get("trials_drawn", 0))
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
            **({"trials": self.start_trials} if self.start_trials else {}),
            "state": self.state(),
        }

    def step(self) -> None:
        self.start_trials = []
        self.rule, self.note, x_new, fun_new = self._next_point()
        self.nit += 1
        self._move_to(x_new, fun_new)

    def _next_point(self):
        """(rule, note, next x, f(next x) or None if not yet known)."""
        raise NotImplementedError


class GradientDescent(Stepper):
    """x <- x - step * g / |g|.

    With ``backtrack`` = k > 0 a step must lower f: the step of the current length is tried, then
    up to k halvings of it, and the first point with a lower value is taken. The next step's
    length doubles after a success, up to max(step, MAX_GROWN_STEP), so a small ``step`` does not
    hold a run back once its steps succeed; after k + 1 failures x stays and the
    length stays halved, so the next step (same gradient: with common random numbers F is a
    fixed surface) tries shorter steps. Once the length is below ``min_step`` the run is
    converged: no lower value along the gradient. With ``restart_trials`` = m > 0 that step
    instead restarts: x becomes the best of x and m new points uniform in the box (one batch), and
    the length is ``step`` again. f at a tried point is one batch, reused as the new iterate's
    value."""

    def start(self, x0):
        self.length = self.options["step"]
        super().start(x0)

    def state(self):
        return {**super().state(), **({"length": self.length} if self.options.get("backtrack") else {})}

    def _restore_extra(self, state):
        self.length = float(state.get("length", self.options["step"]))

    def _next_point(self):
        if not self.options.get("backtrack"):
            return "gd", None, self._snapped(self.x + _normalised_step(self.gradient, self.options["step"])), None
        length = self.length
        for _ in range(self.options["backtrack"] + 1):
            trial = self._snapped(self.x + _normalised_step(self.gradient, length))
            if not np.array_equal(trial, self.x):
                value = float(self.f(trial))
                if value < self.fun:
                    self.length = min(2 * length, max(self.options["step"], MAX_GROWN_STEP))
                    return "gd", None, trial, value
            length /= 2
        if length < self.options["min_step"] and self.options.get("restart_trials"):
            self.length = self.options["step"]
            x_new, fun_new = self._best_start(self.x, self.options["restart_trials"], self.fun)
            return RESTART_RULE, f"no lower value along the gradient; {self.note}", x_new, fun_new
        self.length = length
        self.stalled = length < self.options["min_step"]
        return NO_DECREASE_RULE, f"no lower value in {self.options['backtrack'] + 1} tries; next length {length:.3g}", \
            self.x, self.fun


class Newton(Stepper):
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
            return "gd-fallback", None, self._snapped(self.x + fallback), None
        return "newton", None, self._snapped(self.x - self.options["multiplier"] * newton_step), None

    def _newton_step(self) -> np.ndarray | None:
        """solve(H, g), or None when H is singular (the paper tests det(H) == 0)."""
        if not np.all(np.isfinite(self.hessian)) or np.linalg.det(self.hessian) == 0:
            return None
        try:
            return np.linalg.solve(self.hessian, self.gradient)
        except np.linalg.LinAlgError:
            return None


class QuasiNewton(Stepper):
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

    def _line_search(self, direction: np.ndarray) -> tuple[np.ndarray, float | None]:
        """First alpha = tau**k, k < max_halvings, with
        f(x + alpha p) <= f(x) + c alpha (p.g); returns (alpha p, f there). With ``snap`` each
        trial point is moved onto the grid first, and the step is to the snapped point.

        Like the paper's loop, if no trial passes, the alpha after the last
        halving is returned untested (f there is then None).
        """
        c, tau = self.options["c"], self.options["tau"]
        slope = direction @ self.gradient
        alpha = 1.0
        for _ in range(self.options["max_halvings"]):
            trial = self._snapped(self.x + alpha * direction)
            trial_value = self.f(trial)
            if trial_value <= self.fun + c * alpha * slope:
                return trial - self.x, trial_value
            alpha *= tau
        return self._snapped(self.x + alpha * direction) - self.x, None

    def _next_point(self):
        options = self.options
        # The paper runs the line search before its sanity check; checking
        # first gives the same iterates without spending the search's evaluations.
        if self._out_of_bounds():
            fallback = _normalised_step(self.gradient, options["fallback_step"])
            return "gd-fallback-out-of-range", None, self._snapped(self.x + fallback), None
        direction = -self.inverse_hessian @ self.gradient
        s, fun_new = self._line_search(direction)
        if not np.linalg.norm(s) >= options["min_step"]:  # also catches a NaN step
            fallback = _normalised_step(self.gradient, options["fallback_step"])
            return "gd-fallback-short-step", None, self._snapped(self.x + fallback), None
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


class BFGS(QuasiNewton):
    update_rule = BFGSUpdate()


class DFP(QuasiNewton):
    update_rule = DFPUpdate()


class SampleRun:
    """A sampler's run (:mod:`fastrnn.optimize.samplers`): x is the best point so far, and every step asks
    the sampler for ``batch`` points at once, moves them onto the problem's grid (``snap``: whole h
    and s for the RNN objective) and evaluates them as one batch (for the RNN objective: the
    networks train in parallel, on threads or a cluster's workers). The history of trials lives
    here, once; each record carries its step's trials (``trial``, or ``trials`` for a batch of
    more than one), and a state carries none (resuming takes the history from the records).

    The trials of step k are those with indices 1 + (k - 1) b .. k b, asked from the history before
    them, so the run is a function of the seed and the batch size b, whatever evaluates them.

    A batch the function turns away before training it (:class:`~fastrnn.optimize.stops.SkipTrials`:
    a time budget cannot pay for it) is a step too: its trials enter the history as skipped (value
    None; TPE counts them as failed trials), its record says so (``rule`` "skipped", each trial
    ``fun`` None and ``skipped`` true), and the next step asks again, from new generators."""

    uses_gradient = False

    def __init__(self, sampler_class: type, f: Counted, method: str, options: dict, seed=None):
        self.f, self.method, self.options, self.seed = f, method, options, seed
        self.sampler_class = sampler_class  # METHOD_TABLE[method].algorithm
        self.nit, self.rule, self.note = 0, "start", None
        self.history: list = []
        self.batch = int(options.get("batch", 1))

    @classmethod
    def check_available(cls) -> None:
        pass

    def _make_sampler(self, n: int) -> None:
        self.sampler = self.sampler_class(check_box(self.f.bounds, n, self.method), self.options)

    def start(self, x0: np.ndarray) -> None:
        self._make_sampler(x0.size)
        if np.all(np.isfinite(x0)):  # on the grid, as every trial: one network, not four corners
            x0 = np.asarray(self.f.snap(np.asarray(x0, dtype=float)), dtype=float)
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
        self.history = [(list(z), None if v is None else float(v)) for z, v in history][:1 + self.nit * self.batch]
        self._make_sampler(self.x.size)

    def record(self) -> dict:
        trials = [{"x": list(z), "fun": value, **({"skipped": True} if value is None else {})}
                  for z, value in self.history[-(self.batch if self.nit else 1):]]
        own = {"trial": trials[0]} if len(trials) == 1 else {"trials": trials}
        return {"step": self.nit, "x": self.x.tolist(), "fun": float(self.fun), "rule": self.rule,
                "note": self.note, "nfev": self.f.nfev, **own, "state": self.state()}

    def step(self) -> None:
        first = len(self.history)
        rngs = [trial_rng(self.seed, first + j) for j in range(self.batch)]
        candidates = [np.asarray(self.f.snap(np.asarray(candidate, dtype=float)), dtype=float)
                      for candidate in self.sampler.ask(self.history, rngs)]
        try:
            values = self.f.evaluate_many(candidates)  # one batch: trained in parallel
        except SkipTrials as skip:
            self.history.extend((candidate.tolist(), None) for candidate in candidates)
            self.nit += 1
            self.rule, self.note = "skipped", str(skip)
            return
        for candidate, value in zip(candidates, values):
            value = float(value)
            self.history.append((candidate.tolist(), value))
            if value < self.fun:  # the first of equal values stays the best
                self.x, self.fun = candidate, value
        self.nit += 1
        self.rule, self.note = self.method, None
