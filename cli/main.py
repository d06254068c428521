"""The ``fastrnn`` command line: a thin layer of click over the library.

Bad input exits with status 2 and one line on stderr (``Error: ...``), never a traceback.
Progress goes to stderr, only on a terminal and without ``--quiet``; results go to stdout.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import time

import click
import numpy as np

from fastrnn.backends import (
    BACKEND_NAMES,
    DEFAULT_BACKEND,
    BackendUnavailable,
    backend_report,
    check_backend_dtype,
    default_threads,
    get_backend,
)
from fastrnn.calculus import GRADIENT_METHODS, gradient
from fastrnn.checkpoint import CheckpointError, load_model, save_model
from fastrnn.corpus import DEFAULT_CORPUS_DESCRIPTION, CorpusError, load_corpus
from fastrnn.executors import ExecutorError
from fastrnn.model import DTYPES, STATUS_DIVERGED
from fastrnn.objective import LOSS_KINDS, NOISE_KINDS, Objective
from fastrnn.optimize import METHOD_TABLE, METHODS
from fastrnn.sampling import sample
from fastrnn.training import train
from fastrnn.tuning import RunFileError, read_run, tune

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
    """--corpus, --backend, --seed, --dtype and --quiet, shared by every command that trains."""

    @click.option("--corpus", "corpus_path", type=click.Path(dir_okay=False), default=None,
                  help=f"UTF-8 training text. Default: {DEFAULT_CORPUS_DESCRIPTION}")
    @click.option("--backend", type=click.Choice(BACKEND_NAMES), default=DEFAULT_BACKEND, show_default=True,
                  help="Training kernel.")
    @click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed.")
    @click.option("--dtype", type=click.Choice(DTYPES), default="float64", show_default=True,
                  help="Training precision (float32: compiled backends only).")
    @click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")
    @functools.wraps(func)
    def wrapper(*args, corpus_path, backend, **kwargs):
        try:
            kwargs["backend"] = get_backend(backend)
        except BackendUnavailable as exc:
            raise click.BadParameter(str(exc), param_hint="--backend") from None
        try:
            check_backend_dtype(kwargs["backend"], kwargs["dtype"])
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--dtype") from None
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
def train_command(hidden, seq_length, learning_rate, steps, save_path, corpus, backend, seed, dtype, quiet):
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

        state = train(corpus, hidden, seq_length, learning_rate, steps, seed=seed, backend=backend, progress=report,
                      dtype=dtype)
    seconds = time.perf_counter() - started
    if save_path is not None:
        try:
            save_model(save_path, state, corpus.vocab, corpus.name)
        except CheckpointError as exc:
            raise click.BadParameter(str(exc), param_hint="--save") from None
    _emit_json(dict(
        hidden=hidden, seq_length=seq_length, learning_rate=learning_rate, steps=state.steps, seed=seed,
        backend=backend.name, dtype=dtype, corpus=corpus.name, smooth_loss=state.smooth_loss, last_loss=state.last_loss,
        status="diverged" if state.status == STATUS_DIVERGED else "ok", seconds=round(seconds, 4),
    ))
    if state.status == STATUS_DIVERGED:
        click.echo(f"Error: training diverged after {state.steps} updates (non-finite loss or weights); "
                   "try a smaller --lr", err=True)
        sys.exit(1)


class ExecutorFailed(click.ClickException):
    """The cluster failed (lost scheduler, workers dying): one line, exit status 2."""

    exit_code = 2


def _executor_options(func):
    """--scheduler / --local-workers: train on a Dask cluster instead of this process's threads.

    The command receives ``executor`` ("threads", or a DaskExecutor closed when the command
    ends); an :class:`~fastrnn.executors.ExecutorError` becomes one ``Error:`` line and exit 2.
    """

    @click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
                  help="Train on the Dask cluster of this scheduler (needs fastrnn[dask]).")
    @click.option("--local-workers", type=click.IntRange(min=1), default=None, metavar="N",
                  help="Train on a local Dask cluster of N single-threaded worker processes (needs fastrnn[dask]).")
    @functools.wraps(func)
    def wrapper(*args, scheduler, local_workers, **kwargs):
        if scheduler is not None and local_workers is not None:
            raise click.UsageError("give --scheduler or --local-workers, not both")
        if scheduler is None and local_workers is None:
            return func(*args, executor="threads", **kwargs)
        from fastrnn.executors import dask_executor_class

        try:
            DaskExecutor = dask_executor_class()
            _silence_distributed()
            executor = DaskExecutor.local(local_workers) if scheduler is None else DaskExecutor(scheduler=scheduler)
        except ExecutorError as exc:
            raise ExecutorFailed(str(exc)) from None
        try:
            return func(*args, executor=executor, **kwargs)
        except ExecutorError as exc:
            raise ExecutorFailed(str(exc)) from None
        finally:
            executor.close()

    return wrapper


def _silence_distributed() -> None:
    """Mute distributed's log lines (reconnect attempts, tracebacks of dead workers): the
    executor's errors say what went wrong in one line. Dask's logging config gives some of its
    loggers their own levels, so each is set, not only the parent."""
    for name in ["distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))]:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _objective_options(func):
    """--alpha, --beta, --noise, --loss, --threads, --scheduler, --local-workers: the settings that
    define F and where it trains, built into ``F``.

    Goes below ``_common_options``, whose corpus, backend, seed and dtype it uses; the command
    receives the objective as ``F`` (and keeps ``seed`` and ``quiet``).
    """

    @click.option("--alpha", type=click.IntRange(min=1), default=100, show_default=True,
                  help="Training updates per run.")
    @click.option("--beta", type=click.IntRange(min=1), default=1, show_default=True, help="Runs averaged per corner.")
    @click.option("--noise", type=click.Choice(NOISE_KINDS), default="common", show_default=True,
                  help="common: replica r uses seed+r everywhere; fresh: new seeds every evaluation (the paper's).")
    @click.option("--loss", "loss_kind", type=click.Choice(LOSS_KINDS), default="smooth", show_default=True)
    @click.option("--threads", type=click.IntRange(min=1), default=None, help="Worker threads [default: all cores].")
    @_executor_options
    @functools.wraps(func)
    def wrapper(*args, alpha, beta, noise, loss_kind, threads, corpus, backend, dtype, executor, **kwargs):
        try:
            F = Objective(corpus, alpha, beta, noise=noise, seed=kwargs["seed"], threads=threads, backend=backend,
                          loss=loss_kind, dtype=dtype, executor=executor)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        return func(*args, F=F, **kwargs)

    return wrapper


def _finite_float(ctx, param, value):
    if value is not None and not math.isfinite(value):
        raise click.BadParameter("must be a finite number")
    return value


@cli.command("objective")
@click.argument("hidden", type=float, callback=_finite_float)
@click.argument("seq_length", metavar="SEQ", type=float, callback=_finite_float)
@click.argument("learning_rate", metavar="LR", type=float, callback=_finite_float)
@click.option("--json", "as_json", is_flag=True, help="Print the value with settings and counters as JSON.")
@_common_options
@_objective_options
def objective_command(hidden, seq_length, learning_rate, as_json, F, seed, quiet):
    """Print the continuous objective F(HIDDEN, SEQ, LR) (floats allowed for HIDDEN and SEQ)."""
    try:
        value = F((hidden, seq_length, learning_rate))
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="SEQ") from None
    if as_json:
        _emit_json(dict(point=[hidden, seq_length, learning_rate], value=value, **F.settings(),
                        counters=F.counters.as_dict(), executor=F.executor.describe()))
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


def _point_option(ctx, param, value):
    if value is None:
        return None
    try:
        point = [float(v) for v in value.split(",")]
    except ValueError:
        point = []
    if len(point) != 3 or not all(math.isfinite(v) for v in point):
        raise click.BadParameter("give three finite numbers H,S,L, for example 100,25,0.1")
    return point


def _optimizer_options(func):
    """One flag per optimizer option in :data:`fastrnn.optimize.METHOD_TABLE` (``--grad-step`` for
    grad_step, ...), collected into ``options``: only the flags given, so each method's own
    defaults apply and a run file records what the user chose."""
    by_name: dict[str, list] = {}
    for method, entry in METHOD_TABLE.items():
        for name, option in entry.options.items():
            if option.rule != "any":  # e.g. bounds: a library option, not a flag
                by_name.setdefault(name, []).append((method, option))
    names = sorted(by_name)
    for name in reversed(names):
        uses = by_name[name]
        option = uses[0][1]
        defaults = {}
        for method, use in uses:
            defaults.setdefault(use.default, []).append(method)
        default_text = ("; ".join(f"{'/'.join(methods)} {default}" for default, methods in defaults.items())
                        if len(defaults) > 1 else str(option.default))
        methods_text = ", ".join(method for method, _ in uses)
        func = click.option(f"--{name.replace('_', '-')}", name, type=_OPTION_TYPES[option.rule](option), default=None,
                            help=f"{methods_text}: {option.help} [{default_text}].")(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        options = {name: kwargs.pop(name) for name in names}
        return func(*args, options={k: v for k, v in options.items() if v is not None}, **kwargs)

    return wrapper


_OPTION_TYPES = {
    "positive": lambda option: click.FloatRange(min=0, min_open=True),
    "positive_or_none": lambda option: click.FloatRange(min=0, min_open=True),
    "open_unit": lambda option: click.FloatRange(0, 1, min_open=True, max_open=True),
    "int_min1": lambda option: click.IntRange(min=1),
    "choice": lambda option: click.Choice(option.choices),
}


@cli.command("tune")
@click.option("--method", type=click.Choice(METHODS), default="gd", show_default=True, help="Optimizer.")
@click.option("--steps", "max_steps", type=click.IntRange(min=0), default=10000, show_default=True,
              help="Maximum optimizer steps.")
@click.option("--gtol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Stop when the gradient norm is below this.")
@click.option("--record-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="Write a record every N steps.")
@click.option("--x0", callback=_point_option, default=None, metavar="H,S,L",
              help="Initial point [default: uniform in [0, 10]^3 from --seed, as the paper].")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the run to this JSON Lines file.")
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="Continue the run in this file (appends to it).")
@_optimizer_options
@_common_options
@_objective_options
def tune_command(method, options, max_steps, gtol, record_every, x0, out, resume, F, seed, quiet):
    """Minimise F(h, s, l) and print the final point [h, s, l] (the run goes to --out as JSON Lines)."""
    if resume is not None and out is not None and os.path.abspath(out) != os.path.abspath(resume):
        raise click.BadParameter("--resume continues its own file; drop --out or give the same path", param_hint="--out")
    best = [math.inf]
    with progress_bar(total=max_steps, quiet=quiet, desc=f"tune {method}", unit="step") as bar:
        def on_step(record):
            best[0] = min(best[0], record["fun"])
            bar.update(record["step"] - bar.n)
            bar.set_postfix_str(f"x={_paper_form(record['x'])} F={record['fun']:.4f} best={best[0]:.4f}")

        try:
            result = tune(F, method, x0=x0, seed=seed, max_steps=max_steps, record_every=record_every, gtol=gtol,
                          out=resume or out, resume=resume is not None, on_step=on_step, **options)
        except RunFileError as exc:
            raise click.BadParameter(str(exc), param_hint="--resume") from None
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        except KeyboardInterrupt:
            where = resume or out
            hint = f"; continue with --resume {where}" if where else ""
            click.echo(f"Error: interrupted{hint}", err=True)
            sys.exit(130)
    click.echo(_paper_form(result.x))
    if not quiet:
        click.echo(f"{result.message} after {result.nit} steps; F = {result.fun:.6g}; {result.nfev} evaluations; "
                   f"{F.counters.trainings_run} trainings, {F.counters.memo_share:.0%} served by the memo", err=True)


def _paper_form(x) -> str:
    """A point as the paper prints it: [h, s, l] rounded to 4 digits."""
    return "[" + ", ".join(f"{round(float(v), 4):.4f}" for v in x) + "]"


@cli.command("gradient")
@click.argument("hidden", type=float, callback=_finite_float)
@click.argument("seq_length", metavar="SEQ", type=float, callback=_finite_float)
@click.argument("learning_rate", metavar="LR", type=float, callback=_finite_float)
@click.option("--step", "grad_step", type=click.FloatRange(min=0, min_open=True), default=1e-8, show_default=True,
              help="Finite-difference step.")
@click.option("--method", "grad_method", type=click.Choice(GRADIENT_METHODS), default="forward", show_default=True)
@_common_options
@_objective_options
def gradient_command(hidden, seq_length, learning_rate, grad_step, grad_method, F, seed, quiet):
    """The paper's intensive gradient of F at (HIDDEN, SEQ, LR), as JSON (also x 1e-8, the paper's units)."""
    point = (hidden, seq_length, learning_rate)
    g = gradient(F, point, h=grad_step, method=grad_method)
    magnitude = float(np.linalg.norm(g))
    _emit_json(dict(point=list(point), gradient=g.tolist(), magnitude=magnitude,
                    gradient_paper_units=(g * 1e-8).tolist(), magnitude_paper_units=magnitude * 1e-8,
                    step=grad_step, method=grad_method, **F.settings(), counters=F.counters.as_dict(),
                    executor=F.executor.describe()))


@cli.command("plot")
@click.argument("run_files", metavar="RUN.jsonl...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
@click.option("--title", default="", help="Figure title.")
def plot_command(run_files, out, title):
    """Plot hyperparameters over time (the paper's Fig 2/3E/4E) from one or more run files."""
    from fastrnn.plots import plot_runs

    try:
        runs = [read_run(path) for path in run_files]
    except RunFileError as exc:
        raise click.BadParameter(str(exc), param_hint="RUN.jsonl") from None
    if any(not run.records for run in runs):
        raise click.BadParameter("a run file has no records yet", param_hint="RUN.jsonl")
    labels = [run.label for run in runs]
    try:
        plot_runs(runs, labels, out, title)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {out!r}: {exc.strerror or exc}", param_hint="--out") from None
    click.echo(out)


@cli.command("reproduce")
@click.option("--trial", "trial_spec", default="all", show_default=True, help="Trial number 1-9, a list (1,4,6) or all.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="reproduction", show_default=True,
              help="Folder for run files, figures, summary.json and report.md.")
@click.option("--noise", type=click.Choice(NOISE_KINDS), default="common", show_default=True,
              help="common random numbers (default) or the paper's fresh initialisations.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Worker threads [default: all cores].")
@click.option("--scale", type=click.FloatRange(min=0, min_open=True, max=1), default=1.0, show_default=True,
              help="Fraction of each trial's optimizer steps (1 = full scale; smaller for a quick look).")
@click.option("--intensive/--no-intensive", default=True, show_default=True,
              help="Compute the intensive gradient (alpha 100, beta 100) at each final point.")
@_common_options
@_executor_options
def reproduce_command(trial_spec, out_dir, noise, threads, scale, intensive, corpus, backend, seed, dtype, quiet,
                      executor):
    """Run the paper's trials and write a Markdown report beside its published numbers."""
    from fastrnn import reproduce

    try:
        numbers = reproduce.trial_numbers(trial_spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--trial") from None
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"cannot create {out_dir!r}: {exc.strerror or exc}", param_hint="--out") from None
    command = ("fastrnn reproduce " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["reproduce"]
               else f"fastrnn reproduce --trial {trial_spec}")
    bars = {}

    def progress(label, record):
        if label not in bars:
            for bar in bars.values():
                bar.close()
            bars[label] = progress_bar(total=None, quiet=quiet, desc=label, unit="step")
        bar = bars[label]
        bar.update(record["step"] - bar.n)
        bar.set_postfix_str(f"x={_paper_form(record['x'])} F={record['fun']:.4f}")

    def on_trial(summary):
        if not quiet:
            finals = "; ".join(_paper_form(run["final"]) for run in summary["runs"])
            click.echo(f"trial {summary['number']}: {finals}", err=True)

    try:
        report = reproduce.reproduce(numbers, corpus, out_dir, command=command, noise=noise, seed=seed,
                                     threads=threads or default_threads(), backend=backend.name, dtype=dtype,
                                     scale=scale, intensive=intensive, progress=progress, on_trial=on_trial,
                                     executor=executor)
    finally:
        for bar in bars.values():
            bar.close()
    click.echo(report)


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
@click.option("--dtypes", "dtype_names", default=",".join(DTYPES), show_default=True,
              help="Comma-separated precisions to compare (numpy trains in float64 only).")
@click.option("--beta", type=click.IntRange(min=1), default=4, show_default=True,
              help="Replicas in the threads comparison.")
@click.option("--alpha", type=click.IntRange(min=1), default=100, show_default=True,
              help="Training steps per replica in the threads comparison.")
@click.option("--executor", "executor_name", type=click.Choice(["threads", "dask"]), default="threads", show_default=True,
              help="dask: compare a LocalCluster of --workers single-threaded processes with --workers threads "
                   "(beta 8 unless --beta is given) instead of the backends.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Dask workers and threads in the executor comparison.")
def bench_command(corpus_path, backend_names, rounds, dtype_names, beta, alpha, executor_name, workers):
    """Print Markdown tables: training steps/s per backend and config, and 2-thread speed-up."""
    from fastrnn import bench

    if executor_name == "dask":
        _bench_dask(corpus_path, rounds, 8 if _is_default("beta") else beta, alpha, workers)
        return

    names = [name.strip() for name in backend_names.split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKEND_NAMES]
    if unknown:
        raise click.BadParameter(f"unknown backend {unknown[0]!r}; valid: {', '.join(BACKEND_NAMES)}",
                                 param_hint="--backends")
    dtypes = [name.strip() for name in dtype_names.split(",") if name.strip()]
    if not dtypes or any(d not in DTYPES for d in dtypes):
        raise click.BadParameter(f"valid: {', '.join(DTYPES)}", param_hint="--dtypes")
    try:
        corpus = load_corpus(corpus_path)
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="--corpus") from None
    click.echo(f"corpus: {corpus.name} ({len(corpus):,} characters, V={corpus.vocab_size}); "
               f"training steps, single thread, medians of {rounds} interleaved rounds\n")
    click.echo(bench.markdown_table(bench.step_rates(corpus, names, rounds=rounds, dtypes=dtypes)))
    click.echo(f"\nOne evaluation of F (beta runs of {alpha} steps at one corner, float64, fresh memo):\n")
    click.echo("| backend | H | S | beta | 1 thread (s) | 2 threads (s) | speed-up |\n|---|---:|---:|---:|---:|---:|---:|")
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


def _is_default(param: str) -> bool:
    return click.get_current_context().get_parameter_source(param) == click.core.ParameterSource.DEFAULT


def _bench_dask(corpus_path, rounds, beta, alpha, workers):
    """``fastrnn bench --executor dask``: the tables in docs/SCALING.md."""
    from fastrnn import bench
    from fastrnn.executors import ThreadExecutor, dask_executor_class

    try:
        corpus = load_corpus(corpus_path)
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="--corpus") from None
    try:
        DaskExecutor = dask_executor_class()
    except ExecutorError as exc:
        raise ExecutorFailed(str(exc)) from None
    _silence_distributed()
    executor = DaskExecutor.local(workers)
    try:
        click.echo(f"corpus: {corpus.name} ({len(corpus):,} characters, V={corpus.vocab_size}); one evaluation of F = "
                   f"beta runs of {alpha} steps at one corner, float64, fresh memo; medians of {rounds} interleaved "
                   "rounds\n")
        rows = bench.executor_comparison(corpus, executor, threads=workers, beta=beta, alpha=alpha, rounds=rounds)
        click.echo(bench.dask_markdown(rows, bench.dask_task_overhead(corpus, executor, rounds=rounds), workers))
        click.echo(f"\nA gradient-descent step (forward differences, alpha {alpha}, beta {beta}, from (24.3, 6.6, 0.1)):\n")
        click.echo("| executor | s/step | in training batches (s) | outside (s) | serial share | trainings/step |\n"
                   "|---|---:|---:|---:|---:|---:|")
        for name, chosen in ((f"threads ({workers})", ThreadExecutor(workers)), (f"dask ({workers} workers)", executor)):
            profile = bench.tuning_step_profile(corpus, chosen, beta=beta, alpha=alpha)
            click.echo(f"| {name} | {profile['step']:.4f} | {profile['batch']:.4f} | {profile['serial']:.5f} | "
                       f"{profile['serial_share']:.2%} | {profile['runs_per_step']:.0f} |")
    except ExecutorError as exc:
        raise ExecutorFailed(str(exc)) from None
    finally:
        executor.close()


def main():
    cli(prog_name="fastrnn")


if __name__ == "__main__":
    main()
