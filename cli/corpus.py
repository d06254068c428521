"""The small commands on files and the installation: `fastrnn corpus` (a built-in text),
`fastrnn backends` (which are built) and `fastrnn plot` (figures from run files)."""

from __future__ import annotations

import os

import click

from fastrnn.backends import (
    backend_report,
)
from fastrnn.network.corpus import SHIPPED_TEXTS, CorpusError, default_corpus, shipped_text
from fastrnn.tuning.run_files import RunFileError, read_run


@click.command("plot")
@click.argument("run_files", metavar="RUN.jsonl...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@click.option("--title", default="", help="Figure title.")
def plot_command(run_files, out, title):
    """Plot hyperparameters over time (the paper's Fig 2/3E/4E) from one or more run files."""
    from fastrnn.tuning.plots import plot_runs

    try:
        runs = [read_run(path) for path in run_files]
    except RunFileError as exc:
        raise click.BadParameter(str(exc), param_hint="RUN.jsonl") from None
    if any(not run.records for run in runs):
        raise click.BadParameter("a run file has no records yet", param_hint="RUN.jsonl")
    labels = [run.label for run in runs]
    if not os.path.splitext(out)[1]:
        out += ".png"  # what matplotlib would write; the path printed must be the file's
    try:
        plot_runs(runs, labels, out, title)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {out!r}: {exc.strerror or exc}", param_hint="--out") from None
    except ValueError as exc:  # matplotlib: an extension it cannot write
        raise click.BadParameter(f"cannot write {out!r}: {exc}; use a .png name", param_hint="--out") from None
    click.echo(out)

@click.command("corpus")
@click.argument("name", metavar="NAME", type=click.Choice(["default", *SHIPPED_TEXTS]))
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None, help="Write to this file [default: stdout].")
def corpus_command(name, out):
    """Write a built-in text: `default` (the built-in corpus, as rendered) or `tinyshakespeare` (the paper's).

    For example `fastrnn corpus tinyshakespeare -o tinyshakespeare.txt`, then `--corpus tinyshakespeare.txt`.
    """
    try:
        text = default_corpus().text if name == "default" else shipped_text(name)
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        with open(out, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {out!r}: {exc.strerror or exc}", param_hint="--out") from None
    click.echo(out)

@click.command("backends")
def backends_command():
    """List the training backends: available or not, threading, version."""
    for row in backend_report():
        status = "available" if row["available"] else "not available"
        detail = f"{row['threading']}; {row['version']}" if row["available"] else row["note"]
        click.echo(f"{row['name']:8} {status:14} {detail}")
