"""The paper's nine trials as presets, and a Markdown report beside the published numbers.

Each trial is one or more tuning runs (the gradient-descent trials run three step sizes, each
from its own random start in [0, 10]^3). Run files, figures, a JSON summary and ``report.md``
go to one folder; a run whose file already holds a result is reused, so an interrupted
``fastrnn reproduce`` picks up where it stopped.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..objective.function import Objective
from ..optimize.calculus import gradient
from .run_files import RunFileError, read_run
from .runner import tune

#: The paper's "intensive gradient": alpha 100, beta 100, forward differences with h = 1e-8.
INTENSIVE = dict(alpha=100, beta=100)
#: The paper reports gradients multiplied by 1e-8 ("for the reader's convenience").
PAPER_UNITS = 1e-8


@dataclass(frozen=True)
class Trial:
    number: int
    method: str
    alpha: int
    beta: int
    steps: int
    record_every: int
    runs: tuple  # optimizer options of each run, in the paper's order
    intensive_every: int | None = None
    intensive_settings: dict = field(default_factory=lambda: dict(alpha=1000, beta=10))
    description: str = ""


_GD_STEPS = ({"step": 0.1}, {"step": 0.01}, {"step": 0.5})

TRIALS = {
    1: Trial(1, "gd", 100, 1, 10000, 100, _GD_STEPS, description="GD, alpha 100, beta 1"),
    2: Trial(2, "gd", 100, 1, 10000, 100, _GD_STEPS, description="GD, alpha 100, beta 1"),
    3: Trial(3, "gd", 100, 1, 10000, 100, _GD_STEPS, description="GD, alpha 100, beta 1"),
    4: Trial(4, "gd", 10, 1, 10000, 100, _GD_STEPS, description="GD, alpha 10, beta 1"),
    5: Trial(5, "gd", 1, 1, 10000, 100, _GD_STEPS, intensive_every=1000,
             description="GD, alpha 1, beta 1; intensive gradient (alpha 1000, beta 10) every 1000 steps"),
    6: Trial(6, "newton", 10, 1, 1000, 10, ({"multiplier": 1.0},), description="Newton, alpha 10, beta 1, multiplier 1"),
    7: Trial(7, "newton", 10, 1, 1000, 10, ({"multiplier": 1000.0},),
             description="Newton, alpha 10, beta 1, multiplier 1000"),
    8: Trial(8, "bfgs", 10, 10, 100, 1, ({},), description="BFGS, alpha 10, beta 10"),
    9: Trial(9, "dfp", 10, 10, 100, 1, ({},), description="DFP, alpha 10, beta 10"),
}

#: Final points published in the paper's Results section (None: "not recorded").
PAPER_FINAL_POINTS = {
    1: [[24.7835, 7.3241, 0.9308], [20.2441, 9.8831, 0.3094], [36.7481, 35.9527, 0.2646]],
    2: [[20.6382, 7.6258, 0.7576], [19.9035, 9.0293, 0.9868], [66.4636, 39.7850, 0.9208]],
    3: [None, None, [74.5392, 18.9831, 0.2774]],
    4: [[20.6689, 5.4620, 0.3758], [20.0701, 5.2175, 0.7085], [28.0586, 27.1379, 0.7804]],
    5: [[22.4090, 11.7156, 0.2462], [20.3657, 5.0541, 0.8160], [31.4826, 32.9537, 1.1683]],
    6: [[20.566887, 9.977575, 0.654435]],
    7: [[22.3629, 5.7534, 0.3744]],
    8: [[92.842619, -120.690901, -116.894512]],
    9: [[-15.036408, -213.763940, 939.634306]],
}

#: Intensive gradients (alpha 100, beta 100) at the final points, in the paper's units (x 1e-8).
PAPER_INTENSIVE_GRADIENTS = {
    1: [[-0.66361387, 9.48057384, -2.37193118], [-0.30589072, 0.15317452, 0.08640280],
        [-1.20603242, -0.28046133, -11.54847267]],
    2: [[-3.44347236, 0.16334927, 2.35988607], [-4.79179805, -4.06369183, -2.06258140],
        [-623.41250076, 569.28816667, 257.37610905]],
    3: [None, None, [32.55462667, -10.97172678, -24.75223905]],
    6: [[-2.01919592, 0.66754092, -2.96560209]],
    7: [[1.07868134, -0.52292994, -0.10280518]],
    8: [[0.0, -0.0002910, -0.00023433]],
    9: [[-0.00085091, -0.00047695, 0.00187790]],
}


def trial_numbers(spec: str) -> list[int]:
    if spec == "all":
        return sorted(TRIALS)
    numbers = []
    for part in spec.split(","):
        if not part.strip().isdigit() or int(part) not in TRIALS:
            raise ValueError(f"trials are 1-9 or 'all' (comma-separated allowed), got {spec!r}")
        numbers.append(int(part))
    return numbers


def _run_label(options: dict) -> str:
    return "-".join(f"{k}{v:g}" for k, v in options.items()) or "default"


def run_trial(
    trial: Trial,
    corpus,
    out_dir: str,
    *,
    noise: str = "common",
    seed: int = 0,
    threads: int | None = None,
    backend: str = "numba",
    dtype: str = "float64",
    scale: float = 1.0,
    progress: Callable[[str, dict], None] | None = None,
    executor="threads",
) -> dict:
    """Run (or reuse) every run of ``trial``; return its summary for the report."""
    steps = max(1, int(round(trial.steps * scale)))
    record_every = max(1, min(trial.record_every, steps))
    summary = dict(number=trial.number, description=trial.description, method=trial.method, alpha=trial.alpha,
                   beta=trial.beta, steps=steps, record_every=record_every, runs=[])
    for index, options in enumerate(trial.runs):
        run_seed = seed * 1000 + trial.number * 10 + index
        path = os.path.join(out_dir, f"trial{trial.number}-{_run_label(options)}.jsonl")
        F = Objective(corpus, trial.alpha, trial.beta, noise=noise, seed=run_seed, threads=threads, backend=backend,
                      dtype=dtype, kind="paper", executor=executor)
        _check_not_longer(path, steps)
        started = time.perf_counter()
        intensive = []

        def on_step(record, label=f"trial {trial.number} {_run_label(options)}"):
            if progress is not None:
                progress(label, record)
            if trial.intensive_every and record["step"] % max(1, int(trial.intensive_every * scale)) == 0:
                intensive.append(_intensive_gradient(corpus, record["x"], trial.intensive_settings, noise,
                                                     run_seed, threads, backend, dtype, executor))

        # A file the killed start of a run left empty holds nothing to keep; any other is resumed,
        # and tune refuses one made with other settings (RunFileError).
        resume = os.path.exists(path) and os.path.getsize(path) > 0
        tune(F, trial.method, seed=run_seed, max_steps=steps, record_every=record_every, out=path,
             resume=resume, overwrite=not resume, on_step=on_step, **options)
        if intensive:
            with open(path.replace(".jsonl", "-intensive.jsonl"), "w", encoding="utf-8") as f:
                for entry in intensive:
                    f.write(json.dumps(entry) + "\n")
        existing = read_run(path)
        result = existing.result
        summary["runs"].append(dict(
            options=options, seed=run_seed, file=os.path.basename(path), final=result["x"], fun=result["fun"],
            nit=result["nit"], nfev=result["nfev"], status=result["message"], counters=result["counters"],
            seconds=result["seconds"], resumed_seconds=time.perf_counter() - started,
        ))
    return summary


def _check_not_longer(path: str, steps: int) -> None:
    """RunFileError if ``path`` holds a longer run than ``steps``: the folder was made with a larger
    --scale, and continuing or reusing it would report a run that was not asked for."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    run = read_run(path)
    done = run.result["nit"] if run.result is not None else (run.records[-1]["step"] if run.records else 0)
    if done > steps:
        raise RunFileError(f"{path!r} holds a run of {done} steps, more than the {steps} asked for (made with a "
                           "larger --scale?); use another --out folder")


def _intensive_gradient(corpus, x, settings, noise, seed, threads, backend, dtype="float64", executor="threads") -> dict:
    F = Objective(corpus, settings["alpha"], settings["beta"], noise=noise, seed=seed, threads=threads,
                  backend=backend, dtype=dtype, kind="paper", executor=executor)
    started = time.perf_counter()
    g = gradient(F, np.asarray(x, dtype=float))
    return dict(x=list(x), alpha=settings["alpha"], beta=settings["beta"], gradient=g.tolist(),
                magnitude=float(np.linalg.norm(g)), seconds=time.perf_counter() - started)


def intensive_gradients(summary: dict, corpus, *, noise, seed, threads, backend, dtype="float64",
                        executor="threads") -> None:
    """Add the paper's intensive gradient (alpha 100, beta 100) at each run's final point."""
    for run in summary["runs"]:
        if "intensive" not in run:
            run["intensive"] = _intensive_gradient(corpus, run["final"], INTENSIVE, noise, seed, threads, backend,
                                                   dtype, executor)


def environment() -> dict:
    """Versions and the source commit (of the package's checkout, else the working directory's)."""
    from .. import __version__

    commit = ""
    for folder in (os.path.dirname(os.path.abspath(__file__)), os.getcwd()):
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=folder, check=False).stdout.strip()
        except OSError:
            commit = ""
        if commit:
            break
    return dict(fastrnn=__version__, python=platform.python_version(), machine=platform.machine(),
                processor=platform.processor(), cores=os.cpu_count(), commit=commit or "unknown")


def _fmt_point(point, digits=4) -> str:
    if point is None:
        return "(not recorded)"
    return "[" + ", ".join(f"{v:.{digits}f}" for v in point) + "]"


def write_report(summaries: list[dict], settings: dict, out_dir: str, analysis: str = "") -> str:
    """``report.md`` and ``summary.json`` in ``out_dir``; returns the report's path."""
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(dict(settings=settings, trials=summaries), f, indent=1)
    lines = [
        "# Reproducing the paper's nine trials",
        "",
        f"Command: `{settings['command']}`",
        "",
        f"Corpus: {settings['corpus']} ({settings['corpus_chars']:,} characters, V={settings['vocab_size']}); "
        f"noise: {settings['noise']}; backend: {settings['backend']} ({settings.get('dtype', 'float64')}); "
        f"threads: {settings['threads']}; "
        f"scale: {settings['scale']}; commit {settings['environment']['commit']}, "
        f"Python {settings['environment']['python']}, {settings['environment']['cores']} cores.",
        "",
        "## Final points",
        "",
        "| trial | setting | run | paper | reproduced | F at the end | steps | wall time | trainings | memo share |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for summary in summaries:
        paper = PAPER_FINAL_POINTS.get(summary["number"], [])
        for k, run in enumerate(summary["runs"]):
            c = run["counters"]
            lines.append(
                f"| {summary['number']} | {summary['description']} | {_run_label(run['options'])} | "
                f"{_fmt_point(paper[k] if k < len(paper) else None)} | {_fmt_point(run['final'])} | "
                f"{run['fun']:.4f} | {run['nit']} | {run['seconds']:.1f} s | {c['trainings_run']:,} | "
                f"{c['memo_share']:.0%} |"
            )
    lines += ["", "## Wall time per trial", "", "| trial | wall time | trainings run | training steps |",
              "|---|---:|---:|---:|"]
    for summary in summaries:
        seconds = sum(run["seconds"] for run in summary["runs"])
        trainings = sum(run["counters"]["trainings_run"] for run in summary["runs"])
        steps = sum(run["counters"]["training_steps"] for run in summary["runs"])
        lines.append(f"| {summary['number']} | {seconds / 60:.1f} min | {trainings:,} | {steps:,} |")
    lines += ["", "## Intensive gradients at the final points (alpha 100, beta 100, x 1e-8 as the paper)", "",
              "| trial | run | paper gradient | paper magnitude | reproduced gradient | reproduced magnitude |",
              "|---|---|---|---:|---|---:|"]
    for summary in summaries:
        paper = PAPER_INTENSIVE_GRADIENTS.get(summary["number"], [])
        for k, run in enumerate(summary["runs"]):
            if "intensive" not in run:
                continue
            g = np.array(run["intensive"]["gradient"]) * PAPER_UNITS
            p = paper[k] if k < len(paper) else None
            lines.append(
                f"| {summary['number']} | {_run_label(run['options'])} | {_fmt_point(p, 6)} | "
                f"{'-' if p is None else f'{np.linalg.norm(p):.6g}'} | {_fmt_point(g.tolist(), 8)} | "
                f"{np.linalg.norm(g):.3g} |"
            )
    figures = sorted(name for name in os.listdir(out_dir) if name.endswith(".png"))
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{name}]({name})" for name in figures]
    if analysis:
        lines += ["", analysis.strip()]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def reproduce(
    numbers,
    corpus,
    out_dir: str,
    *,
    command: str,
    noise: str = "common",
    seed: int = 0,
    threads: int | None = None,
    backend: str = "numba",
    dtype: str = "float64",
    scale: float = 1.0,
    intensive: bool = True,
    progress: Callable[[str, dict], None] | None = None,
    on_trial: Callable[[dict], None] | None = None,
    executor="threads",
) -> str:
    """Run the given trials into ``out_dir`` (resuming what is there) and write the report; return its path.

    Trials already in ``out_dir/summary.json`` stay in the report; a trial whose runs are finished
    is not run again, and its intensive gradients are reused when its final points are unchanged.
    ``on_trial(summary)`` is called after each trial.
    """
    from .plots import plot_runs

    os.makedirs(out_dir, exist_ok=True)
    settings = dict(command=command, corpus=corpus.name, corpus_chars=len(corpus), vocab_size=corpus.vocab_size,
                    noise=noise, backend=backend, dtype=dtype, threads=threads, scale=scale, seed=seed,
                    environment=environment())
    summaries_path = os.path.join(out_dir, "summary.json")
    summaries = {}
    if os.path.exists(summaries_path):
        try:
            with open(summaries_path, encoding="utf-8") as f:
                summaries = {t["number"]: t for t in json.load(f).get("trials", [])}
        except (OSError, ValueError, AttributeError, TypeError, KeyError) as exc:
            raise RunFileError(f"{summaries_path!r} is not a summary this command wrote ({exc}); "
                               "delete it or use another folder") from None
    report = None
    for number in numbers:
        trial = TRIALS[number]
        summary = run_trial(trial, corpus, out_dir, noise=noise, seed=seed, threads=threads, backend=backend,
                            dtype=dtype, scale=scale, progress=progress, executor=executor)
        if intensive:
            previous = summaries.get(number)
            if previous and [r["final"] for r in previous["runs"]] == [r["final"] for r in summary["runs"]]:
                for run, old in zip(summary["runs"], previous["runs"]):
                    if "intensive" in old:
                        run["intensive"] = old["intensive"]
            intensive_gradients(summary, corpus, noise=noise, seed=seed, threads=threads, backend=backend, dtype=dtype,
                                executor=executor)
        runs = [read_run(os.path.join(out_dir, run["file"])) for run in summary["runs"]]
        plot_runs(runs, [r.label for r in runs], os.path.join(out_dir, f"trial{number}.png"),
                  title=f"Trial {number}: {trial.description}")
        summaries[number] = summary
        report = write_report([summaries[k] for k in sorted(summaries)], settings, out_dir)
        if on_trial is not None:
            on_trial(summary)
    return report

