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
there counts as never; a median of never is null in race.json). Beside them, the character n-gram reference on the same split
(:mod:`fastrnn.objective.reference`): the held-out loss counting alone achieves.

Every run is a file in ``out_dir``; a finished run is reused, so an interrupted comparison
continues where it stopped. The folder holds one race: ``race-settings.json`` keeps its settings
(the objective, its texts by SHA-256, the budget, the rungs, threads, backend and each method's
settings), and a race with other settings, or run files made with other settings, is refused
before anything runs (:class:`RaceSettingsError`). A run whose method refused the time (too short
for its start, or for one network at the target) found nothing: it is counted and explained in
``race.md`` and ``race.json`` (``refused``). One refused before it started leaves no file (a file
named like a run always holds one), and is tried again when the race is run again (the refusal
is decided before any training: it costs little). A race in which no run found a network at the
target has no result (:class:`NoResult`). ``race.md`` holds the tables, ``race.png`` the curves
and ``race.json`` every figure (valid JSON: a value that does not exist is null). Times depend
on the machine and its load: compare methods from one run of the command, on a quiet machine.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
from typing import Callable, NamedTuple, Sequence

import numpy as np

from ..objective.function import Objective
from ..objective.reference import ngram_reference
from ..objective.settings import HeldoutSettings, differences, settings_from_record
from ..optimize.methods import METHOD_TABLE, BudgetTooSmall
from .compare import METHOD_SETTINGS, format_stats, median_range, stored_run_conflict
from .optuna_anchor import anchor_curve, run_optuna_hyperband
from .plots import band, plot_bands
from .run_files import RunFileError, read_run, run_is_finished
from .runner import tune

FRACTIONS = (0.25, 0.5, 1.0)
ANCHOR = "optuna-hyperband"
#: The race's settings (:meth:`RaceSettings.record` and each method's), kept in its folder.
SETTINGS_FILE = "race-settings.json"
#: Wall and CPU seconds of each run, as measured when it ran.
COSTS_FILE = "race-costs.json"
#: The flag of each setting a refusal names (the objective's fields and the race's own).
FLAGS = dict(corpus="--corpus", heldout="--heldout", heldout_fraction="--heldout-fraction",
             heldout_chars="--heldout-chars", train_chars="--target-chars", beta="--beta", dtype="--dtype",
             budget_seconds="--budget-seconds", min_chars="--min-chars", eta="--eta", threads="--threads",
             backend="--backend")


class RaceSettingsError(RunFileError):
    """The --out folder holds a race, or run files, made with other settings."""


class NoResult(ValueError):
    """No run of any method found a network at the target: the time paid for none."""


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

    def record(self) -> dict:
        """What ``race-settings.json`` keeps of these settings (the objective loaded: texts by name
        and SHA-256)."""
        return dict(objective=self.objective.loaded().record(), budget_seconds=self.budget_seconds,
                    min_chars=self.min_chars, eta=self.eta, threads=self.threads, backend=self.backend)


def _halving_settings(race: RaceSettings):
    from .halving_plan import HalvingSettings

    return HalvingSettings(min_chars=race.min_chars, target_chars=race.target_chars, eta=race.eta)


def _run_halving(race: RaceSettings, seed: int, path: str) -> str | None:
    """Run (or continue) a halving run; the reason it found nothing at the target, if it did not."""
    from .halving import BudgetError, halve
    from .halving_store import read_halving

    resume = os.path.exists(path)
    if resume and read_halving(path).result is not None:
        return None
    F = Objective(dataclasses.replace(race.objective, seed=seed, train_chars=None), threads=race.threads,
                  backend=race.backend)
    try:
        halve(F, _halving_settings(race), out=path, resume=resume, budget_seconds=race.budget_seconds)
    except BudgetError as exc:  # too short for one network at the target (no file), or it ran out (file kept)
        return str(exc)
    return None


def _is_old_refusal(path: str) -> bool:
    """A file an earlier fastrnn wrote in a refused run's place (``{"type": "refused"}``): no run."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.loads(f.readline()).get("type") == "refused"
    except (OSError, ValueError, AttributeError):
        return False


def halving_curve(path: str, target_chars: int) -> tuple[list[float], list[float]]:
    """(elapsed, best loss so far) of a halving run file: its networks trained to the target (top rung)."""
    from .halving_store import read_halving

    elapsed, best, low = [], [], math.inf
    if not os.path.exists(path):  # refused before it started: nothing found
        return elapsed, best
    for record in read_halving(path).of_type("record"):
        if record["chars"] == target_chars:
            low = min(low, record["fun"])
            elapsed.append(float(record["seconds"]))
            best.append(low)
    return elapsed, best


def _halving_conflict(race: RaceSettings, seed: int, path: str) -> str | None:
    from .halving_plan import setting_differences
    from .halving_store import read_halving

    saved = read_halving(path).settings
    differ = setting_differences(saved["halving"], _halving_settings(race).resolved())
    if differ:
        name, ours, theirs = differ[0]
        return f"its {name} is {ours!r}, this race's is {theirs!r}"
    return (_objective_conflict(saved["objective"], _definition(race, seed, train_chars=None))
            or _budget_conflict(saved, race))


class MultiFidelity(NamedTuple):
    """How the race runs a multi-fidelity method and reads its run file."""

    run: Callable  # (race settings, seed, path) -> why it found nothing, or None
    curve: Callable  # (path, target_chars) -> (elapsed, best at the target so far)
    conflict: Callable  # (race settings, seed, path) -> what differs in a stored run file, or None
    settings: Callable  # (race settings) -> the method's own settings, as race-settings.json keeps them


#: Multi-fidelity methods by name.
MULTI_FIDELITY: dict[str, MultiFidelity] = {"halving": MultiFidelity(
    _run_halving, halving_curve, _halving_conflict, lambda race: _halving_settings(race).resolved().record())}


def race_methods() -> tuple[str, ...]:
    return (*METHOD_TABLE, *MULTI_FIDELITY, ANCHOR)


def _run_tune(race: RaceSettings, method: str, seed: int, path: str) -> str | None:
    """Run (or continue) a :func:`tune` run; the reason it found nothing, if it was refused."""
    resume = False
    if os.path.exists(path):
        stored = read_run(path)
        if run_is_finished(stored, budget_seconds=race.budget_seconds):
            return None
        resume = stored if stored.records else False
    F = Objective(dataclasses.replace(race.objective, seed=seed), threads=race.threads, backend=race.backend)
    try:
        tune(F, method, seed=seed, max_steps=1_000_000, record_every=1, out=path, resume=resume,
             overwrite=not resume, budget_seconds=race.budget_seconds, **METHOD_SETTINGS.get(method, {}))
    except BudgetTooSmall as exc:  # the time cannot pay for its start: no result, said so in the report
        if os.path.exists(path) and not read_run(path).records:
            os.remove(path)  # the new run's settings line alone: no run took place
        return str(exc)
    return None


def tune_curve(path: str, target_chars: int) -> tuple[list[float], list[float]]:
    """(elapsed, best loss so far) of a :func:`tune` run file: every value it recorded is at the target
    length (its objective's train_chars)."""
    elapsed, best, low = [], [], math.inf
    if not os.path.exists(path):  # refused before it started: nothing found
        return elapsed, best
    run = read_run(path)
    for record in run.records:
        trials = record.get("trials") or ([record["trial"]] if "trial" in record else [{"fun": record["fun"]}])
        low = min([low, *(trial["fun"] for trial in trials if trial["fun"] is not None)])
        if math.isfinite(low):  # skipped batches before the first value found nothing
            elapsed.append(float(record.get("elapsed", 0.0)))
            best.append(low)
    return elapsed, best


def _run_anchor(race: RaceSettings, seed: int, path: str) -> None:
    if os.path.exists(path) and _anchor_finished(path):
        return None
    run_optuna_hyperband(dataclasses.replace(race.objective, seed=seed), path, min_chars=race.min_chars,
                         target_chars=race.target_chars, eta=race.eta, budget_seconds=race.budget_seconds, seed=seed,
                         threads=race.threads or os.cpu_count() or 1, backend=race.backend)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(type="finished")) + "\n")
    return None  # Optuna never refuses: a run that reached no target found nothing


def _anchor_lines(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines.pop()  # a torn last line: the run was interrupted (it starts again)
    try:
        return [json.loads(line) for line in lines]
    except ValueError:
        raise RunFileError(f"{path!r} holds a line that is not JSON; the file is damaged: remove it or use another "
                           "--out folder") from None


def _anchor_finished(path: str) -> bool:
    lines = _anchor_lines(path)
    return bool(lines) and lines[-1].get("type") == "finished"


def _anchor_conflict(race: RaceSettings, seed: int, path: str) -> str | None:
    lines = _anchor_lines(path)
    if not lines or lines[0].get("type") != "settings":
        return None  # nothing of a run kept: it starts again
    saved = lines[0]
    conflict = _objective_conflict(saved["objective"], dataclasses.replace(race.objective, seed=seed))
    if conflict:
        return conflict
    wanted = dict(min_chars=race.min_chars, target_chars=race.target_chars, eta=race.eta,
                  budget_seconds=race.budget_seconds, threads=race.threads or os.cpu_count() or 1)
    return next((f"its {key} is {saved.get(key)!r}, this race's is {value!r}"
                 for key, value in wanted.items() if saved.get(key) != value), None)


def _definition(race: RaceSettings, seed: int, **changes) -> HeldoutSettings:
    """The objective a run of the race tunes, every default resolved (as its run file records it)."""
    settings = dataclasses.replace(race.objective, seed=seed, **changes)
    return settings.resolved(settings.split()[0].vocab_size)


def _objective_conflict(saved: dict, wanted) -> str | None:
    differ = differences(settings_from_record(saved), wanted)
    if not differ:
        return None
    return "its objective differs (" + "; ".join(f"{name} {ours!r} there, {theirs!r} here"
                                                 for name, ours, theirs in differ[:3]) + ")"


def _budget_conflict(saved: dict, race: RaceSettings) -> str | None:
    if saved.get("budget_seconds") != race.budget_seconds:
        return f"its budget_seconds is {saved.get('budget_seconds')!r}, this race's is {race.budget_seconds!r}"
    backend = (saved.get("evaluation") or {}).get("backend")
    if backend is not None and backend != race.backend:
        return f"its backend is {backend!r}, this race's is {race.backend!r}"
    return None


def _stored_conflict(race: RaceSettings, method: str, seed: int, path: str) -> str | None:
    """What differs between the run file ``path`` and the run this race would make in its place."""
    if method == ANCHOR:
        return _anchor_conflict(race, seed, path)
    if method in MULTI_FIDELITY:
        return MULTI_FIDELITY[method].conflict(race, seed, path)
    saved = read_run(path).settings
    return stored_run_conflict(saved, _definition(race, seed), method, seed) or _budget_conflict(saved, race)


def _method_settings(race: RaceSettings, method: str) -> dict:
    if method == ANCHOR:
        return {}  # the race's settings are the anchor's
    if method in MULTI_FIDELITY:
        return MULTI_FIDELITY[method].settings(race)
    return dict(METHOD_SETTINGS.get(method, {}))


def _shown(name: str, value) -> str:
    if value is None:
        return "not given" if name in FLAGS else "None"
    return str(value)


def _folder_settings(race: RaceSettings, methods: Sequence[str], out_dir: str) -> dict:
    """What ``race-settings.json`` is to hold after this race: its settings, with the methods the
    folder already holds; RaceSettingsError naming the first setting in which the folder's race
    differs (every run in a folder is of one race)."""
    wanted = json.loads(json.dumps(dict(type="race", **race.record(),
                                        methods={m: _method_settings(race, m) for m in methods})))
    path = os.path.join(out_dir, SETTINGS_FILE)
    if not os.path.exists(path):
        return wanted
    try:
        stored = _load(path)
        differ = differences(settings_from_record(stored["objective"]), settings_from_record(wanted["objective"]))
        stored_methods = dict(stored["methods"])
    except (ValueError, KeyError, TypeError):
        raise RaceSettingsError(f"{path!r} is damaged (it keeps the settings of the folder's race); use another --out "
                                "folder") from None
    differ += [(key, stored.get(key), wanted[key]) for key in ("budget_seconds", "min_chars", "eta", "threads",
                                                               "backend") if stored.get(key) != wanted[key]]
    if differ:
        name, theirs, ours = differ[0]
        flag = FLAGS.get(name, name)
        another = " (another text of that name)" if theirs == ours else ""
        raise RaceSettingsError(f"--out folder {out_dir!r} holds a race run with {flag} {_shown(name, theirs)}{another}, "
                                f"not {_shown(name, ours)}: use the same settings to continue it, or another --out "
                                "folder")
    for method in methods:
        if method in stored_methods and stored_methods[method] != wanted["methods"][method]:
            raise RaceSettingsError(f"--out folder {out_dir!r} holds {method} runs made with other {method} settings "
                                    f"({stored_methods[method]} there, {wanted['methods'][method]} here); use another "
                                    "--out folder")
    return {**wanted, "methods": {**stored_methods, **wanted["methods"]}}


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
    # Every check before any file changes: the folder's race, then each run file this race would reuse.
    folder = _folder_settings(race_settings, methods, out_dir)
    paths = {(method, seed): run_path(out_dir, method, seed) for method in methods for seed in range(repeats)}
    old_refusals = [path for path in paths.values() if os.path.exists(path) and _is_old_refusal(path)]
    for (method, seed), path in paths.items():
        if os.path.exists(path) and path not in old_refusals:
            conflict = _stored_conflict(race_settings, method, seed, path)
            if conflict:
                raise RaceSettingsError(f"{path!r} holds a run made with other settings: {conflict}; use the same "
                                        "settings or another --out folder")
    for path in old_refusals:
        os.remove(path)  # no run, only a refusal: tried again below
    _save(os.path.join(out_dir, SETTINGS_FILE), folder)
    costs_path = os.path.join(out_dir, COSTS_FILE)
    costs = _load(costs_path)
    curves, refusals = {}, {}
    for (method, seed), path in paths.items():
        key = f"{method}/{seed}"
        if progress is not None:
            progress(f"{method} seed {seed}")
        wall, cpu = time.perf_counter(), time.process_time()
        if method == ANCHOR:
            why = _run_anchor(race_settings, seed, path)
            curve = anchor_curve(path, race_settings.target_chars)
        elif method in MULTI_FIDELITY:
            why = MULTI_FIDELITY[method].run(race_settings, seed, path)
            curve = MULTI_FIDELITY[method].curve(path, race_settings.target_chars)
        else:
            why = _run_tune(race_settings, method, seed, path)
            curve = tune_curve(path, race_settings.target_chars)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if why is not None:
            refusals[key] = " ".join(why.split())  # one line in the report
        # a reused run keeps the costs it was measured with; a refusal is measured again
        if key not in costs or wall > 1.0 or costs[key].get("refused"):
            costs[key] = dict(wall=wall, cpu=cpu, refused=why is not None)
            _save(costs_path, costs)
        curves[key] = curve
    if not any(elapsed for elapsed, _ in curves.values()):
        raise NoResult(_no_result(race_settings, out_dir, len(curves), refusals))
    reference = ngram_reference(race_settings.objective)
    summary = _summary(race_settings, methods, repeats, curves, costs, refusals, reference, reference_method, command)
    _save(os.path.join(out_dir, "race.json"), summary)
    _plot(race_settings, methods, repeats, curves, reference.best.nats, os.path.join(out_dir, "race.png"))
    path = os.path.join(out_dir, "race.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(race_report(summary))
    return path


def _no_result(race_settings: RaceSettings, out_dir: str, runs: int, refusals: dict) -> str:
    """NoResult's message. A folder left without a run file forgets the race (its settings and
    costs): the same folder takes a larger budget."""
    kept = [name for name in os.listdir(out_dir) if name.endswith(".jsonl") and "-seed" in name]
    if not kept:
        for name in (SETTINGS_FILE, COSTS_FILE):
            if os.path.exists(os.path.join(out_dir, name)):
                os.remove(os.path.join(out_dir, name))
    why = next(iter(refusals.values()), "no run trained a network to the target within the time")
    where = " (with another --out folder: this one keeps runs made with this budget)" if kept else ""
    return (f"--budget-seconds {race_settings.budget_seconds:g} is too short: none of the race's {runs} "
            f"run{'s' * (runs > 1)} found a network at --target-chars {race_settings.target_chars:,}; raise "
            f"--budget-seconds or lower --target-chars{where} (first reason: {why.rstrip('.')})")


def best_at(curve, seconds: float) -> float:
    elapsed, best = curve
    within = [b for e, b in zip(elapsed, best) if e <= seconds]
    return within[-1] if within else math.nan


def time_to_reach(curve, value: float) -> float:
    for elapsed, best in zip(*curve):
        if best <= value:
            return elapsed
    return math.inf


def _summary(race_settings, methods, repeats, curves, costs, refusals, reference, reference_method, command) -> dict:
    """race.json: every figure of the race. Valid JSON: a value that does not exist (no run of a
    method found a network, a median seed that never reached the reference) is null."""
    budget = race_settings.budget_seconds
    per_method = {}
    for method in methods:
        mine = [curves[f"{method}/{seed}"] for seed in range(repeats)]
        finals = [best_at(c, budget) for c in mine]
        per_method[method] = dict(
            best={f"{int(f * 100)}%": median_range([best_at(c, f * budget) for c in mine]) for f in FRACTIONS},
            final_values=finals,  # null: the run found no network at the target
            found=sum(math.isfinite(v) for v in finals),
            refused=[dict(seed=seed, why=refusals[f"{method}/{seed}"]) for seed in range(repeats)
                     if f"{method}/{seed}" in refusals],
            wall=median_range([costs[f"{method}/{seed}"]["wall"] for seed in range(repeats)]),
            cpu=median_range([costs[f"{method}/{seed}"]["cpu"] for seed in range(repeats)]),
        )
    target = None
    if reference_method in per_method and per_method[reference_method]["best"]["100%"]["median"] is not None:
        target = per_method[reference_method]["best"]["100%"]["median"]
        for method in methods:
            times = [time_to_reach(curves[f"{method}/{seed}"], target) for seed in range(repeats)]
            # null: the median seed never got there
            per_method[method]["time_to_reference"] = statistics.median(times)
            per_method[method]["reached_reference"] = sum(math.isfinite(t) for t in times)
    objective = race_settings.objective
    train_text, heldout_text = objective.split()
    return _json_safe(dict(
        command=command, corpus=objective.corpus.name, corpus_chars=len(objective.corpus),
        vocab_size=train_text.vocab_size, target_chars=race_settings.target_chars,
        heldout=heldout_text.name, heldout_chars=len(heldout_text),  # what networks read, not what was asked
        dtype=objective.dtype, beta=objective.beta,
        budget_seconds=budget, min_chars=race_settings.min_chars, eta=race_settings.eta, repeats=repeats,
        threads=race_settings.threads, reference_method=reference_method, reference_value=target,
        ngram=dict(order=reference.best.order, smoothing=reference.best.smoothing, nats=reference.best.nats),
        methods=per_method,
    ))


def _json_safe(value):
    """``value`` with every NaN or infinity as None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _found(values) -> int:
    """Runs with a value (race.json's null, or NaN in a file of an earlier fastrnn, is none)."""
    return sum(v is not None and math.isfinite(v) for v in values)


def race_report(summary: dict) -> str:
    """race.md from a summary (race.json as written, or as an earlier fastrnn wrote it)."""
    s = summary
    lines = [
        "# Tuning methods at equal wall-clock time, judged at the target training length", "",
        f"Command: `{s['command']}`" if s["command"] else "", "",
        f"Corpus: {s['corpus']}; target length {s['target_chars']:,} training characters; networks read "
        f"{s['heldout_chars']:,} held-out characters; {s['dtype']}, beta = {s['beta']}. Each run: "
        f"{s['budget_seconds']:g} s of wall-clock time, {s['repeats']} seeds per method; multi-fidelity rungs from "
        f"{s['min_chars']:,} characters, eta = {s['eta']}. Values: best held-out loss found at the target length, "
        "nats per character (median and range over the seeds that found one).", "",
        f"Character n-gram reference on the same split: **{s['ngram']['nats']:.3f}** "
        f"({s['ngram']['smoothing']}, order {s['ngram']['order']}).", "",
        "| method | runs that found one | 25% of the time | 50% | 100% | time to reach "
        f"{s['reference_method']}'s median final loss | wall s per run | CPU s per run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, m in s["methods"].items():
        if "time_to_reference" not in m:
            reach_text = "-"
        else:
            reach = m["time_to_reference"]
            reach_text = "never (median)" if reach is None or not math.isfinite(reach) else f"{reach:.0f} s"
        values = m["final_values"]
        lines.append(f"| {method} | {_found(values)}/{len(values)} | {format_stats(m['best']['25%'])} | "
                     f"{format_stats(m['best']['50%'])} | {format_stats(m['best']['100%'])} | "
                     f"{reach_text} | {m['wall']['median']:.0f} | {m['cpu']['median']:.0f} |")
    if s["reference_value"] is not None:
        lines += ["", f"{s['reference_method']}'s median final loss: {s['reference_value']:.3f}."]
    refused = [(method, entry) for method, m in s["methods"].items() for entry in m.get("refused", [])]
    if refused:
        lines += ["", "Runs that found no network at the target (not in the figures above):", ""]
        lines += [f"* {method} seed {entry['seed']}: {entry['why']}" for method, entry in refused]
    lines += ["", "![best so far](race.png)", ""]
    return "\n".join(lines) + "\n"


def _plot(race_settings, methods, repeats, curves, ngram_nats, out) -> None:
    budget = race_settings.budget_seconds
    grid = np.linspace(0, budget, 200)
    rows = {}
    for method in methods:
        found = sum(bool(curves[f"{method}/{seed}"][0]) for seed in range(repeats))
        label = method if found == repeats else f"{method} ({found} of {repeats} runs found one)"
        rows[label] = [[best_at(curves[f"{method}/{seed}"], t) for t in grid] for seed in range(repeats)]
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
        json.dump(_json_safe(data), f, indent=1, allow_nan=False)
    os.replace(tmp, path)


__all__ = ["ANCHOR", "MULTI_FIDELITY", "MultiFidelity", "NoResult", "RaceSettings", "RaceSettingsError", "race",
           "race_methods", "race_report", "tune_curve"]
