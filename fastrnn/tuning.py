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
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .objective import Counters, Objective
from .optimize import METHODS, OptimizeResult, minimize

FORMAT_VERSION = 1


class RunFileError(ValueError):
    """A run file that cannot be resumed (missing, malformed, or made with other settings)."""


@dataclass
class RunFile:
    settings: dict
    records: list[dict]
    result: dict | None

    @property
    def label(self) -> str:
        """The run's method and options, for legends: ``gd (step=0.1)``."""
        options = self.settings.get("options") or {}
        detail = ", ".join(f"{k}={v}" for k, v in options.items())
        return f"{self.settings['method']}" + (f" ({detail})" if detail else "")


def read_run(path: str | os.PathLike) -> RunFile:
    """Parse a run file; a truncated last line (an interrupted write) is ignored."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise RunFileError(f"run file {os.fspath(path)!r} does not exist") from None
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break  # the write that was interrupted
            raise RunFileError(f"{os.fspath(path)!r} line {number} is not JSON; the file is damaged") from None
    if not entries or entries[0].get("type") != "settings":
        raise RunFileError(f"{os.fspath(path)!r} is not a fastrnn run file (no settings line first)")
    records = [e for e in entries if e.get("type") == "record"]
    results = [e for e in entries if e.get("type") == "result"]
    return RunFile(entries[0], records, results[-1] if results else None)


def _settings(F: Objective, method, options, seed, max_steps, record_every, gtol, x0) -> dict:
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
    )


# Settings a resumed run may change: how long it runs and how often it records.
_RESUMABLE_CHANGES = ("max_steps", "record_every")


def _check_same_run(saved: dict, wanted: dict, path) -> None:
    for key in ("format_version", "method", "options", "seed", "gtol", "x0", "objective"):
        if saved.get(key) != wanted.get(key):
            raise RunFileError(
                f"cannot resume {os.fspath(path)!r}: its {key} is {saved.get(key)!r}, this run's is "
                f"{wanted.get(key)!r}; resume with the same settings or start a new --out file"
            )


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
    resume: bool = False,
    on_step: Callable[[dict], None] | None = None,
    **options,
) -> OptimizeResult:
    """Minimise ``F`` with ``method``; write the run to ``out`` (JSON Lines) as it goes.

    ``resume=True`` continues the run in ``out`` from its last record (the settings must
    match; ``max_steps`` may grow). ``on_step(record)`` sees every step, e.g. for a progress bar.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    settings = _settings(F, method, options, seed, max_steps, record_every, gtol, x0)
    state = None
    if resume:
        if out is None:
            raise ValueError("resuming needs the run file")
        saved = read_run(out)
        _check_same_run(saved.settings, settings, out)
        if saved.records:
            last = saved.records[-1]
            state = last["state"]
            F.counters = Counters(**{k: v for k, v in last["counters"].items() if k != "memo_share"})
            if last.get("noise_state") is not None:
                F.set_noise_state(last["noise_state"])
            x0 = None
    sink = None
    if out is not None:
        sink = open(out, "a" if resume else "w", encoding="utf-8")
        if not resume:
            _write(sink, settings)
    resumed_step = None if state is None else state["nit"]
    started = time.perf_counter()

    def callback(record: dict) -> None:
        if on_step is not None:
            on_step(record)
        step = record["step"]
        if sink is None or step == resumed_step:
            return  # already on file
        if step % record_every == 0 or step == 0:
            _write(sink, _file_record(record, F))

    try:
        result = minimize(F, x0=x0, method=method, seed=seed, max_steps=max_steps, gtol=gtol,
                          record_every=1, callback=callback, state=state, **options)
        if sink is not None:
            last = result.trajectory[-1]
            if last["step"] % record_every != 0 and last["step"] != resumed_step:
                _write(sink, _file_record(last, F))
            _write(sink, dict(
                type="result", x=result.x.tolist(), fun=result.fun, nit=result.nit, nfev=result.nfev,
                status=result.status, message=result.message, counters=F.counters.as_dict(),
                seconds=time.perf_counter() - started,
            ))
    finally:
        if sink is not None:
            sink.close()
    return result


def _file_record(record: dict, F: Objective) -> dict:
    return dict(type="record", **record, counters=F.counters.as_dict(), noise_state=F.noise_state())


def _write(sink, entry: dict) -> None:
    sink.write(json.dumps(entry, allow_nan=True) + "\n")
    sink.flush()


def trajectory_array(run: RunFile) -> tuple[np.ndarray, np.ndarray]:
    """(steps, points) of a run file's records, for plots and reports."""
    steps = np.array([r["step"] for r in run.records])
    points = np.array([r["x"] for r in run.records], dtype=float)
    return steps, points
