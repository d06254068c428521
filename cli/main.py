"""The ``fastrnn`` command line: a thin layer of click over the library.

Bad input exits with status 2 and one line on stderr (``Error: ...``), never a traceback.
Progress goes to stderr, only on a terminal and without ``--quiet``; results go to stdout.
"""

from __future__ import annotations

import functools
import json
import sys
import time

import click

from fastrnn.backends import BACKEND_NAMES, DEFAULT_BACKEND, BackendUnavailable, backend_report, default_threads, get_backend
from fastrnn.checkpoint import CheckpointError, load_model, save_model
from fastrnn.corpus import DEFAULT_CORPUS_DESCRIPTION, CorpusError, load_corpus
from fastrnn.model import STATUS_DIVERGED
from fastrnn.objective import LOSS_KINDS, NOISE_KINDS, Objective
from fastrnn.sampling import sample
from fastrnn.training import train

from .progress import progress_bar


class OneLineErrors(click.Group):
    """Report usage errors as one line (``Error: ...``) with exit status 2, no usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Error: aborted", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)


@click.group(cls=OneLineErrors, context_settings=dict(help_option_names=["-h", "--help"]))
@click.version_option(package_name="fastrnn")
def cli():
    """Train min-char-rnn networks and tune their hyperparameters fast."""


def _common_options(func):
    """--corpus, --backend, --seed and --quiet, shared by every command that trains."""

    @click.option("--corpus", "corpus_path", type=click.Path(dir_okay=False), default=None,
                  help=f"UTF-8 training text. Default: {DEFAULT_CORPUS_DESCRIPTION}")
    @click.option("--backend", type=click.Choice(BACKEND_NAMES), default=DEFAULT_BACKEND, show_default=True,
                  help="Training kernel.")
    @click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")
    @functools.wraps(func)
    def wrapper(*args, corpus_path, backend, **kwargs):
        try:
            kwargs["backend"] = get_backend(backend)
        except BackendUnavailable as exc:
            raise click.BadParameter(str(exc), param_hint="--backend") from None
        try:
            kwargs["corpus"] = load_corpus(corpus_path)
        except CorpusError as exc:
            raise click.BadParameter(str(exc), param_hint="--corpus") from None
        return func(*args, **kwargs)

    return wrapper


def _emit_json(record: dict) -> None:
    click.echo(json.dumps(record))


@cli.command("train")
@click.option("--hidden", type=click.IntRange(min=1), default=100, show_default=True, help="Hidden layer size h.")
@click.option("--seq", "seq_length", type=click.IntRange(min=1), default=25, show_default=True,
              help="Sequence length s (characters of BPTT).")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="Adagrad learning rate l.")
@click.option("--steps", type=click.IntRange(min=0), default=10000, show_default=True, help="Training updates.")
@click.option("--save", "save_path", type=click.Path(dir_okay=False), default=None, help="Write the model to this .npz file.")
@_common_options
def train_command(hidden, seq_length, learning_rate, steps, save_path, corpus, backend, seed, quiet):
    """Train one network; print its final loss as a JSON object on stdout."""
    if save_path is not None and not save_path.endswith(".npz"):
        raise click.BadParameter("model files end in .npz", param_hint="--save")
    try:
        corpus.require_length(seq_length)
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="--seq") from None
    started = time.perf_counter()
    with progress_bar(total=steps, quiet=quiet, desc="training", unit="step") as bar:
        def report(state):
            bar.update(state.steps - bar.n)
            bar.set_postfix(smooth_loss=f"{state.smooth_loss:.4f}")

        state = train(corpus, hidden, seq_length, learning_rate, steps, seed=seed, backend=backend, progress=report)
    seconds = time.perf_counter() - started
    if save_path is not None:
        try:
            save_model(save_path, state, corpus.vocab, corpus.name)
        except CheckpointError as exc:
            raise click.BadParameter(str(exc), param_hint="--save") from None
    _emit_json(dict(
        hidden=hidden, seq_length=seq_length, learning_rate=learning_rate, steps=state.steps, seed=seed,
        backend=backend.name, corpus=corpus.name, smooth_loss=state.smooth_loss, last_loss=state.last_loss,
        status="diverged" if state.status == STATUS_DIVERGED else "ok", seconds=round(seconds, 4),
    ))
    if state.status == STATUS_DIVERGED:
        click.echo(f"Error: training diverged after {state.steps} updates (non-finite loss or weights); "
                   "try a smaller --lr", err=True)
        sys.exit(1)


def _finite_float(ctx, param, value):
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter("must be a finite number")
    return value


@cli.command("objective")
@click.argument("hidden", type=float, callback=_finite_float)
@click.argument("seq_length", metavar="SEQ", type=float, callback=_finite_float)
@click.argument("learning_rate", metavar="LR", type=float, callback=_finite_float)
@click.option("--alpha", type=click.IntRange(min=1), default=100, show_default=True, help="Training updates per run.")
@click.option("--beta", type=click.IntRange(min=1), default=1, show_default=True, help="Runs averaged per corner.")
@click.option("--noise", type=click.Choice(NOISE_KINDS), default="common", show_default=True,
              help="common: replica r uses seed+r everywhere; fresh: new seeds every evaluation (the paper's).")
@click.option("--loss", "loss_kind", type=click.Choice(LOSS_KINDS), default="smooth", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Worker threads [default: all cores].")
@click.option("--json", "as_json", is_flag=True, help="Print the value with settings and counters as JSON.")
@_common_options
def objective_command(hidden, seq_length, learning_rate, alpha, beta, noise, loss_kind, threads, as_json,
                      corpus, backend, seed, quiet):
    """Print the continuous objective F(HIDDEN, SEQ, LR) (floats allowed for HIDDEN and SEQ)."""
    F = Objective(corpus, alpha, beta, noise=noise, seed=seed, threads=threads or default_threads(),
                  backend=backend, loss=loss_kind)
    try:
        value = F((hidden, seq_length, learning_rate))
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="SEQ") from None
    if as_json:
        _emit_json(dict(point=[hidden, seq_length, learning_rate], value=value, **F.settings(),
                        counters=F.counters.as_dict()))
    else:
        click.echo(repr(value))


@cli.command("sample")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--chars", "n_chars", type=click.IntRange(min=0), default=2000, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option("--prime", default="", help="Text the network reads before sampling (not repeated in the output).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed [default: fresh].")
def sample_command(model_path, n_chars, temperature, prime, seed):
    """Print characters sampled from a model saved by `fastrnn train --save`."""
    try:
        model = load_model(model_path)
    except CheckpointError as exc:
        raise click.BadParameter(str(exc), param_hint="MODEL") from None
    try:
        text = sample(model.state.weights, model.vocab, n_chars, temperature=temperature, prime=prime, seed=seed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--prime") from None
    click.echo(text)


@cli.command("backends")
def backends_command():
    """List the training backends: available or not, threading, version."""
    for row in backend_report():
        status = "available" if row["available"] else "not available"
        detail = f"{row['threading']}; {row['version']}" if row["available"] else row["note"]
        click.echo(f"{row['name']:8} {status:14} {detail}")


@cli.command("bench")
@click.option("--corpus", "corpus_path", type=click.Path(dir_okay=False), default=None,
              help="Training text [default: the built-in corpus].")
@click.option("--backends", "backend_names", default=",".join(BACKEND_NAMES), show_default=True,
              help="Comma-separated backends to compare (unavailable ones are left out).")
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True,
              help="Interleaved rounds per figure (medians are reported).")
@click.option("--beta", type=click.IntRange(min=1), default=4, show_default=True,
              help="Replicas in the threads comparison.")
@click.option("--alpha", type=click.IntRange(min=1), default=100, show_default=True,
              help="Training steps per replica in the threads comparison.")
def bench_command(corpus_path, backend_names, rounds, beta, alpha):
    """Print Markdown tables: training steps/s per backend and config, and 2-thread speed-up."""
    from fastrnn import bench

    names = [name.strip() for name in backend_names.split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKEND_NAMES]
    if unknown:
        raise click.BadParameter(f"unknown backend {unknown[0]!r}; valid: {', '.join(BACKEND_NAMES)}",
                                 param_hint="--backends")
    try:
        corpus = load_corpus(corpus_path)
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="--corpus") from None
    click.echo(f"corpus: {corpus.name} ({len(corpus):,} characters, V={corpus.vocab_size}); "
               f"single thread, float64, medians of {rounds} interleaved rounds\n")
    click.echo(bench.markdown_table(bench.step_rates(corpus, names, rounds=rounds)))
    click.echo(f"\n| backend | H | S | beta | 1 thread (s) | 2 threads (s) | speed-up |\n|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        if name == "numpy":
            continue  # holds the GIL: threads cannot help it
        try:
            get_backend(name)
        except BackendUnavailable:
            continue
        for hidden, seq_length in bench.CONFIGS:
            one, two, speedup = bench.thread_speedup(corpus, name, hidden, seq_length, beta, alpha, rounds)
            click.echo(f"| {name} | {hidden} | {seq_length} | {beta} | {one:.4f} | {two:.4f} | {speedup:.2f}x |")


def main():
    cli(prog_name="fastrnn")


if __name__ == "__main__":
    main()
