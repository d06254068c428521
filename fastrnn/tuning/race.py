"""Tuning methods at equal wall-clock time: ``fastrnn compare --budget-seconds``.

What a user buys with minutes is the best network at the length they will train it. So every
method gets the same wall-clock time (``budget_seconds``, the tuner's own work included) on
the same machine, from ``repeats`` seeds, and is judged by the best held-out loss it found *at
the target training length* ``target_chars``, against the seconds spent:

* the samplers and gradient methods of :func:`fastrnn.tuning.tune` tune the held-out objective
  with ``train_chars = target_chars`` (every network they train is at the target length);
* multi-fidelity methods count only their networks trained to the target (their top rung);
* ``optuna-hyperband``, the anchor (:mod:`fastrnn.tuning.optuna_anchor`), likewise.

Figures per method: the best loss at 25%, 50% and 100% of the time (median and range over the
seeds), wall and CPU seconds per run (CPU: this process's, all threads), and the time each
method needs to reach the median final loss of ``reference_method`` (TPE by default): the
median over seeds of the first moment its best was at least as good (a seed that never got
there counts as never). Beside them, the character n-gram reference on the same split
(:mod:`fastrnn.objective.reference`): the held-out loss counting alone achieves.

Every run is a file in ``out_dir``; a finished run is reused, so an interrupted comparison
continues where it stopped. ``race.md`` holds the tables, ``race.png`` the curves and
``race.json`` every figure. Times depend on the machine and its load: compare methods from one
run of the command, on a quiet machine.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
from typing import Callable, Sequence

import numpy as np

from ..objective.function import Objective
from ..objective.reference import ngram_reference
from ..objective.settings import HeldoutSettings
from ..optimize.methods import METHOD_TABLE, BudgetTooSmall
from .compare import format_stats, median_range
from .optuna_anchor import anchor_curve, run_optuna_hyperband
from .plots import band, plot_bands
from .run_files import read_run, run_is_finished
from .runner import HELDOUT_SETTINGS, tune

FRACTIONS = (0.25, 0.5, 1.0)
ANCHOR = "optuna-hyperband"


@dataclasses.dataclass(frozen=True)
class RaceSettings:
    """What every run of a race shares."""

    objective: HeldoutSettings  # train_chars is the target length
    budget_seconds: float
    min_chars: int  # the first rung of the multi-fidelity methods
    eta: int = 3
    threads: int | None = None
    backend: str = "numba"

    @property
    def target_chars(self) -> int:
        return self.objective.train_chars


def _run_halving(race: RaceSettings, seed: int, path: str) -> None:
    from .halving import BudgetError, halve
    from .halving_plan import HalvingSettings
    from .halving_store import read_halving

    if _refused(path):
        return
    resume = os.path.exists(path)
    if resume and read_halving(path).result is not None:
        return
    F = Objective(dataclasses.replace(race.objective, seed=seed, train_chars=None), threads=race.threads,
                  backend=race.backend)
    settings = HalvingSettings(min_chars=race.min_chars, target_chars=race.target_chars, eta=race.eta)
    try:
        halve(F, settings, out=path, resume=resume, budget_seconds=race.budget_seconds)
    except BudgetError as exc:  # the time is too short for one network at the target: no result, said so
        _write_refused(path, str(exc))


def _write_refused(path: str, why: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(dict(type="refused", why=why)) + "\n")


def _refused(path: str) -> bool:
    """A run the method refused to start (its file holds the reason): it found nothing."""
    if not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    try:
        return json.loads(first).get("type") == "refused"
    except ValueError:
        return False


def halving_curve(path: str, target_chars: int) -> tuple[list[float], list[float]]:
    """(elapsed, best loss so far) of a halving run file: its networks trained to the target (top rung)."""
    from .halving_store import read_halving

    elapsed, best, low = [], [], math.inf
    if _refused(path):
        return elapsed, best
    for record in read_halving(path).of_type("record"):
        if record["chars"] == target_chars:
            low = min(low, record["fun"])
            elapsed.append(float(record["seconds"]))
            best.append(low)
    return elapsed, best


#: Multi-fidelity methods: name -> (run(settings, seed, path), curve(path, target_chars)).
MULTI_FIDELITY: dict[str, tuple[Callable, Callable]] = {"halving": (_run_halving, halving_curve)}


def race_methods() -> tuple[str, ...]:
    return (*METHOD_TABLE, *MULTI_FIDELITY, ANCHOR)


def _run_tune(race: RaceSettings, method: str, seed: int, path: str) -> None:
    F = Objective(dataclasses.replace(race.objective, seed=seed), threads=race.threads, backend=race.backend)
    resume = False
    if _refused(path):
        return
    if os.path.exists(path):
        stored = read_run(path)
        if run_is_finished(stored, budget_seconds=race.budget_seconds):
            return
        resume = stored if stored.records else False
    try:
        tune(F, method, seed=seed, max_steps=1_000_000, record_every=1, out=path, resume=resume,
             overwrite=not resume, budget_seconds=race.budget_seconds, **HELDOUT_SETTINGS.get(method, {}))
    except BudgetTooSmall as exc:  # the time cannot pay for its start: no result, said so
        _write_refused(path, str(exc))


def tune_curve(path: str, target_chars: int) -> tuple[list[float], list[float]]:
    """(elapsed, best loss so far) of a :func:`tune` run file: every value it recorded is at the target
    length (its objective's train_chars)."""
    elapsed, best, low = [], [], math.inf
    if _refused(path):
        return elapsed, best
    run = read_run(path)
    for record in run.records:
        trials = record.get("trials") or ([record["trial"]] if "trial" in record else [{"fun": record["fun"]}])
        low = min([low, *(trial["fun"] for trial in trials if trial["fun"] is not None)])
        elapsed.append(float(record.get("elapsed", 0.0)))
        best.append(low)
    return elapsed, best


def _run_anchor(race: RaceSettings, seed: int, path: str) -> None:
    if os.path.exists(path) and _anchor_finished(path):
        return
    run_optuna_hyperband(dataclasses.replace(race.objective, seed=seed), path, min_chars=race.min_chars,
                         target_chars=race.target_chars, eta=race.eta, budget_seconds=race.budget_seconds, seed=seed,
                         threads=race.threads or os.cpu_count() or 1, backend=race.backend)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(type="finished")) + "\n")


def _anchor_finished(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    return bool(lines) and json.loads(lines[-1]).get("type") == "finished"


def run_path(out_dir: str, method: str, seed: int) -> str:
    return os.path.join(out_dir, f"{method}-seed{seed}.jsonl")


def race(race_settings: RaceSettings, methods: Sequence[str], out_dir: str, *, repeats: int = 5,
         reference_method: str = "tpe", command: str = "", progress: Callable[[str], None] | None = None) -> str:
    """Run (or reuse) every method from every seed for ``budget_seconds`` each; write race.md,
    race.png and race.json into ``out_dir``; return race.md's path."""
    unknown = [m for m in methods if m not in race_methods()]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; valid: {', '.join(race_methods())}")
    os.makedirs(out_dir, exist_ok=True)
    race_settings = dataclasses.replace(race_settings, objective=race_settings.objective.loaded())
    costs_path = os.path.join(out_dir, "race-costs.json")
    costs = _load(costs_path)
    curves = {}
    for method in methods:
        for seed in range(repeats):
            path = run_path(out_dir, method, seed)
            key = f"{method}/{seed}"
            if progress is not None:
                progress(f"{method} seed {seed}")
            wall, cpu = time.perf_counter(), time.process_time()
            if method == ANCHOR:
                _run_anchor(race_settings, seed, path)
                curve = anchor_curve(path, race_settings.target_chars)
            elif method in MULTI_FIDELITY:
                run, curve_of = MULTI_FIDELITY[method]
                run(race_settings, seed, path)
                curve = curve_of(path, race_settings.target_chars)
            else:
                _run_tune(race_settings, method, seed, path)
                curve = tune_curve(path, race_settings.target_chars)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if key not in costs or wall > 1.0:  # a reused run keeps the costs it was measured with
                costs[key] = dict(wall=wall, cpu=cpu)
                _save(costs_path, costs)
            curves[key] = curve
    reference = ngram_reference(race_settings.objective)
    summary = _summary(race_settings, methods, repeats, curves, costs, reference, reference_method, command)
    _save(os.path.join(out_dir, "race.json"), summary)
    _plot(race_settings, methods, repeats, curves, reference.best.nats, os.path.join(out_dir, "race.png"))
    path = os.path.join(out_dir, "race.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(race_report(summary))
    return path


def best_at(curve, seconds: float) -> float:
    elapsed, best = curve
    within = [b for e, b in zip(elapsed, best) if e <= seconds]
    return within[-1] if within else math.nan


def time_to_reach(curve, value: float) -> float:
    for elapsed, best in zip(*curve):
        if best <= value:
            return elapsed
    return math.inf


def _summary(race_settings, methods, repeats, curves, costs, reference, reference_method, command) -> dict:
    budget = race_settings.budget_seconds
    per_method = {}
    for method in methods:
        mine = [curves[f"{method}/{seed}"] for seed in range(repeats)]
        per_method[method] = dict(
            best={f"{int(f * 100)}%": median_range([best_at(c, f * budget) for c in mine]) for f in FRACTIONS},
            final_values=[best_at(c, budget) for c in mine],
            wall=median_range([costs[f"{method}/{seed}"]["wall"] for seed in range(repeats)]),
            cpu=median_range([costs[f"{method}/{seed}"]["cpu"] for seed in range(repeats)]),
        )
    target = None
    if reference_method in per_method and per_method[reference_method]["best"]["100%"]["median"] is not None:
        target = per_method[reference_method]["best"]["100%"]["median"]
        for method in methods:
            times = [time_to_reach(curves[f"{method}/{seed}"], target) for seed in range(repeats)]
            per_method[method]["time_to_reference"] = statistics.median(times)
    objective = race_settings.objective
    return dict(
        command=command, corpus=objective.corpus.name, target_chars=race_settings.target_chars,
        heldout_chars=objective.heldout_chars, dtype=objective.dtype, beta=objective.beta,
        budget_seconds=budget, min_chars=race_settings.min_chars, eta=race_settings.eta, repeats=repeats,
        threads=race_settings.threads, reference_method=reference_method, reference_value=target,
        ngram=dict(order=reference.best.order, smoothing=reference.best.smoothing, nats=reference.best.nats),
        methods=per_method,
    )


def race_report(summary: dict) -> str:
    s = summary
    lines = [
        "# Tuning methods at equal wall-clock time, judged at the target training length", "",
        f"Command: `{s['command']}`" if s["command"] else "", "",
        f"Corpus: {s['corpus']}; target length {s['target_chars']:,} training characters; networks read "
        f"{s['heldout_chars']:,} held-out characters; {s['dtype']}, beta = {s['beta']}. Each run: "
        f"{s['budget_seconds']:g} s of wall-clock time, {s['repeats']} seeds per method; multi-fidelity rungs from "
        f"{s['min_chars']:,} characters, eta = {s['eta']}. Values: best held-out loss found at the target length, "
        "nats per character (median and range over seeds).", "",
        f"Character n-gram reference on the same split: **{s['ngram']['nats']:.3f}** "
        f"({s['ngram']['smoothing']}, order {s['ngram']['order']}).", "",
        "| method | 25% of the time | 50% | 100% | time to reach "
        f"{s['reference_method']}'s median final loss | wall s per run | CPU s per run |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method, m in s["methods"].items():
        reach = m.get("time_to_reference")
        reach_text = "-" if reach is None else ("never (median)" if not math.isfinite(reach) else f"{reach:.0f} s")
        lines.append(f"| {method} | {format_stats(m['best']['25%'])} | {format_stats(m['best']['50%'])} | "
                     f"{format_stats(m['best']['100%'])} | "
                     f"{reach_text} | {m['wall']['median']:.0f} | {m['cpu']['median']:.0f} |")
    if s["reference_value"] is not None:
        lines += ["", f"{s['reference_method']}'s median final loss: {s['reference_value']:.3f}."]
    lines += ["", "![best so far](race.png)", ""]
    return "\n".join(lines) + "\n"


def _plot(race_settings, methods, repeats, curves, ngram_nats, out) -> None:
    budget = race_settings.budget_seconds
    grid = np.linspace(0, budget, 200)
    rows = {method: [[best_at(curves[f"{method}/{seed}"], t) for t in grid] for seed in range(repeats)]
            for method in methods}
    lows, highs = [ngram_nats], []
    for values in rows.values():
        median, low, _ = band(values)
        if np.isfinite(low).any():
            lows.append(float(np.nanmin(low)))
            highs.append(float(np.nanmax(median)))
    # the interesting range: from the best value (or the n-gram's) to where the medians start,
    # at most a little above a uniform guess (a blown-up network is worth ln V)
    top = min(max(highs, default=min(lows) + 1.0), math.log(race_settings.objective.corpus.vocab_size)) + 0.1
    plot_bands(grid, rows, out, xlabel="wall-clock seconds",
               ylabel=f"best held-out loss at {race_settings.target_chars:,} chars (nats/char)",
               title=f"{race_settings.objective.corpus.name}: median and range over {repeats} seeds",
               ylim=(min(lows) - 0.05, top), reference=("character n-gram", ngram_nats))


def _load(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _save(path: str, data: dict) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


__all__ = ["ANCHOR", "MULTI_FIDELITY", "RaceSettings", "race", "race_methods", "race_report", "tune_curve"]
