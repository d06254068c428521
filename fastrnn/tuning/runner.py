"""Tuning runs: :func:`fastrnn.optimize.minimize` on the RNN objective, recorded as JSON Lines.

A run file holds one JSON object per line, appended and flushed as the run goes, so a run that
is interrupted (Ctrl-C, a killed process) loses at most the record being written:

``{"type": "settings", ...}``
    first line: format version, method, optimizer options, seed, max_steps, record_every,
    gtol, x0 and the objective's settings (corpus fingerprint, alpha, beta, noise, ...).
``{"type": "record", "step", "x", "fun", "gradient_norm", "rule", "note", "nfev", "state",
"counters", "noise_state"}``
    every ``record_every`` steps, and the first and last step; ``state`` is the optimizer's
    resumable state, ``noise_state`` the objective's seed generator (fresh noise only).
``{"type": "result", "x", "fun", "nit", "nfev", "status", "message", "counters", "seconds"}``
    last line, once the run has ended.

:func:`tune` with ``resume=True`` continues from the last record to the same result an
uninterrupted run would have reached.

Safety. A file is only ever appended to by :func:`tune`, which holds an advisory lock on it
(``fcntl.flock``, where the platform has it) while the run lasts, so a second process
writing or resuming the same file gets a :class:`RunFileError` ("in use by another
process") instead of interleaving its records. A new run refuses an existing file unless
``overwrite=True``. Resuming first cuts off a torn last line (a killed writer) so the next
record starts on a line of its own, and a finished run is not continued: its result is
returned as stored, with nothing appended. :func:`read_run` checks the shape of every line
and names the line of the first one that is wrong.
"""

from __future__ import annotations

import json
import numbers
import os
import time
from dataclasses import dataclass, fields, replace
from typing import Callable

import numpy as np

from ..objective.function import Counters, Objective
from ..objective.settings import differences, settings_from_record
from ..objective.space import SpaceView
from ..optimize.methods import (
    METHOD_TABLE,
    METHODS,
    STATUS_MESSAGES,
    OptimizeResult,
    Status,
    StopOptimization,
    check_run_arguments,
    minimize,
)
from ..optimize.samplers import history_from_records

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; two writers there are not detected
    fcntl = None

#: 2: a sampler's record carries its own trial (format 1 copied every trial into every record's
#: state); the objective's settings always name their kind and space, and the backend is under
#: ``evaluation``. Files of format 1 are read, resumed (continued with format-2 records) and plotted.
FORMAT_VERSION = 2
FORMAT_VERSIONS = (1, 2)

#: Optimizer settings for tuning in the log space of the held-out objective, used where the user
#: gives none (the method table's defaults are the paper's, for its linear space). A step of 0.5
#: moves h or s by a factor 1.41 or l by 10**0.5; the learning rate's difference step is 0.05
#: decades (12%), far above the chaos of Adagrad at the paper's 1e-8.
HELDOUT_SETTINGS = {
    "gd": dict(step=0.5, grad_step=0.05),
    "bfgs": dict(c=1e-4, fallback_step=0.5, grad_step=0.05),
    "dfp": dict(c=1e-4, fallback_step=0.5, grad_step=0.05),
    "newton": dict(grad_step=0.05, hessian_method="stencil"),
    "random": {},
    "tpe": {},
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


class RunFileError(ValueError):
    """A run file that cannot be resumed (missing, malformed, or made with other settings)."""


@dataclass
class RunFile:
    """A parsed run file. ``result`` is None unless the run's last entry is its result
    (a run extended after it ended has records after its old result). ``end`` is the byte
    length of its complete lines: a torn last line (an interrupted write) starts there."""

    settings: dict
    records: list[dict]
    result: dict | None
    end: int = 0

    @property
    def label(self) -> str:
        """The run's method and options, for legends: ``gd (step=0.1)``."""
        options = self.settings.get("options") or {}
        detail = ", ".join(f"{k}={v}" for k, v in options.items())
        return f"{self.settings['method']}" + (f" ({detail})" if detail else "")


def read_run(path: str | os.PathLike) -> RunFile:
    """Parse and check a run file; a torn last line (an interrupted write) is ignored.

    RunFileError names the first line that is not JSON or not shaped as a run file's line.
    """
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise RunFileError(f"run file {name!r} does not exist") from None
    except IsADirectoryError:
        raise RunFileError(f"run file {name!r} is a directory") from None
    except OSError as exc:
        raise RunFileError(f"cannot read run file {name!r}: {exc.strerror or exc}") from None
    entries, end, offset = [], 0, 0
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        complete = number < len(lines)  # only the last piece lacks its newline
        line_end = offset + len(line) + complete
        offset = line_end
        if not line.strip():
            end = line_end if complete else end
            continue
        try:
            entry = json.loads(line.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if not complete:
                break  # the write that was interrupted
            raise RunFileError(f"{name!r} line {number} is not JSON; the file is damaged") from None
        entries.append((number, entry))
        end = line_end
    if not entries:
        raise RunFileError(f"{name!r} is not a fastrnn run file (it is empty)")
    for number, entry in entries:
        if not isinstance(entry, dict) or entry.get("type") not in _CHECKS:
            raise RunFileError(f"{name!r} line {number} is not a run file entry (a JSON object whose type is "
                               f"settings, record or result); the file is damaged")
    if entries[0][1]["type"] != "settings":
        raise RunFileError(f"{name!r} is not a fastrnn run file (no settings line first)")
    settings = entries[0][1]
    last_step = None
    for number, entry in entries:
        problem = _CHECKS[entry["type"]](entry, settings)
        if number != entries[0][0] and entry["type"] == "settings":
            problem = "a second settings line"
        elif not problem and entry["type"] == "record":
            if last_step is not None and entry["step"] <= last_step:
                problem = f"its record of step {entry['step']} comes after step {last_step}"
            last_step = entry["step"]
        if problem:
            raise RunFileError(f"{name!r} line {number}: {problem}; the file is damaged")
    records = [e for _, e in entries if e["type"] == "record"]
    last = entries[-1][1]
    return RunFile(settings, records, last if last["type"] == "result" else None, end)


# -- the shape of each kind of line: None if fine, else what is wrong ---------------------------

def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_numbers(value, length=None) -> bool:
    return isinstance(value, list) and all(map(_is_number, value)) and (length is None or len(value) == length)


def _is_point(value) -> bool:
    """(h, s, l): three numbers (not finite where a run ended on a non-finite point)."""
    return _is_numbers(value, 3)


def _is_matrix(value, n) -> bool:
    return isinstance(value, list) and len(value) == n and all(_is_numbers(row, n) for row in value)


def _wrong_fields(entry: dict, expected: dict) -> str | None:
    for key, check in expected.items():
        if key not in entry:
            return f"its {entry.get('type')} has no {key!r}"
        if not check(entry[key]):
            return f"its {entry.get('type')} has a malformed {key!r}: {entry[key]!r}"[:300]
    return None


_COUNTER_NAMES = {f.name for f in fields(Counters)}


def _check_counters(counters) -> str | None:
    if not isinstance(counters, dict):
        return "its counters are not an object"
    unknown = sorted(set(counters) - _COUNTER_NAMES - {"memo_share"})
    if unknown:
        return f"unknown counter(s) {', '.join(map(repr, unknown))}"
    if not all(_is_number(v) for v in counters.values()):
        return "its counters are not all numbers"
    return None


def _check_settings(entry: dict, settings: dict) -> str | None:
    return _wrong_fields(entry, dict(
        format_version=lambda v: v in FORMAT_VERSIONS,
        method=lambda v: v in METHODS, options=lambda v: isinstance(v, dict), seed=_is_int, max_steps=_is_int,
        record_every=lambda v: _is_int(v) and v >= 1, gtol=_is_number, x0=lambda v: v is None or _is_point(v),
        objective=lambda v: isinstance(v, dict),
    ))


def _check_state(state, settings: dict) -> str | None:
    if not isinstance(state, dict):
        return "its optimizer state is not an object"
    method = settings["method"]
    if state.get("method") != method:
        return f"its optimizer state is for method {state.get('method')!r}, not the run's {method!r}"
    x = state.get("x")
    n = len(x) if isinstance(x, list) else 0
    expected = dict(nit=_is_int, nfev=_is_int, x=lambda v: _is_numbers(v, 3), fun=_is_number,
                    rule=lambda v: isinstance(v, str), note=lambda v: v is None or isinstance(v, str))
    if not METHOD_TABLE[method].is_sampler:
        expected["gradient"] = lambda v: _is_numbers(v, n)
    if method == "newton":
        expected["hessian"] = lambda v: _is_matrix(v, n)
    elif method in ("bfgs", "dfp"):
        expected["inverse_hessian"] = lambda v: _is_matrix(v, n)
    problem = _wrong_fields({"type": "optimizer state", **state}, expected)
    return problem


def _check_trial(entry: dict, settings: dict) -> str | None:
    """A sampler's record carries its trial (format 2), or every trial in its state (format 1)."""
    if not METHOD_TABLE[settings["method"]].is_sampler or "trials" in entry["state"]:
        return None
    return _wrong_fields(entry, dict(trial=lambda v: isinstance(v, dict) and _is_point(v.get("x")) and
                                     _is_number(v.get("fun"))))


def _check_record(entry: dict, settings: dict) -> str | None:
    return (
        _wrong_fields(entry, dict(step=lambda v: _is_int(v) and v >= 0, x=_is_point, fun=_is_number, state=lambda v: True,
                                  counters=lambda v: True))
        or _check_state(entry["state"], settings)
        or _check_trial(entry, settings)
        or _check_counters(entry["counters"])
        or (None if entry.get("noise_state") is None or isinstance(entry["noise_state"], dict)
            else "its noise_state is not an object")
    )


def _check_result(entry: dict, settings: dict) -> str | None:
    return _wrong_fields(entry, dict(
        x=_is_point, fun=_is_number, nit=_is_int, nfev=_is_int, status=lambda v: v in STATUS_MESSAGES,
        message=lambda v: isinstance(v, str), counters=lambda v: True, seconds=_is_number,
    )) or _check_counters(entry["counters"])


_CHECKS = {"settings": _check_settings, "record": _check_record, "result": _check_result}


def run_is_finished(run: RunFile, max_steps: int | None = None, budget_chars: int | None = None,
                    budget_trainings: int | None = None) -> bool:
    """Whether ``run`` has ended for good: it has a result, and it did not stop merely at its
    step limit below ``max_steps``, or at its budget below the budgets given (a larger limit or
    budget continues such a run)."""
    if run.result is None:
        return False
    status = run.result["status"]
    if status == Status.MAX_STEPS:
        return max_steps is None or run.result["nit"] >= max_steps
    if status == Status.BUDGET:
        counters, before = run.result["counters"], _counters_at_start(run.settings)
        more_chars = budget_chars is not None and counters["training_chars"] - before["training_chars"] < budget_chars
        more_trainings = (budget_trainings is not None
                          and counters["trainings_run"] - before["trainings_run"] < budget_trainings)
        return not (more_chars or more_trainings)
    return True


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
_RESUMABLE_CHANGES = ("max_steps", "record_every", "budget_chars", "budget_trainings")


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
    **options,
) -> OptimizeResult:
    """Minimise ``F`` with ``method``; write the run to ``out`` (JSON Lines) as it goes.

    ``resume=True`` continues the run in ``out`` from its last record (the settings must
    match; ``max_steps`` may grow); a finished run is returned as stored, nothing appended.
    ``resume`` may also be the :class:`RunFile` of ``out`` already read (the command line reads
    it once, to take its settings).
    A new run refuses an existing ``out`` unless ``overwrite=True``. ``on_step(record)`` sees
    every step with the objective's counters so far, e.g. for a progress bar. RunFileError for a file that cannot be used.

    The optimizer works in the objective's search space (``F.space``, :mod:`fastrnn.objective.space`):
    for the log space it minimises the objective as a function of (log2 h, log2 s, log10 l).
    ``x0``, the records' ``x`` and the result's ``x`` are always (h, s, l); records also carry
    ``z``, the point in the search space, and the optimizer's state is kept in z.

    Budgets: the run stops (status BUDGET) once the networks it trained have read
    ``budget_chars`` characters of training text, or ``budget_trainings`` networks were trained
    (trainings the memo serves are free), checked after every step and before every batch of new
    trainings (``F.before_training``, as it was when ``tune`` returns). What ``F`` trained before
    the run does not count (the run file keeps its counters at the start, if any).

    Every argument is checked before the run file is touched: a refused call changes no file.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    if resume and out is None:
        raise ValueError("resuming needs the run file")
    budget = dict(budget_chars=_check_budget("budget_chars", budget_chars),
                  budget_trainings=_check_budget("budget_trainings", budget_trainings))
    check_run_arguments(method, options, max_steps, record_every, gtol)
    if x0 is not None:
        x0 = _check_x0(F, x0)
    started_at = _spend(F.counters)
    settings = _settings(F, method, options, seed, max_steps, record_every, gtol, x0, budget, started_at)
    sink = None if out is None else _open_run_file(out, bool(resume), overwrite)
    hook = F.before_training
    try:
        state = history = None
        if resume:
            saved = resume if isinstance(resume, RunFile) else read_run(out)
            _check_same_run(saved.settings, settings, F, out)
            started_at = _counters_at_start(saved.settings)
            if run_is_finished(saved, max_steps, budget["budget_chars"], budget["budget_trainings"]):
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
                if last.get("noise_state") is not None:
                    F.set_noise_state(last["noise_state"])
                x0 = None
        elif sink is not None:
            try:
                sink.truncate(0)
            except OSError as exc:
                raise RunFileError(f"cannot write run file {os.fspath(out)!r}: {exc.strerror or exc}") from None
            _write(sink, settings)
        return _run(F, method, x0, seed, max_steps, record_every, gtol, sink, state, history, on_step, options,
                    budget, started_at)
    finally:
        F.before_training = hook
        if sink is not None:
            try:
                sink.close()  # also releases the lock
            except OSError:
                pass  # only the bytes of a write that failed, and was reported, are left to flush


def _spend(counters) -> dict:
    """The counters a budget is measured in."""
    return {"training_chars": int(counters.training_chars), "trainings_run": int(counters.trainings_run)}


def _counters_at_start(settings: dict) -> dict:
    """The objective's spend when the run began (zero in files written before it was recorded)."""
    return {"training_chars": 0, "trainings_run": 0, **settings.get("counters_at_start", {})}


def _check_x0(F: Objective, x0) -> list[float]:
    try:
        point = np.array(x0, dtype=float)
    except (TypeError, ValueError):
        point = None
    if point is None or point.shape != (3,) or not np.isfinite(point).all():
        raise ValueError(f"x0 must be three finite numbers (h, s, l), got {x0!r}")
    F.space.from_point(point)  # ValueError for a point the search space cannot hold
    return [float(v) for v in point]


def _check_budget(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def search_problem(F: Objective):
    """What the optimizer minimises: F itself where its settings say so (the paper's objective in
    its linear space, by finite differences, as the paper did), else F seen in its search space."""
    return F if F.definition.searched_as_is else SpaceView(F)


def _run(F, method, x0, seed, max_steps, record_every, gtol, sink, state, history, on_step, options, budget,
         started_at: dict) -> OptimizeResult:
    resumed_step = None if state is None else state["nit"]
    started = time.perf_counter()
    problem = search_problem(F)
    space = problem.space if isinstance(problem, SpaceView) else None
    # a sampler's records hold its history: every one is written
    every = 1 if METHOD_TABLE[method].is_sampler else record_every

    def in_hsl(record: dict) -> dict:
        if space is None:
            return record
        record = {**record, "x": space.to_point(record["x"]).tolist(), "z": record["x"]}
        if "trial" in record:
            z = record["trial"]["x"]
            record["trial"] = {**record["trial"], "x": space.to_point(z).tolist(), "z": z}
        return record

    chars_before, trainings_before = started_at["training_chars"], started_at["trainings_run"]

    def spent() -> Status | None:
        counters = F.counters
        if budget["budget_chars"] is not None and counters.training_chars - chars_before >= budget["budget_chars"]:
            return Status.BUDGET
        if (budget["budget_trainings"] is not None
                and counters.trainings_run - trainings_before >= budget["budget_trainings"]):
            return Status.BUDGET
        return None

    own_hook = F.before_training

    def guard() -> None:
        """Before a batch of new trainings: stop once the budget is spent (the step is dropped)."""
        if own_hook is not None:
            own_hook()
        if spent() is not None:
            raise StopOptimization(Status.BUDGET)

    def callback(record: dict):
        record = in_hsl(record)
        if on_step is not None:
            on_step({**record, "counters": F.counters.as_dict()})
        step = record["step"]
        if sink is not None and step != resumed_step and (step % every == 0 or step == 0):
            _write(sink, _file_record(record, F))
        return spent()

    if x0 is not None and space is not None:
        x0 = space.from_point(x0)
    F.before_training = guard
    result = minimize(problem, x0=x0, method=method, seed=seed, max_steps=max_steps, gtol=gtol,
                      record_every=1, callback=callback, state=state, history=history, **options)
    if space is not None:
        result = replace(result, x=space.to_point(result.x), trajectory=[in_hsl(r) for r in result.trajectory])
    if sink is not None:
        last = result.trajectory[-1]
        if last["step"] % every != 0 and last["step"] != resumed_step:
            _write(sink, _file_record(last, F))
        _write(sink, dict(
            type="result", x=result.x.tolist(), fun=result.fun, nit=result.nit, nfev=result.nfev,
            status=result.status, message=result.message, counters=F.counters.as_dict(),
            seconds=time.perf_counter() - started,
        ))
    return result


def _open_run_file(path, resume: bool, overwrite: bool):
    """The run file opened for reading and writing (binary), locked against other writers."""
    name = os.fspath(path)
    if not resume and not overwrite and os.path.exists(name):
        raise RunFileError(f"run file {name!r} exists; use --resume to continue it or --force to overwrite it")
    directory = os.path.dirname(os.path.abspath(name))
    try:
        fd = os.open(name, os.O_RDWR | (0 if resume else os.O_CREAT), 0o666)
    except FileNotFoundError:
        if not os.path.isdir(directory):
            raise RunFileError(f"cannot write run file {name!r}: directory {directory!r} does not exist") from None
        raise RunFileError(f"run file {name!r} does not exist") from None
    except OSError as exc:
        raise RunFileError(f"cannot open run file {name!r}: {exc.strerror or exc}") from None
    sink = os.fdopen(fd, "r+b")
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            sink.close()
            raise RunFileError(f"run file {name!r} is in use by another process (it holds the file's lock); "
                               "wait for it to end or use another file") from None
    return sink


def _ends_with_newline(sink, end: int) -> bool:
    sink.seek(end - 1)
    last = sink.read(1)
    sink.seek(end)
    return last == b"\n"


#: Keys a run file's records add to the optimizer's records.
_FILE_ONLY_KEYS = ("type", "counters", "noise_state")


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


def _file_record(record: dict, F: Objective) -> dict:
    return dict(type="record", **record, counters=F.counters.as_dict(), noise_state=F.noise_state())


def _write(sink, entry: dict) -> None:
    try:
        sink.write((json.dumps(entry, allow_nan=True) + "\n").encode("utf-8"))
        sink.flush()
    except OSError as exc:
        raise RunFileError(f"cannot write the run file: {exc.strerror or exc}; the records written so far are kept "
                           "(resume the run once it can be written)") from None


def trajectory_array(run: RunFile) -> tuple[np.ndarray, np.ndarray]:
    """(steps, points) of a run file's records, for plots and reports."""
    steps = np.array([r["step"] for r in run.records])
    points = np.array([r["x"] for r in run.records], dtype=float)
    return steps, points
