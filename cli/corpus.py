"""The small commands on files and the installation: `fastrnn corpus` (a built-in text),
`fastrnn backends` (which are built) and `fastrnn plot` (figures of run files and trained models)."""

from __future__ import annotations

import functools
import json
import os

import click

from fastrnn.backends import (
    backend_report,
)
from fastrnn.network.checkpoint import CheckpointError, load_model
from fastrnn.network.corpus import SHIPPED_TEXTS, CorpusError, default_corpus, shipped_text
from fastrnn.tuning.halving_store import as_run_file, is_halving_file, read_halving
from fastrnn.tuning.run_files import RunFileError, read_run


@click.command("plot")
@click.argument("files", metavar="FILE...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@click.option("--kind", type=click.Choice(["auto", "trials", "hyperparameters", "curve"]), default="auto",
              show_default=True,
              help="trials: each trial's held-out loss, the best so far, and its h, s, l on log axes (run files); "
                   "hyperparameters: the paper's figure, h, s, l over optimizer steps (run files); curve: training "
                   "and held-out loss against characters read (models, checkpoints, train's JSON). auto: curve for "
                   "models, trials for held-out runs, hyperparameters for the paper's.")
@click.option("--x", "x_axis", type=click.Choice(["chars", "seconds"]), default="chars", show_default=True,
              help="trials: against training characters spent or seconds.")
@click.option("--title", default="", help="Figure title.")
def plot_command(files, out, kind, x_axis, title):
    """Plot run files (tune, reproduce, compare) or trained models (train --save, checkpoints,
    or train's JSON output saved to a file): see --kind."""
    from fastrnn.tuning import plots

    curves = [_curve(path) for path in files if _is_training(path)]
    if curves and len(curves) != len(files):
        raise click.BadParameter("give run files or trained models, not both", param_hint="FILE")
    if curves:
        if kind not in ("auto", "curve"):
            raise click.BadParameter(f"models have a learning curve, not {kind}; use --kind curve", param_hint="--kind")
        draw = functools.partial(plots.plot_curves, [curve for _, curve in curves], [label for label, _ in curves])
    else:
        if kind == "curve":
            raise click.BadParameter("run files have trials, not a learning curve: give models or checkpoints",
                                     param_hint="--kind")
        try:
            runs = [as_run_file(read_halving(path)) if is_halving_file(path) else read_run(path) for path in files]
        except RunFileError as exc:
            raise click.BadParameter(str(exc), param_hint="RUN.jsonl") from None
        if any(not run.records for run in runs):
            raise click.BadParameter("a run file has no records yet", param_hint="RUN.jsonl")
        if kind == "auto":
            heldout = all(run.settings["objective"].get("kind", "paper") == "heldout" for run in runs)
            kind = "trials" if heldout else "hyperparameters"
        labels = [run.label for run in runs]
        draw = (functools.partial(plots.plot_trials, runs, labels, x=x_axis) if kind == "trials"
                else functools.partial(plots.plot_runs, runs, labels))
    if not os.path.splitext(out)[1]:
        out += ".png"  # what matplotlib would write; the path printed must be the file's
    try:
        draw(out, title=title)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {out!r}: {exc.strerror or exc}", param_hint="--out") from None
    except ValueError as exc:  # matplotlib: an extension it cannot write
        raise click.BadParameter(f"cannot write {out!r}: {exc}; use a .png name", param_hint="--out") from None
    click.echo(out)


def _is_training(path: str) -> bool:
    """A model file (a zip archive) or train's JSON output (one object), not a run file."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False  # read_run names the problem
    if head.startswith(b"PK\x03\x04"):
        return True
    try:
        first = json.loads(head.split(b"\n", 1)[0])
    except (ValueError, UnicodeDecodeError):
        return head.lstrip().startswith(b"{") and b'"curve"' in head
    return isinstance(first, dict) and "type" not in first


def _curve(path: str):
    """(label, curve points) of a model file or of train's JSON output."""
    from fastrnn.network.session import CurvePoint

    if open(path, "rb").read(4) == b"PK\x03\x04":
        try:
            model = load_model(path)
        except CheckpointError as exc:
            raise click.BadParameter(str(exc), param_hint="FILE") from None
        records = model.info.get("curve")
    else:
        try:
            with open(path, encoding="utf-8") as f:
                records = json.load(f).get("curve")
        except (ValueError, UnicodeDecodeError, AttributeError):
            raise click.BadParameter(f"{path!r} is neither a run file nor train's JSON output", param_hint="FILE") \
                from None
    if not records:
        raise click.BadParameter(f"{path!r} holds no learning curve (written by an earlier fastrnn, or trained for "
                                 "no updates)", param_hint="FILE")
    try:
        return os.path.basename(path), [CurvePoint.from_record(record) for record in records]
    except (KeyError, TypeError, ValueError):
        raise click.BadParameter(f"{path!r}: its learning curve is malformed", param_hint="FILE") from None

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
