"""Minimise a function with finite-difference derivatives, as the paper does.

One entry point, :func:`minimize`, in the spirit of ``scipy.optimize.minimize``: every method
takes the same arguments and returns one :class:`OptimizeResult`. The methods live in one
table, :data:`METHOD_TABLE`: a name, the algorithm (a stepper class of
:mod:`fastrnn.optimize.steppers` that makes the step, its docstring giving the step rule, or a
:class:`fastrnn.optimize.samplers.Sampler`), and its options with their defaults (the paper's) and
rules. Adding a method is a stepper or sampler class and a table entry; the command line builds
its flags from the table.

==========  =============================================================================
method      step rule
==========  =============================================================================
gd          x <- x - step * g / |g|                              (normalised gradient; with
            backtrack = k: the first of the step and k halvings that lowers f)
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

import functools
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from fastrnn.optimize.calculus import (
    AUTO_STEP,
    DEFAULT_RECURSIVE_HESSIAN_STEP,
    HESSIAN_METHODS,
    OPTIMIZER_GRADIENT_METHODS,
    step_lost_in_rounding,
)
from fastrnn.optimize.problem import Counted, as_problem
from fastrnn.optimize.samplers import RandomSampler, Sampler, TPESampler
from fastrnn.optimize.steppers import (  # noqa: F401 (the update rules and the note: re-exported)
    BFGS,
    DFP,
    SKIPPED_UPDATE_NOTE,
    BFGSUpdate,
    DFPUpdate,
    GradientDescent,
    Newton,
    QuasiNewtonUpdate,
    SampleRun,
)
from fastrnn.optimize.stops import STATUS_MESSAGES, SkipTrials, Status, StopOptimization  # noqa: F401 (re-exported)


class BudgetTooSmall(ValueError):
    """The run was stopped (:class:`StopOptimization`) before its start was evaluated: there is no
    point to return. Raised by :func:`minimize` in place of the stop."""


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


class Option(NamedTuple):
    """One option of a method: its default (the paper's), its rule, and what it does."""

    default: object
    #: "positive", "open_unit" (0 < v < 1), "int_min1", "int_min0", "bool", "choice" (one of
    #: ``choices``), "positive_or_none", "positive_or_auto", or "any" (checked where it is used).
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
    "grad_method": Option("forward", "choice", "finite-difference rule of the gradient (span: central differences "
                          "over grad_step between points on the problem's grid)", OPTIMIZER_GRADIENT_METHODS),
    "start_trials": Option(0, "int_min0", "start from the best of x0 and this many points uniform in the box "
                           "(one parallel batch)"),
    "snap": Option(False, "bool", "move every iterate onto the problem's grid (whole h and s)"),
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

_SAMPLER_OPTIONS = {
    "batch": Option(1, "int_min1", "trials proposed at once and evaluated as one parallel batch (the run "
                    "depends on it, not on the number of threads or workers)"),
}

#: Every method: its stepper and its options. ``METHODS`` lists the names.
METHOD_TABLE: dict[str, Method] = {
    "gd": Method(GradientDescent, {
        "step": Option(0.1, "positive", "length of each normalised gradient step"),
        "backtrack": Option(0, "int_min0", "halvings tried until a step lowers f (0: every step is taken)"),
        "min_step": Option(1e-3, "positive", "shortest step: gd with backtrack restarts or converges below it, bfgs "
                           "and dfp fall back to a gradient-descent step"),
        "restart_trials": Option(0, "int_min0", "with backtrack: once no step down to min_step lowers f, restart from "
                                 "the best of x and this many new points uniform in the box (0: converge)"),
        **_GRADIENT_OPTIONS,
    }),
    "newton": Method(Newton, {
        "multiplier": Option(1.0, "positive", "factor on the Newton step (the paper's trial 7: 1000)"),
        "fallback_step": Option(10.0, "positive", "length of the gradient-descent fallback step"),
        "hessian_step": Option(None, "positive_or_none", "finite-difference step of the Hessian (None: the rule's default)"),
        "hessian_method": Option("recursive", "choice", "finite-difference rule of the Hessian", HESSIAN_METHODS),
        **_GRADIENT_OPTIONS,
    }),
    "bfgs": Method(BFGS, _QUASI_NEWTON_OPTIONS),
    "dfp": Method(DFP, _QUASI_NEWTON_OPTIONS),
    "random": Method(RandomSampler, {**_SAMPLER_OPTIONS}),
    "tpe": Method(TPESampler, {
        "startup_trials": Option(10, "int_min1", "random trials before TPE's model takes over"),
        **_SAMPLER_OPTIONS,
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
    for least in (0, 1):
        if rule == f"int_min{least}" and not (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
                                               and value >= least):
            raise ValueError(f"option {name} must be an int >= {least}, got {value!r}")
    if rule == "bool" and not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"option {name} must be true or false, got {value!r}")
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
    if resolved.get("grad_method") == "span" and resolved.get("grad_step") == AUTO_STEP:
        raise ValueError("grad_method 'span' needs a number as grad_step (the span of its differences), not 'auto'")
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
    stepper_class = functools.partial(SampleRun, entry.algorithm) if entry.is_sampler else entry.algorithm
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
        try:
            stepper.start(start)
        except StopOptimization as stop:
            trials = resolved.get("start_trials", 0)
            more = f", or fewer than the {trials} trials its start trains with it" if trials else ""
            raise BudgetTooSmall(f"{stop}: the budget cannot pay for the start point's evaluation; give a larger "
                                 f"budget{more}") from None
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
                                        or np.linalg.norm(stepper.gradient) == 0 or stepper.stalled):
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


__all__ = ["METHOD_TABLE", "METHODS", "SKIPPED_UPDATE_NOTE", "STATUS_MESSAGES", "BFGSUpdate", "BudgetTooSmall",
           "DFPUpdate", "Method",
           "OptimizeResult", "Option", "QuasiNewtonUpdate", "SkipTrials", "Status", "StopOptimization", "check_method",
           "check_run_arguments", "default_options", "minimize", "resolve_options"]
