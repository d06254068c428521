"""`fastrnn reproduce`: the paper's nine trials."""

from __future__ import annotations

import sys

import click

from fastrnn._validation import MAX_COUNT
from fastrnn.backends import (
    default_threads,
)
from fastrnn.objective.function import NOISE_KINDS
from fastrnn.tuning.run_files import RunFileError

from .common import (
    common_options,
    executor_options,
    finite_float,
    make_out_dir,
    paper_form,
)
from .progress import RunBars


@click.command("reproduce")
@click.option("--trial", "trial_spec", default="all", show_default=True, help="Trial number 1-9, a list (1,4,6) or all.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="reproduction", show_default=True,
              help="Folder for run files, figures, summary.json and report.md.")
@click.option("--noise", type=click.Choice(NOISE_KINDS), default="common", show_default=True,
              help="common random numbers (default) or the paper's fresh initialisations.")
@click.option("--threads", type=click.IntRange(1, MAX_COUNT), default=None, help="Worker threads [default: all cores].")
@click.option("--scale", type=click.FloatRange(min=0, min_open=True, max=1), default=1.0, show_default=True,
              callback=finite_float,
              help="Fraction of each trial's optimizer steps (1 = full scale; smaller for a quick look).")
@click.option("--intensive/--no-intensive", default=True, show_default=True,
              help="Compute the intensive gradient (alpha 100, beta 100) at each final point.")
@common_options
@executor_options
def reproduce_command(trial_spec, out_dir, noise, threads, scale, intensive, corpus, backend, seed, dtype, quiet,
                      executor):
    """Run the paper's trials and write a Markdown report beside its published numbers."""
    from fastrnn.objective.settings import PaperSettings
    from fastrnn.tuning import reproduce

    try:
        numbers = reproduce.trial_numbers(trial_spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--trial") from None
    make_out_dir(out_dir)
    command = ("fastrnn reproduce " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["reproduce"]
               else f"fastrnn reproduce --trial {trial_spec}")
    bars = RunBars(quiet, unit="step")

    def progress(label, record):
        bars(label, record["step"], f"x={paper_form(record['x'])} F={record['fun']:.4f}")

    def on_trial(summary):
        if not quiet and sys.stderr.isatty():  # progress: for a person at a terminal (report.md has the finals)
            finals = "; ".join(paper_form(run["final"]) for run in summary["runs"])
            click.echo(f"trial {summary['number']}: {finals}", err=True)

    try:
        report = reproduce.reproduce(numbers, corpus, out_dir, command=command, noise=noise, seed=seed,
                                     threads=threads or default_threads(), backend=backend.name,
                                     dtype=dtype or PaperSettings.default_dtype,
                                     scale=scale, intensive=intensive, progress=progress, on_trial=on_trial,
                                     executor=executor)
    except RunFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    finally:
        bars.close()
    click.echo(report)
