"""Tuning runs: :func:`fastrnn.optimize.minimize` on the RNN objective, recorded as JSON Lines.

A run file (its lines and their checks: :mod:`fastrnn.tuning.run_files`) is appended to and
flushed as the run goes, so a run that is interrupted (Ctrl-C, a killed process) loses at most
the record being written.

:func:`tune` with ``resume=True`` continues from the last record to the same result an
uninterrupted run would have reached.

Safety. A file is only ever appended to by :func:`tune`, which holds an advisory lock on it
(``fcntl.flock``, where the platform has it) while the run lasts, so a second process
writing or resuming the same file gets a :class:`RunFileError` ("in use by another
process") instead of interleaving its records. A new run refuses an existing file unless
``overwrite=True``, and writes its file (creating its folders, or truncating the file it
replaces) only once its step 0 is done: a run refused before that leaves the disk as it was
(:class:`RunFileSink`). Resuming first cuts off a torn last line (a killed writer) so the next
record starts on a line of its own, and a finished run is not continued: its result is
returned as stored, with nothing appended. :func:`read_run` checks the shape of every line
and names the line of the first one that is wrong.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Callable

import numpy as np

from ..objective.function import Counters, Objective
from ..objective.settings import differences, settings_from_record
from ..objective.space import SpaceView
from ..optimize.methods import (
    METHOD_TABLE,
    METHODS,
    OptimizeResult,
    SkipTrials,
    Status,
    StopOptimization,
    check_run_arguments,
    minimize,
)
from ..optimize.samplers import history_from_records
from .halving_lanes import Lanes, Pace, calibrate, work
from .run_files import (  # noqa: F401 (re-exported)
    BUDGET_COUNTERS,
    FORMAT_VERSION,
    FORMAT_VERSIONS,
    RunFile,
    RunFileError,
    budget_spent,
    budget_stop_note,
    check_budgets,
    check_new_run_path,
    counters_at_start,
    first_step_cost,
    format_seconds,
    read_run,
    run_is_finished,
    step_cost_without_trials,
    trajectory_array,
)
from .run_sink import RunFileSink, _ends_with_newline, _write  # noqa: F401 (re-exported: halving_store's, tests')

#: Optimizer settings for tuning in the log space of the held-out objective, used where the user
#: gives none (the method table's defaults are the paper's, for its linear space). A step of 0.5
#: moves h or s by a factor 1.41 or l by 10**0.5, and the gradient's differences span as much on
#: either side, far above the chaos of Adagrad at the paper's 1e-8. The samplers try 4 points a
#: step, trained in parallel (a fixed number, not the thread count: the run depends on it).
HELDOUT_SETTINGS = {
    # issue 21 (docs/COMPARISON.md, "Making the gradient methods find good networks"): wide central
    # differences between whole networks (a one-unit difference along h measures two random
    # initialisations, not the trend), from the best of a first batch of trials, on whole h and s
    "gd": dict(step=0.5, grad_method="span", grad_step=0.5, start_trials=8, snap=True, backtrack=3,
               restart_trials=8, min_step=0.01),
    "bfgs": dict(c=1e-4, fallback_step=0.5, grad_method="span", grad_step=0.5, start_trials=8, snap=True),
    "dfp": dict(c=1e-4, fallback_step=0.5, grad_method="span", grad_step=0.5, start_trials=8, snap=True),
    "newton": dict(grad_method="span", grad_step=0.5, hessian_method="stencil", hessian_step=0.5, start_trials=8,
                   snap=True),
    # a step's trials train in parallel: every thread of a laptop busy, whatever its count
    "random": dict(batch=4),
    "tpe": dict(batch=4),
}


def default_method(F: Objective) -> str:
    """The method ``fastrnn tune`` uses when none is given.

    The kind's own (the paper's objective: gd, the paper's first method), else the method that
    found the best networks at equal budget in docs/COMPARISON.md: TPE where Optuna (the
    ``fastrnn[optuna]`` extra) is installed, else random search, the runner-up.
    """
    if F.definition.default_method is not None:
        return F.definition.default_method
    try:
        import optuna  # noqa: F401
    except ImportError:
        return "random"
    return "tpe"


def _settings(F: Objective, method, options, seed, max_steps, record_every, gtol, x0, budget,
              started_at: dict) -> dict:
    at_start = {"counters_at_start": started_at} if any(started_at.values()) else {}
    return dict(
        type="settings",
        format_version=FORMAT_VERSION,
        method=method,
        options=options,
        seed=seed,
        max_steps=max_steps,
        record_every=record_every,
        gtol=gtol,
        x0=None if x0 is None else [float(v) for v in x0],
        objective=F.settings(),
        evaluation={"backend": F.backend.name},
        **{name: value for name, value in budget.items() if value is not None},
        **at_start,
    )


# Settings a resumed run may change: how long it runs, how often it records, what it may spend.
_RESUMABLE_CHANGES = ("max_steps", "record_every", "budget_chars", "budget_trainings", "budget_seconds")


#: What a resumed run keeps besides its objective: a different value is another run.
_RUN_KEYS = ("method", "options", "seed", "gtol", "x0")


def _check_same_run(saved: dict, wanted: dict, F: Objective, path) -> None:
    """RunFileError naming what differs between a run file's settings and this run's: a run key,
    or each field of the objective's settings (:func:`fastrnn.objective.settings.differences`)."""
    where = f"cannot resume {os.fspath(path)!r}"
    for key in _RUN_KEYS:
        if saved.get(key) != wanted.get(key):
            raise RunFileError(f"{where}: its {key} is {saved.get(key)!r}, this run's is {wanted.get(key)!r}; resume "
                               "with the same settings or start a new --out file")
    differ = differences(settings_from_record(saved["objective"]), F.definition)
    if differ:
        shown = "; ".join(f"{name} {ours!r} there, {theirs!r} here" for name, ours, theirs in differ[:3])
        raise RunFileError(f"{where}: its objective differs ({shown}); resume with the same settings or start a "
                           "new --out file"[:1000])


#: A sampler under a time budget stops after this many batches in a row were skipped (each
#: predicted to overrun it): the time left pays for none of the networks it draws.
MAX_SKIPPED_BATCHES = 10


def tune(
    F: Objective,
    method: str = "gd",
    *,
    x0=None,
    seed: int = 0,
    max_steps: int = 10000,
    record_every: int = 100,
    gtol: float = 1e-4,
    out: str | os.PathLike | None = None,
    resume: bool | RunFile = False,
    overwrite: bool = False,
    on_step: Callable[[dict], None] | None = None,
    budget_chars: int | None = None,
    budget_trainings: int | None = None,
    budget_seconds: float | None = None,
    companions: tuple = (),
    **options,
) -> OptimizeResult:
    """Minimise ``F`` with ``method``; write the run to ``out`` (JSON Lines) as it goes.

    ``resume=True`` continues the run in ``out`` from its last record (the settings must
    match; ``max_steps`` may grow); a finished run is returned as stored, nothing appended.
    ``resume`` may also be the :class:`RunFile` of ``out`` already read (the command line reads
    it once, to take its settings).
    A new run refuses an existing ``out`` unless ``overwrite=True``, and a folder as ``out``; a
    missing folder is created. ``companions``: the files that belong to the run in ``out`` (the
    command line's model file beside it): a new run refuses one that exists unless
    ``overwrite=True``, and then deletes it as it replaces the run file. A new run's file is
    written (created or truncated) only once its step 0 is done, so a run refused before (a budget
    that cannot pay for its start, say) leaves the disk as it was; until then an existing file is
    held locked, unchanged. ``on_step(record)`` sees every step with the objective's counters so
    far, e.g. for a progress bar. RunFileError for a file that cannot be used.

    The optimizer works in the objective's search space (``F.space``, :mod:`fastrnn.objective.space`):
    for the log space it minimises the objective as a function of (log2 h, log2 s, log10 l).
    ``x0``, the records' ``x`` and the result's ``x`` are always (h, s, l); records also carry
    ``z``, the point in the search space, and the optimizer's state is kept in z.

    Budgets: the run stops (status BUDGET) once the networks it trained have read
    ``budget_chars`` characters of training text, or ``budget_trainings`` networks were trained
    (trainings the memo serves are free), checked before every batch of new trainings
    (``F.before_training``, as it was when ``tune`` returns) and after every step. After a step
    a gradient run also stops once what is left of a budget is less than step 0 cost (the start
    point's value and gradient: the least a step costs), so it does not start a step it cannot
    finish: a step the budget ends midway is dropped, and its trainings with it. (A sampler's
    trial is one batch, which a budget never ends midway.) What ``F`` trained before
    the run does not count (the run file keeps its counters at the start, if any).
    ``budget_seconds`` limits the run's wall-clock time, from this call on, the tuner's own work
    included. Each batch of new trainings is predicted from the pace measured so far: a gradient
    run stops before a batch that would overrun the budget (and once less is left than its last
    step took); a sampler skips such a batch and asks for another (its trials are recorded as
    skipped), and stops after ``MAX_SKIPPED_BATCHES`` skipped in a row, so a run that drew one
    network too large for the time left goes on with cheaper ones. Records keep the run's
    ``elapsed`` seconds, so a resumed run counts the time spent before. (A time budget makes the
    run depend on the machine's speed and load: the other budgets do not.)

    Every argument is checked before the run file is touched: a refused call changes no file.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    if resume and out is None:
        raise ValueError("resuming needs the run file")
    started = time.perf_counter()
    budget = check_budgets(budget_chars, budget_trainings, budget_seconds)
    check_run_arguments(method, options, max_steps, record_every, gtol)
    if x0 is not None:
        x0 = _check_x0(F, x0)
    started_at = _spend(F.counters)
    settings = _settings(F, method, options, seed, max_steps, record_every, gtol, x0, budget, started_at)
    sink = None if out is None else RunFileSink(out, bool(resume), overwrite, header=None if resume else settings,
                                                companions=companions)
    hook = F.before_training
    try:
        state = history = first_cost = None
        elapsed_before = 0.0
        if resume:
            saved = resume if isinstance(resume, RunFile) else read_run(out)
            _check_same_run(saved.settings, settings, F, out)
            started_at = counters_at_start(saved.settings)
            first_cost = first_step_cost(saved)
            if run_is_finished(saved, max_steps, **budget):
                return _stored_result(saved)
            sink.truncate(saved.end)  # a torn last line goes; the next record starts a line
            sink.seek(saved.end)
            if saved.end and not _ends_with_newline(sink, saved.end):
                sink.write(b"\n")
            if saved.records:
                last = saved.records[-1]
                state = last["state"]
                if METHOD_TABLE[method].is_sampler:
                    history = history_from_records(saved.records)
                F.counters = Counters(**{k: v for k, v in last["counters"].items() if k != "memo_share"})
                elapsed_before = float(last.get("elapsed", 0.0))
                if last.get("noise_state") is not None:
                    F.set_noise_state(last["noise_state"])
                x0 = None
        clock = _Clock(started, elapsed_before)
        return _run(F, method, x0, seed, max_steps, record_every, gtol, sink, state, history, on_step, options,
                    budget, started_at, first_cost, clock)
    finally:
        F.before_training = hook
        if sink is not None:
            sink.close()  # also releases the lock


def _spend(counters) -> dict:
    """The counters a budget is measured in."""
    return {"training_chars": int(counters.training_chars), "trainings_run": int(counters.trainings_run)}


def _check_x0(F: Objective, x0) -> list[float]:
    try:
        point = np.array(x0, dtype=float)
    except (TypeError, ValueError):
        point = None
    if point is None or point.shape != (3,) or not np.isfinite(point).all():
        raise ValueError(f"x0 must be three finite numbers (h, s, l), got {x0!r}")
    F.space.from_point(point)  # ValueError for a point the search space cannot hold
    return [float(v) for v in point]


class _Clock:
    """A run's wall-clock seconds: those of earlier sessions (a resumed run's) plus this one's."""

    def __init__(self, started: float, before: float = 0.0):
        self.started, self.before = started, before

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.started


def search_problem(F: Objective):
    """What the optimizer minimises: F itself where its settings say so (the paper's objective in
    its linear space, by finite differences, as the paper did), else F seen in its search space."""
    return F if F.definition.searched_as_is else SpaceView(F)


def _run(F, method, x0, seed, max_steps, record_every, gtol, sink, state, history, on_step, options, budget,
         started_at: dict, first_cost: dict | None, clock: _Clock) -> OptimizeResult:
    resumed_step = None if state is None else state["nit"]
    started = time.perf_counter()
    problem = search_problem(F)
    space = problem.space if isinstance(problem, SpaceView) else None
    is_sampler = METHOD_TABLE[method].is_sampler
    # a sampler's records hold its history: every one is written
    every = 1 if is_sampler else record_every

    def in_hsl(record: dict) -> dict:
        if space is None:
            return record
        record = {**record, "x": space.to_point(record["x"]).tolist(), "z": record["x"]}
        for key in ("trial", "trials"):
            if key in record:
                trials = [{**trial, "x": space.to_point(trial["x"]).tolist(), "z": trial["x"]}
                          for trial in (record[key] if key == "trials" else [record[key]])]
                record[key] = trials if key == "trials" else trials[0]
        return record

    def spent_so_far() -> dict:
        spent = {name: int(getattr(F.counters, name)) - int(started_at[name]) for name in BUDGET_COUNTERS}
        return {**spent, "seconds": clock.elapsed()}

    def spent(step_cost: dict | None = None) -> Status | None:
        """BUDGET once a budget is spent, or (after a step, given ``step_cost``) once what is left
        of it cannot pay for another step (:func:`~fastrnn.tuning.run_files.budget_spent`)."""
        if budget_spent(spent_so_far(), step_cost, budget):
            return Status.BUDGET
        return None

    own_hook = F.before_training

    # A time budget predicts each batch with halving's cost model and pace (per thread, learnt from
    # the batches this run has trained: a batch lasts about max(its largest network, its share of
    # the threads)); a slower batch is believed at once, as the machine may be shared.
    lanes = F.threads or 1
    # measured before the run (about 0.3 s, kernels loaded first): the first batch is then
    # predicted from this machine's pace, not left to a guess or to one small network's time
    pace = Pace(calibrate(Lanes(F), F.dtype) if budget["budget_seconds"] is not None and F.heldout is not None
                else None)
    # a sampler's guard predicts each batch, so a cheaper one than the last may still fit: it does
    # not stop merely because less is left than its last step took, as a gradient run does
    batches_predicted = is_sampler and pace.known
    itemsize = 4 if F.dtype == "float32" else 8
    heldout_chars = len(F.heldout.data) if F.heldout is not None else 0
    pending: list = [None]

    def works(specs) -> list[float]:
        return [work(spec.hidden, spec.seq_length, spec.vocab_size, spec.steps * spec.seq_length, itemsize=itemsize)
                + work(spec.hidden, spec.seq_length, spec.vocab_size, heldout_chars, scoring=True, itemsize=itemsize)
                for spec in specs]

    skipped_in_a_row = [0]
    cheapest = [np.inf]  # the work of the cheapest network this run has met (trained or skipped)

    def guard(specs) -> None:
        """Before a batch of new trainings: stop once the budget is spent; when the batch would
        overrun the time budget (predicted from the pace measured so far), a sampler skips it and
        a gradient run stops (the step is dropped)."""
        if own_hook is not None:
            own_hook(specs)
        if pending[0] is not None:  # the previous batch has ended: its time is known
            done, seconds_before = pending[0]
            pace.observe(done, lanes, F.counters.seconds - seconds_before)
            pending[0] = None
        if spent() is not None:
            raise StopOptimization(Status.BUDGET)
        overrun = _overrun(specs)
        if overrun is not None:
            if not is_sampler or skipped_in_a_row[0] >= MAX_SKIPPED_BATCHES or _nothing_fits():
                raise StopOptimization(Status.BUDGET)
            skipped_in_a_row[0] += 1
            raise SkipTrials(overrun)
        skipped_in_a_row[0] = 0
        pending[0] = (works(specs), F.counters.seconds)

    def _nothing_fits() -> bool:
        """Whether the time left pays for none of the networks met so far, each alone (asking
        for more would only spend the time left)."""
        return clock.elapsed() + pace.seconds([cheapest[0]], lanes) > budget["budget_seconds"]

    def _overrun(specs) -> str | None:
        """Why the batch would overrun the time budget, or None."""
        if budget["budget_seconds"] is None or not pace.known:
            return None
        batch = works(specs)
        cheapest[0] = min(cheapest[0], *batch)
        need, left = pace.seconds(batch, lanes), budget["budget_seconds"] - clock.elapsed()
        if need <= left:
            return None
        return f"the batch would take about {format_seconds(need)} s, {format_seconds(max(left, 0.0))} s are left"

    # What step 0 cost: a gradient run does not start a step once less than that is left of its
    # budget (a step is several batches, and the budget would end it midway; a sampler's trial is one).
    step_cost: list[dict | None] = [first_cost]
    # The last step's wall-clock seconds: a time budget does not start a step it cannot pay for.
    step_seconds: list[float] = [0.0]
    step_ended: list[float | None] = [None]
    # The last finished step's record when --record-every skipped it: written if the run is
    # interrupted (Ctrl-C, SIGTERM), so resuming does not redo finished steps.
    unwritten: list[dict | None] = [None]

    def stop_cost() -> dict | None:
        """What the next step is expected to cost, for :func:`budget_spent`."""
        return step_cost[0] if batches_predicted else {**(step_cost[0] or {}), "seconds": step_seconds[0]}

    def callback(record: dict):
        if sink is not None:
            sink.start()  # a new run's file: written now that its start is done (held locked for on_step)
        record = in_hsl(record)
        if on_step is not None:
            on_step({**record, "counters": F.counters.as_dict(), "elapsed": clock.elapsed()})
        step = record["step"]
        if sink is not None and step != resumed_step:
            entry = _file_record(record, F, clock)  # the counters as of this step, not of a later interruption
            if step % every == 0 or step == 0:
                unwritten[0] = None  # before writing: an interrupted write leaves its torn line last
                _write(sink, entry)
            else:
                unwritten[0] = entry
        if step == 0 and step != resumed_step and not is_sampler:
            step_cost[0] = step_cost_without_trials(spent_so_far(), record, F.updates, F.beta)
        now = clock.elapsed()
        step_seconds[0], step_ended[0] = (now - step_ended[0] if step_ended[0] is not None else 0.0), now
        return spent(stop_cost())

    if x0 is not None and space is not None:
        x0 = space.from_point(x0)
    F.before_training = guard
    try:
        result = minimize(problem, x0=x0, method=method, seed=seed, max_steps=max_steps, gtol=gtol,
                          record_every=1, callback=callback, state=state, history=history, **options)
    except BaseException:
        if unwritten[0] is not None:
            _write(sink, unwritten[0])
        raise
    if space is not None:
        result = replace(result, x=space.to_point(result.x), trajectory=[in_hsl(r) for r in result.trajectory])
    if result.status == Status.BUDGET:
        now = spent_so_far()
        # the budget that stopped it: one spent, else one whose rest cannot pay for a step, else the
        # time left, too short for the next batch predicted
        note = budget_stop_note(now, stop_cost(), budget)
        if note is None and budget["budget_seconds"] is not None and now["seconds"] < budget["budget_seconds"]:
            left = format_seconds(budget["budget_seconds"] - now["seconds"])
            if batches_predicted and skipped_in_a_row[0]:
                note = (f"the {left} seconds left pay for none of the last {skipped_in_a_row[0] + 1} batches "
                        "proposed, at the speed measured so far")
            else:
                note = (f"the {left} seconds left are too few for the next batch of trainings, at the speed "
                        "measured so far")
        if note is not None:
            result = replace(result, message=f"{result.message} ({note})")
    if sink is not None:
        last = result.trajectory[-1]
        if last["step"] % every != 0 and last["step"] != resumed_step:
            _write(sink, _file_record(last, F, clock))
        _write(sink, dict(
            type="result", x=result.x.tolist(), fun=result.fun, nit=result.nit, nfev=result.nfev,
            status=result.status, message=result.message, counters=F.counters.as_dict(),
            seconds=time.perf_counter() - started, elapsed=clock.elapsed(), step_seconds=step_seconds[0],
            **({"budget_seconds": budget["budget_seconds"]} if budget["budget_seconds"] is not None else {}),
        ))
    return result


#: Keys a run file's records add to the optimizer's records.
_FILE_ONLY_KEYS = ("type", "counters", "noise_state", "elapsed")


def _stored_result(run: RunFile) -> OptimizeResult:
    """A finished run's result as :func:`minimize` returns one (a :class:`Status`, records without
    the file's own keys)."""
    result = run.result
    return OptimizeResult(
        x=np.array(result["x"], dtype=float), fun=float(result["fun"]), nit=result["nit"], nfev=result["nfev"],
        status=Status(result["status"]), message=result["message"],
        trajectory=[{k: v for k, v in r.items() if k not in _FILE_ONLY_KEYS} for r in run.records],
        state=run.records[-1]["state"] if run.records else {},
    )


def _file_record(record: dict, F: Objective, clock: _Clock) -> dict:
    return dict(type="record", **record, counters=F.counters.as_dict(), noise_state=F.noise_state(),
                elapsed=clock.elapsed())


__all__ = ["FORMAT_VERSION", "FORMAT_VERSIONS", "HELDOUT_SETTINGS", "RunFile", "RunFileError", "default_method",
           "read_run", "run_is_finished", "search_problem", "trajectory_array", "tune"]
