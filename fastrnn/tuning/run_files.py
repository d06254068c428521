"""Run files: what :func:`fastrnn.tuning.tune` writes, read back and checked.

A run file holds one JSON object per line, appended and flushed as the run goes, so a run that
is interrupted (Ctrl-C, a killed process) loses at most the record being written:

``{"type": "settings", ...}``
    first line: format version, method, optimizer options, seed, max_steps, record_every,
    gtol, x0 and the objective's settings (corpus fingerprint, alpha, beta, noise, ...).
``{"type": "record", "step", "x", "fun", "gradient_norm", "rule", "note", "nfev", "state",
"counters", "noise_state"}``
    every ``record_every`` steps, and the first and last step; ``state`` is the optimizer's
    resumable state, ``noise_state`` the objective's seed generator (fresh noise only). A
    sampler's record has ``trial`` (the point tried and its value) instead of ``gradient_norm``,
    or ``trials`` (a list of them) where a step tries a batch of points (option ``batch`` > 1); a
    sampler writes every step.
``{"type": "result", "x", "fun", "nit", "nfev", "status", "message", "counters", "seconds"}``
    last line, once the run has ended.

:func:`read_run` checks the shape of every line and names the line of the first one that is
wrong; :func:`run_is_finished` says whether a run has ended for good.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass, fields

import numpy as np

from ..objective.function import Counters
from ..objective.settings import settings_from_record
from ..optimize.methods import (
    METHOD_TABLE,
    METHODS,
    STATUS_MESSAGES,
    Status,
)

#: 2: a sampler's record carries its own trial (format 1 copied every trial into every record's
#: state); the objective's settings always name their kind and space, and the backend is under
#: ``evaluation``. Files of format 1 are read, resumed (continued with format-2 records) and plotted.
FORMAT_VERSION = 2
FORMAT_VERSIONS = (1, 2)


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


#: What a command given something that is not a run file should be given instead.
RUN_FILE_FIX = "give a run file (JSON Lines, from tune --out or reproduce)"
#: The ``format`` of a successive-halving run file's settings line (fastrnn.tuning.halving_store).
HALVING_FORMAT = "fastrnn-halving"


def not_a_run_file(name: str, why: str) -> RunFileError:
    """The error for a file that is no fastrnn run file at all (not a damaged one)."""
    return RunFileError(f"{name!r} is not a fastrnn run file ({why}); {RUN_FILE_FIX}")


def read_run_bytes(path: str | os.PathLike) -> bytes:
    """A run file's bytes; RunFileError (one line) for a missing, unreadable or model file."""
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
    if raw.startswith(b"PK\x03\x04"):  # a zip archive: what `fastrnn train --save` writes
        raise RunFileError(f"{name!r} is a model file (fastrnn train --save), not a run file: {RUN_FILE_FIX}")
    return raw


def json_lines(raw: bytes, name: str) -> tuple[list[tuple[int, object]], int]:
    """([(line number, parsed JSON)], byte length of the complete lines) of a JSON Lines file; a
    torn last line (an interrupted write) is left out. RunFileError: a file whose first line is not
    JSON is not a run file; a later line that is not JSON damages one."""
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
            if not entries:
                raise not_a_run_file(name, f"line {number} is not JSON") from None
            raise RunFileError(f"{name!r} line {number} is not JSON; the file is damaged") from None
        entries.append((number, entry))
        end = line_end
    if not entries:
        raise not_a_run_file(name, "it holds no complete JSON line" if raw.strip() else "it is empty")
    number, first = entries[0]
    if not isinstance(first, dict) or first.get("type") != "settings":
        raise not_a_run_file(name, f"line {number} is not the settings line a run file starts with")
    return entries, end


def stored_method(path: str | os.PathLike) -> str | None:
    """The method a run file's settings line names (``halving`` for a successive-halving run), or
    None when the file cannot say (missing, not a run file: its reader names the problem)."""
    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 20)
        entry = json.loads(first.decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(entry, dict) or entry.get("type") != "settings" or not isinstance(entry.get("method"), str):
        return None
    return entry["method"]


def read_run(path: str | os.PathLike) -> RunFile:
    """Parse and check a run file; a torn last line (an interrupted write) is ignored.

    RunFileError names the first line that is not JSON or not shaped as a run file's line, or says
    the file is not a run file at all (its first line is no settings line).
    """
    name = os.fspath(path)
    entries, end = json_lines(read_run_bytes(path), name)
    if entries[0][1].get("format") == HALVING_FORMAT:
        raise RunFileError(f"{name!r} is a successive-halving run (tune --method halving), not a run of "
                           f"{', '.join(METHODS)}")
    for number, entry in entries:
        if not isinstance(entry, dict) or entry.get("type") not in _CHECKS:
            raise RunFileError(f"{name!r} line {number} is not a run file entry (a JSON object whose type is "
                               f"settings, record or result); the file is damaged")
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


# -- where a new run's file may go -----------------------------------------------------------------

def check_new_run_path(path: str | os.PathLike, overwrite: bool, companions=()) -> None:
    """Refuse (RunFileError, one line) what a new run writing ``path`` cannot start with, before
    anything is written: a folder given as the run file, a folder that cannot hold it (a missing
    folder is fine: it is created when the run writes its first line), and, unless ``overwrite``,
    an existing run file or an existing file among ``companions`` (the files a run keeps beside its
    run file: its model), which a new run would replace."""
    name = os.fspath(path)
    if name.endswith(os.sep) or (os.altsep and name.endswith(os.altsep)) or os.path.isdir(name):
        example = os.path.join(name.rstrip(os.sep + (os.altsep or "")) or name, "run.jsonl")
        raise RunFileError(f"run file {name!r} names a folder; give a file name, such as {example!r}")
    folder = os.path.dirname(os.path.abspath(name))
    existing = folder
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise RunFileError(f"cannot write run file {name!r}: {existing!r} is a file, not a folder; choose another "
                           "folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "cannot be written" if existing == folder else "cannot take the folders it needs"
        raise RunFileError(f"cannot write run file {name!r}: folder {existing!r} {what}; choose another folder")
    if overwrite:
        return
    if os.path.lexists(name):
        raise RunFileError(f"run file {name!r} exists; use --resume to continue it or --force to overwrite it")
    for companion in companions:
        if os.path.isfile(companion):
            raise RunFileError(f"model file {os.fspath(companion)!r} exists (an earlier run's network, where this "
                               "run would save its own); use --force to replace it, or give another --out")


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
    if "trials" in entry:  # a step of several trials
        return _wrong_fields(entry, dict(trials=lambda v: isinstance(v, list) and len(v) > 0
                                         and all(_is_trial(trial) for trial in v)))
    return _wrong_fields(entry, dict(trial=_is_trial))


def _is_trial(value) -> bool:
    """A trial: its point and value, or a skipped one (value null, ``skipped`` true)."""
    if not isinstance(value, dict) or not _is_point(value.get("x")):
        return False
    return _is_number(value.get("fun")) or (value.get("fun") is None and value.get("skipped") is True)


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
                    budget_trainings: int | None = None, budget_seconds: float | None = None) -> bool:
    """Whether ``run`` has ended for good: it has a result, and it did not stop merely at its
    step limit below ``max_steps``, or at its budget below the budgets given (a larger limit or
    budget continues such a run)."""
    if run.result is None:
        return False
    status = run.result["status"]
    if status == Status.MAX_STEPS:
        return max_steps is None or run.result["nit"] >= max_steps
    if status == Status.BUDGET:
        ended_within = run.result.get("budget_seconds")
        if budget_seconds is not None and ended_within is not None and budget_seconds <= ended_within:
            return True  # the time it had is spent (or too short for its next batch): the same or less ends it again
        spent = spent_since_start(run.result["counters"], run.settings, run.result.get("elapsed"))
        cost = {**(first_step_cost(run) or {}), "seconds": run.result.get("step_seconds") or 0.0}
        return budget_spent(spent, cost, dict(budget_chars=budget_chars, budget_trainings=budget_trainings,
                                              budget_seconds=budget_seconds))
    return True


#: Each budget and the counter it limits: characters of training text read, networks trained,
#: and wall-clock seconds of the run (the tuner's own time included).
BUDGETS = {"budget_chars": "training_chars", "budget_trainings": "trainings_run", "budget_seconds": "seconds"}
#: The objective's counters among them.
BUDGET_COUNTERS = ("training_chars", "trainings_run")
_UNITS = {"training_chars": "characters", "trainings_run": "trainings", "seconds": "seconds"}


def check_budgets(budget_chars=None, budget_trainings=None, budget_seconds=None) -> dict:
    """The budgets as :data:`BUDGETS` names them, each checked (None: no such budget); ValueError
    naming the rule otherwise. Every tuning method checks its budgets here."""
    for name, value in (("budget_chars", budget_chars), ("budget_trainings", budget_trainings)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if budget_seconds is not None and (
            isinstance(budget_seconds, bool) or not isinstance(budget_seconds, (int, float, np.integer, np.floating))
            or not math.isfinite(budget_seconds) or budget_seconds <= 0):
        raise ValueError(f"budget_seconds must be a positive number of seconds, got {budget_seconds!r}")
    return dict(budget_chars=None if budget_chars is None else int(budget_chars),
                budget_trainings=None if budget_trainings is None else int(budget_trainings),
                budget_seconds=None if budget_seconds is None else float(budget_seconds))


def spent_since_start(counters: dict, settings: dict, elapsed: float | None = None) -> dict:
    """The budget counters of a run since it began (``seconds``: its ``elapsed`` wall time, 0 if unknown)."""
    before = counters_at_start(settings)
    spent = {name: int(counters[name]) - int(before[name]) for name in BUDGET_COUNTERS}
    return {**spent, "seconds": float(elapsed or 0.0)}


def first_step_cost(run: RunFile) -> dict | None:
    """What a gradient run's step 0 cost (the start point's value and gradient; its start trials,
    option ``start_trials``, excluded): the least any of its steps costs, so the budget it needs
    to take one more. None for a sampler (a trial is one batch: the budget never ends it midway)
    or a file with no step 0."""
    entry = METHOD_TABLE.get(run.settings.get("method"))
    if entry is None or entry.is_sampler or not run.records or run.records[0]["step"] != 0:
        return None
    spent = spent_since_start(run.records[0]["counters"], run.settings)
    objective = settings_from_record(run.settings["objective"])
    return step_cost_without_trials(spent, run.records[0], objective.updates, objective.beta)


def step_cost_without_trials(spent: dict, record: dict, updates, beta: int) -> dict:
    """The budget counters of ``spent`` (what step 0 cost) less the trials its record carries,
    but for the one it started from: those are paid once, at the start, not by every step.

    A trial is one network per replica (the trials are whole networks inside the box), of
    ``updates(s)`` updates of s characters; a point tried twice was trained once."""
    cost = {name: value for name, value in spent.items() if name in BUDGET_COUNTERS}
    others = {tuple(trial["x"]) for trial in record.get("trials", [])} - {tuple(record["x"])}
    for _, seq_length, _ in others:
        cost["training_chars"] -= beta * updates(int(seq_length)) * int(seq_length)
        cost["trainings_run"] -= beta
    return cost


def _left_and_cost(spent: dict, step_cost: dict | None, budgets: dict):
    for name, counter in BUDGETS.items():
        limit = budgets.get(name)
        if limit is not None:
            yield counter, limit - spent[counter], (step_cost or {}).get(counter) or 0


def format_seconds(seconds: float) -> str:
    """Seconds for a message: one decimal, or three significant digits when that is long (1e+308)."""
    seconds = float(seconds)
    return f"{seconds:.1f}" if abs(seconds) < 1e6 else f"{seconds:.3g}"


def _number(counter: str, value) -> str:
    return format_seconds(value) if counter == "seconds" else f"{int(value):,}"


def budget_left_note(spent: dict, step_cost: dict | None, budgets: dict) -> str | None:
    """Why a run stopped with budget left (what is left is less than a step costs), or None."""
    for counter, left, cost in _left_and_cost(spent, step_cost, budgets):
        if 0 < left < cost:
            if counter == "seconds":
                return (f"the {format_seconds(left)} seconds left cannot pay for another step: the last step took "
                        f"{format_seconds(cost)}")
            return f"the {left:,} {_UNITS[counter]} left cannot pay for another step: step 0 cost {cost:,}"
    return None


def budget_stop_note(spent: dict, step_cost: dict | None, budgets: dict) -> str | None:
    """Which budget stopped a run: the first one spent (``4 trainings of a budget of 4``), else the
    one whose rest cannot pay for a step (:func:`budget_left_note`), else None."""
    for name, counter in BUDGETS.items():
        limit = budgets.get(name)
        if limit is not None and limit - spent[counter] <= 0:
            return f"{_number(counter, spent[counter])} {_UNITS[counter]} of a budget of {_number(counter, limit)}"
    return budget_left_note(spent, step_cost, budgets)


def budget_spent(spent: dict, step_cost: dict | None, budgets: dict) -> bool:
    """Whether a run with ``budgets`` (:data:`BUDGETS`' names) stops: it has spent one, or what is
    left of one is less than a step costs (``step_cost``: for a gradient run's training budgets
    its step 0 cost, for a time budget the last step's seconds), so that it does not start a
    step it cannot finish (a training budget would end it midway and drop its trainings; a time
    budget would be overrun)."""
    return any(left <= 0 or left < cost for _, left, cost in _left_and_cost(spent, step_cost, budgets))


def counters_at_start(settings: dict) -> dict:
    """The objective's spend when the run began (zero in files written before it was recorded)."""
    return {"training_chars": 0, "trainings_run": 0, **settings.get("counters_at_start", {})}



def trajectory_array(run: RunFile) -> tuple[np.ndarray, np.ndarray]:
    """(steps, points) of a run file's records, for plots and reports."""
    steps = np.array([r["step"] for r in run.records])
    points = np.array([r["x"] for r in run.records], dtype=float)
    return steps, points

