"""Tuning methods head to head at equal budget, judged on held-out text: ``fastrnn compare``.

Each method tunes the held-out objective from ``repeats`` seeds (seed r starts the optimizer and
initialises the networks), each run stopping once the networks it trained have read
``budget_chars`` characters of training text (:func:`fastrnn.tuning.tune`'s budget; memo hits
are free). Every run is a resumable run file in ``out_dir``, so an interrupted comparison
continues where it stopped.

Two figures per method:

* **best found**: the lowest held-out loss among the points the run evaluated (its records),
  at 25%, 50% and 100% of the budget: median and range over the seeds;
* **final check**: what a user gets. The run's final point, rounded to whole h and s, is trained
  again for ``final_factor`` times the training length, from seeds the tuning never used, and
  scored on held-out text; beside it, min-char-rnn's defaults (100, 25, 0.1) trained the same.

``report.md`` holds the tables, ``best_so_far.png`` the best loss found against training
characters spent, ``summary.json`` every figure.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from typing import Callable, Sequence

import numpy as np

from ..objective.function import Objective
from ..objective.settings import differences, settings_from_record
from .plots import plot_bands
from .run_files import RunFileError, read_run
from .runner import HELDOUT_SETTINGS, tune

#: Optimizer settings each method runs with in a comparison: those ``fastrnn tune`` uses on the
#: held-out objective (:data:`fastrnn.tuning.HELDOUT_SETTINGS`).
METHOD_SETTINGS = HELDOUT_SETTINGS
#: min-char-rnn's own hyperparameters: the network a user gets without tuning.
DEFAULTS_POINT = (100, 25, 0.1)
FRACTIONS = (0.25, 0.5, 1.0)
#: Seeds of the final check's networks start here, away from the tuning's (0 .. repeats + beta).
FINAL_SEED = 10_000


def run_path(out_dir: str, method: str, seed: int) -> str:
    return os.path.join(out_dir, f"{method}-seed{seed}.jsonl")


def compare(
    corpus,
    methods: Sequence[str],
    out_dir: str,
    *,
    repeats: int = 5,
    budget_chars: int,
    train_chars: int | None = None,
    heldout_chars: int | None = None,
    beta: int = 1,
    final_factor: int = 10,
    backend="numba",
    dtype: str | None = None,
    threads: int | None = None,
    command: str = "",
    progress: Callable[[str, dict], None] | None = None,
) -> str:
    """Run (or resume) every method from every seed, then the final checks; return report.md's path."""
    unknown = [m for m in methods if m not in METHOD_SETTINGS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; valid: {', '.join(METHOD_SETTINGS)}")
    os.makedirs(out_dir, exist_ok=True)
    settings = dict(kind="heldout", beta=beta, backend=backend, dtype=dtype, threads=threads)
    if train_chars is not None:
        settings["train_chars"] = train_chars
    if heldout_chars is not None:
        settings["heldout_chars"] = heldout_chars
    started = time.perf_counter()
    runs = {}
    cpu_path = os.path.join(out_dir, "cpu-seconds.json")
    cpu = _load_json(cpu_path)
    for method in methods:
        for seed in range(repeats):
            F = Objective(corpus, seed=seed, **settings)
            path = run_path(out_dir, method, seed)
            label = f"{method} seed {seed}"
            on_step = None if progress is None else (lambda record, label=label: progress(label, record))
            before = time.process_time()
            runs[method, seed] = _tune(F, method, seed, path, budget_chars, on_step)
            spent = time.process_time() - before
            if f"{method}/{seed}" not in cpu or spent > 1.0:  # a reused run keeps what it was measured with
                cpu[f"{method}/{seed}"] = spent
                with open(cpu_path, "w", encoding="utf-8") as f:
                    json.dump(cpu, f, indent=1)
    template = Objective(corpus, **settings)
    final = _final_checks(corpus, settings, template.definition.train_chars * final_factor, runs, repeats, beta)
    summary = _summary(runs, final, methods, repeats, budget_chars, template, final_factor, command,
                       time.perf_counter() - started, cpu)
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    _plot(runs, methods, repeats, budget_chars, os.path.join(out_dir, "best_so_far.png"), template)
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(report(summary))
    return path


def _tune(F, method, seed, path, budget_chars, on_step):
    """The run in ``path``: resumed or reused (its settings checked first: a run made with other
    settings is refused, finished or not, naming what differs), or started."""
    resume = False
    if os.path.exists(path):
        stored = read_run(path)  # a damaged file is reported (RunFileError), never silently replaced
        conflict = stored_run_conflict(stored.settings, F.definition, method, seed)
        if stored.settings.get("budget_seconds") is not None:
            conflict = "it ran for a time budget (a race, compare --budget-seconds), not a budget in characters"
        if conflict:
            raise RunFileError(f"{path!r} holds a run made with other settings: {conflict}; use the same settings or "
                               "another --out folder")
        spent_to = stored.settings.get("budget_chars")
        if stored.result is not None and spent_to is not None and spent_to > budget_chars:
            raise RunFileError(f"{path!r} was tuned with a budget of {spent_to:,} characters, more than this "
                               f"comparison's {budget_chars:,}; use --budget-chars {spent_to} or another --out folder")
        resume = stored if stored.records else False  # read once, here
    tune(F, method, seed=seed, max_steps=100_000, record_every=1, out=path, resume=resume, overwrite=not resume,
         budget_chars=budget_chars, on_step=on_step, **METHOD_SETTINGS[method])
    return read_run(path)


def stored_run_conflict(saved: dict, definition, method: str, seed: int) -> str | None:
    """What differs between a run file's settings line and the run a comparison would make in its
    place (the method, its settings, the seed, the objective: ``definition``, every default
    resolved), or None. A comparison checks this before it reuses a run, finished or not."""
    wanted = dict(method=method, options=json.loads(json.dumps(METHOD_SETTINGS.get(method, {}))), seed=seed)
    for key, value in wanted.items():
        if saved.get(key) != value:
            return f"its {key} is {saved.get(key)!r}, this comparison's is {value!r}"
    differ = differences(settings_from_record(saved["objective"]), definition)
    if differ:
        shown = "; ".join(f"{name} {ours!r} there, {theirs!r} here" for name, ours, theirs in differ[:3])
        return f"its objective differs ({shown})"
    return None


def best_so_far(run) -> tuple[np.ndarray, np.ndarray]:
    """(training characters spent, lowest value found so far) at each record of a run."""
    chars = np.array([r["counters"]["training_chars"] for r in run.records], dtype=float)
    best = np.minimum.accumulate(np.array([r["fun"] for r in run.records], dtype=float))
    return chars, best


def best_at(run, chars_limit: float) -> float:
    chars, best = best_so_far(run)
    within = best[chars <= chars_limit]
    return float(within[-1]) if within.size else float("nan")


def _final_point(run) -> list[float]:
    x = run.result["x"] if run.result is not None else run.records[-1]["x"]
    return [float(round(x[0])), float(round(x[1])), float(x[2])]


def _final_checks(corpus, settings, train_chars, runs, repeats, beta) -> dict:
    """Held-out loss of each run's final point (and of min-char-rnn's defaults) after long training."""
    F = Objective(corpus, **{**settings, "train_chars": train_chars}, seed=FINAL_SEED)
    keys = list(runs)
    points = [_final_point(runs[key]) for key in keys] + [list(DEFAULTS_POINT)]
    values = F.evaluate_many(points)
    final = {f"{method}/{seed}": dict(point=point, value=float(value))
             for (method, seed), point, value in zip(keys, points, values)}
    final["defaults"] = dict(point=list(DEFAULTS_POINT), value=float(values[-1]))
    final["train_chars"] = train_chars
    return final


def median_range(values) -> dict:
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return dict(median=None, low=None, high=None)
    return dict(median=statistics.median(values), low=min(values), high=max(values))


def _load_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _summary(runs, final, methods, repeats, budget_chars, template, final_factor, command, seconds, cpu) -> dict:
    per_method = {}
    for method in methods:
        mine = [runs[method, seed] for seed in range(repeats)]
        per_method[method] = dict(
            best={f"{int(f * 100)}%": median_range([best_at(run, f * budget_chars) for run in mine]) for f in FRACTIONS},
            final=median_range([final[f"{method}/{seed}"]["value"] for seed in range(repeats)]),
            final_points=[final[f"{method}/{seed}"]["point"] for seed in range(repeats)],
            final_values=[final[f"{method}/{seed}"]["value"] for seed in range(repeats)],
            chars_spent=median_range([run.records[-1]["counters"]["training_chars"] for run in mine]),
            trainings=median_range([run.records[-1]["counters"]["trainings_run"] for run in mine]),
            seconds=median_range([run.result["seconds"] if run.result else float("nan") for run in mine]),
            # CPU seconds of this process (all threads) while the run was computed (tuning only)
            cpu_seconds=median_range([cpu.get(f"{method}/{seed}", float("nan")) for seed in range(repeats)]),
        )
    return dict(command=command, corpus=template.source_corpus.name, corpus_chars=len(template.source_corpus),
                vocab_size=template.corpus.vocab_size, heldout=template.heldout.name, heldout_chars=len(template.heldout),
                train_chars=template.definition.train_chars, beta=template.beta, dtype=template.dtype, repeats=repeats,
                budget_chars=budget_chars, final_factor=final_factor, final_train_chars=final["train_chars"],
                defaults=final["defaults"], methods=per_method, method_settings={m: METHOD_SETTINGS[m] for m in methods},
                seconds=seconds)


def format_stats(stats: dict, digits: int = 3) -> str:
    if stats["median"] is None:
        return "-"
    return f"{stats['median']:.{digits}f} ({stats['low']:.{digits}f}-{stats['high']:.{digits}f})"


def _seconds(stats: dict | None) -> str:
    return "-" if not stats or stats["median"] is None else f"{stats['median']:.0f} s"


def report(summary: dict) -> str:
    """The Markdown report of a comparison's summary."""
    s = summary
    lines = [
        "# Tuning methods at equal budget, judged on held-out text", "",
        f"Command: `{s['command']}`" if s["command"] else "", "",
        f"Corpus: {s['corpus']} ({s['corpus_chars']:,} characters, V={s['vocab_size']}); held out: {s['heldout']} "
        f"(networks read its first {s['heldout_chars']:,} characters). Each network trains on {s['train_chars']:,} "
        f"characters; beta = {s['beta']}; {s['dtype']}. Budget per run: {s['budget_chars']:,} training characters "
        f"(about {s['budget_chars'] / s['train_chars']:.0f} networks); {s['repeats']} seeds per method. "
        f"Values are mean cross-entropy per held-out character in nats (divide by ln 2 = 0.693 for bits).", "",
        "## Best held-out loss found (median and range over seeds)", "",
        "| method | 25% of budget | 50% | 100% | networks trained | wall time per run | CPU time per run |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method, m in s["methods"].items():
        lines.append(f"| {method} | {format_stats(m['best']['25%'])} | {format_stats(m['best']['50%'])} | "
                     f"{format_stats(m['best']['100%'])} | "
                     f"{m['trainings']['median']:.0f} | {m['seconds']['median']:.0f} s | {_seconds(m.get('cpu_seconds'))} |")
    lines += [
        "", f"## Final check: the final point trained on {s['final_train_chars']:,} characters "
        f"({s['final_factor']}x), new seeds", "",
        f"min-char-rnn's defaults {tuple(s['defaults']['point'])}: **{s['defaults']['value']:.3f}** nats/char.", "",
        "| method | held-out loss (median, range) | beats the defaults | final points (h, s, l) |",
        "|---|---:|---:|---|",
    ]
    for method, m in s["methods"].items():
        values = m["final_values"]
        wins = f"{sum(v < s['defaults']['value'] for v in values)}/{len(values)}"
        points = "; ".join(f"({p[0]:.0f}, {p[1]:.0f}, {p[2]:.3g})" for p in m["final_points"])
        lines.append(f"| {method} | {format_stats(m['final'])} | {wins} | {points} |")
    lines += ["", "Method settings: " + "; ".join(f"{k}: {v or 'defaults'}" for k, v in s["method_settings"].items()),
              "", "![best so far](best_so_far.png)", ""]
    return "\n".join(lines) + "\n"


def _plot(runs, methods, repeats, budget_chars, out, template) -> None:
    grid = np.linspace(0, budget_chars, 200)
    rows = {}
    for method in methods:
        rows[method] = []
        for seed in range(repeats):
            chars, best = best_so_far(runs[method, seed])
            index = np.searchsorted(chars, grid, side="right") - 1  # the last record within each budget
            rows[method].append(np.where(index >= 0, best[np.maximum(index, 0)], np.nan))
    # A network with a wild learning rate can score tens of nats; the interesting range is near the
    # best values, up to a little above a uniform guess (ln V).
    finite = [best for method in methods for seed in range(repeats) for best in best_so_far(runs[method, seed])[1]]
    plot_bands(grid, rows, out, xlabel="training characters spent", ylabel="best held-out loss found (nats/char)",
               title=f"{template.source_corpus.name}: median and range over {repeats} seeds",
               ylim=(min(finite) - 0.05, math.log(template.corpus.vocab_size) + 0.25))
