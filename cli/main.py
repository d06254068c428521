"""The ``fastrnn`` command line: a thin layer of click over the library.

Bad input exits with status 2 and one line on stderr (``Error: ...``), never a traceback.
Progress goes to stderr, only on a terminal and without ``--quiet``; results go to stdout.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import sys
import time

import click
import numpy as np
from click.core import ParameterSource

from fastrnn.backends import (
    BACKEND_NAMES,
    DEFAULT_BACKEND,
    BackendUnavailable,
    backend_report,
    check_backend_dtype,
    default_threads,
    get_backend,
)
from fastrnn.calculus import GRADIENT_METHODS, HESSIAN_METHODS, gradient, step_lost_in_rounding
from fastrnn.checkpoint import CheckpointError, load_model, save_model
from fastrnn.corpus import DEFAULT_CORPUS_DESCRIPTION, SHIPPED_TEXTS, CorpusError, default_corpus, load_corpus, shipped_text
from fastrnn.memory import MemoryLimitError
from fastrnn.model import DTYPES, STATUS_DIVERGED
from fastrnn.objective import DEFAULT_DIVERGED_VALUE, LOSS_KINDS, NOISE_KINDS, Objective
from fastrnn.optimize import METHODS, default_options
from fastrnn.sampling import sample
from fastrnn.training import PROGRESS_CHUNK, new_state, train
from fastrnn.tuning import RunFileError, read_run, run_is_finished, tune

from .progress import progress_bar


class OneLineErrors(click.Group):
    """Report usage errors as one line (``Error: ...``) with exit status 2, no usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            # click spreads some messages (a Choice's options) over lines; an error is one line.
            message = " ".join(line.strip() for line in exc.format_message().splitlines() if line.strip())
            if isinstance(exc, click.NoSuchOption) and _is_number(exc.option_name):
                message = (message.rstrip(".") + "; to pass a negative number, put -- before the arguments "
                           "(fastrnn objective -- -5 12 0.1)")
            click.echo(f"Error: {message}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Error: aborted", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
        if corpus_path is None and kwargs.get("resume") is not None:
            kwargs["corpus"] = None  # `tune --resume` reads the run's own corpus from its file
            return func(*args, **kwargs)
        try:
            kwargs["corpus"] = load_corpus(corpus_path)
        except CorpusError as exc:
            raise click.BadParameter(str(exc), param_hint="--corpus") from None
        return func(*args, **kwargs)

    return wrapper


def _json_safe(value):
    """``value`` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _emit_json(record: dict) -> None:
    click.echo(json.dumps(_json_safe(record), allow_nan=False))


def _finite_float(ctx, param, value):
    # click's FloatRange lets nan (every comparison is false) and inf (min bounds) through.
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value


@cli.command("train")
@click.option("--hidden", type=click.IntRange(min=1), default=100, show_default=True, help="Hidden layer size h.")
@click.option("--seq", "seq_length", type=click.IntRange(min=1), default=25, show_default=True,
              help="Sequence length s (characters of BPTT).")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              callback=_finite_float, help="Adagrad learning rate l.")
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
    try:
        state = new_state(corpus, hidden, seq_length, learning_rate, seed, dtype)
    except MemoryLimitError as exc:
        raise click.BadParameter(str(exc), param_hint="--hidden") from None
    last_chunk = [None]  # a copy taken between kernel calls, so always a consistent state
    with progress_bar(total=steps, quiet=quiet, desc="training", unit="step") as bar:
        def report(state):
            bar.update(state.steps - bar.n)
            bar.set_postfix(smooth_loss=f"{state.smooth_loss:.4f}")
            if save_path is not None:
                last_chunk[0] = copy.deepcopy(state)

        try:
            state = train(corpus, steps=steps, backend=backend, progress=report, state=state)
        except KeyboardInterrupt:
            _interrupted_training(last_chunk[0], save_path, corpus)
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


def _interrupted_training(state, save_path, corpus):
    """Ctrl-C in `train`: save the model as it was after the last whole chunk when --save was given."""
    if save_path is None:
        click.echo("Error: interrupted", err=True)
    elif state is None:
        click.echo(f"Error: interrupted before the first {PROGRESS_CHUNK} updates; nothing saved to {save_path}", err=True)
    else:
        try:
            save_model(save_path, state, corpus.vocab, corpus.name)
        except CheckpointError as exc:
            click.echo(f"Error: interrupted, and the partial model could not be saved: {exc}", err=True)
        else:
            click.echo(f"Error: interrupted; the model after {state.steps} updates is saved to {save_path}", err=True)
    sys.exit(130)


def _objective_options(func):
    """--alpha, --beta, --noise, --loss, --threads: the settings that define F."""
    for decorator in reversed([
        click.option("--alpha", type=click.IntRange(min=1), default=100, show_default=True,
                     help="Training updates per run."),
        click.option("--beta", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Runs averaged per corner."),
        click.option("--noise", type=click.Choice(NOISE_KINDS), default="common", show_default=True,
                     help="common: replica r uses seed+r everywhere; fresh: new seeds every evaluation (the paper's)."),
        click.option("--loss", "loss_kind", type=click.Choice(LOSS_KINDS), default="smooth", show_default=True),
        click.option("--threads", type=click.IntRange(min=1), default=None, help="Worker threads [default: all cores]."),
    ]):
        func = decorator(func)
    return func


@cli.command("objective")
@click.argument("hidden", type=float, callback=_finite_float)
@click.argument("seq_length", metavar="SEQ", type=float, callback=_finite_float)
@click.argument("learning_rate", metavar="LR", type=float, callback=_finite_float)
@_objective_options
@click.option("--json", "as_json", is_flag=True, help="Print the value with settings and counters as JSON.")
@_common_options
def objective_command(hidden, seq_length, learning_rate, alpha, beta, noise, loss_kind, threads, as_json,
                      corpus, backend, seed, dtype, quiet):
    """Print the continuous objective F(HIDDEN, SEQ, LR) (floats allowed for HIDDEN and SEQ)."""
    F = Objective(corpus, alpha, beta, noise=noise, seed=seed, threads=threads or default_threads(),
                  backend=backend, loss=loss_kind, dtype=dtype)
    try:
        value = F((hidden, seq_length, learning_rate))
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="SEQ") from None
    except MemoryLimitError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        _emit_json(dict(point=[hidden, seq_length, learning_rate], value=value, **F.settings(),
                        counters=F.counters.as_dict()))
    else:
        click.echo(repr(value))


@cli.command("sample")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--chars", "n_chars", type=click.IntRange(min=0), default=2000, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              callback=_finite_float)
@click.option("--prime", default="", help="Text the network reads before sampling (not repeated in the output).")
@click.option("--from-zero", is_flag=True,
              help="Start from a zero hidden state (reading a newline unless --prime is given) instead of the "
                   "state training ended in.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed [default: fresh].")
def sample_command(model_path, n_chars, temperature, prime, from_zero, seed):
    """Print characters sampled from a model saved by `fastrnn train --save`.

    Sampling continues from the hidden state training ended in, as min-char-rnn does;
    --prime reads text from there first; --from-zero starts from a zero state instead.
    """
    try:
        model = load_model(model_path)
    except CheckpointError as exc:
        raise click.BadParameter(str(exc), param_hint="MODEL") from None
    if not np.isfinite(model.state.params).all():
        raise click.BadParameter(f"{model_path!r} holds non-finite weights (its training diverged); "
                                 "train it again with a smaller --lr", param_hint="MODEL")
    try:
        text = sample(model.state.weights, model.vocab, n_chars, temperature=temperature, prime=prime, seed=seed,
                      hprev=None if from_zero else model.state.hprev)
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


@cli.command("tune")
@click.option("--method", type=click.Choice(METHODS), default="gd", show_default=True, help="Optimizer.")
@click.option("--step", type=click.FloatRange(min=0, min_open=True), default=None, callback=_finite_float,
              help="gd: length of each normalised gradient step [0.1].")
@click.option("--multiplier", type=click.FloatRange(min=0, min_open=True), default=None, callback=_finite_float,
              help="newton: factor on the Newton step [1; the paper's trial 7: 1000].")
@click.option("--fallback-step", type=click.FloatRange(min=0, min_open=True), default=None, callback=_finite_float,
              help="newton, bfgs, dfp: gradient-descent fallback step [newton 10, bfgs/dfp 1].")
@click.option("--c", "armijo_c", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None, callback=_finite_float,
              help="bfgs, dfp: Armijo control [0.99].")
@click.option("--tau", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None, callback=_finite_float,
              help="bfgs, dfp: backtracking factor [0.5].")
@click.option("--grad-step", type=click.FloatRange(min=0, min_open=True), default=None, callback=_finite_float,
              help="Finite-difference step of the gradient [1e-8].")
@click.option("--grad-method", type=click.Choice(GRADIENT_METHODS), default=None, help="[forward]")
@click.option("--hessian-method", type=click.Choice(HESSIAN_METHODS), default=None, help="newton: [recursive]")
@click.option("--steps", "max_steps", type=click.IntRange(min=0), default=10000, show_default=True,
              help="Maximum optimizer steps.")
@click.option("--gtol", type=click.FloatRange(min=0), default=1e-4, show_default=True, callback=_finite_float,
              help="Stop when the gradient norm is below this.")
@click.option("--record-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="Write a record every N steps.")
@click.option("--x0", callback=_point_option, default=None, metavar="H,S,L",
              help="Initial point [default: uniform in [0, 10]^3 from --seed, as the paper].")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the run to this JSON Lines file (a new one, unless --force).")
@click.option("--force", is_flag=True, help="Let --out overwrite an existing file.")
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="Continue the run in this file with the settings stored in it (--steps and --record-every "
                   "may change; other options given must match it).")
@_objective_options
@_common_options
def tune_command(method, step, multiplier, fallback_step, armijo_c, tau, grad_step, grad_method, hessian_method,
                 max_steps, gtol, record_every, x0, out, force, resume, alpha, beta, noise, loss_kind, threads,
                 corpus, backend, seed, dtype, quiet):
    """Minimise F(h, s, l) and print the final point [h, s, l] (the run goes to --out as JSON Lines)."""
    given = dict(step=step, multiplier=multiplier, fallback_step=fallback_step, c=armijo_c, tau=tau,
                 grad_step=grad_step, grad_method=grad_method, hessian_method=hessian_method)
    options = {name: value for name, value in given.items() if value is not None}
    if resume is not None and out is not None and os.path.abspath(out) != os.path.abspath(resume):
        raise click.BadParameter("--resume continues its own file; drop --out or give the same path", param_hint="--out")
    if resume is not None and force:
        raise click.BadParameter("--resume continues a run and never overwrites it; drop --force", param_hint="--force")
    diverged_value = DEFAULT_DIVERGED_VALUE
    if resume is not None:
        run = _read_run_option(resume)
        settings = _resume_settings(run, resume, dict(
            method=method, options=options, max_steps=max_steps, gtol=gtol, record_every=record_every, x0=x0, alpha=alpha,
            beta=beta, noise=noise, loss_kind=loss_kind, corpus=corpus, backend=backend, seed=seed, dtype=dtype))
        method, options, max_steps, gtol, record_every, x0, alpha, beta, noise, loss_kind, corpus, backend, seed, dtype = (
            settings[k] for k in ("method", "options", "max_steps", "gtol", "record_every", "x0", "alpha", "beta", "noise",
                                  "loss_kind", "corpus", "backend", "seed", "dtype"))
        diverged_value = run.settings["objective"].get("diverged_value", DEFAULT_DIVERGED_VALUE)
        if run_is_finished(run, max_steps):
            result = run.result
            click.echo(_paper_form(result["x"]))
            click.echo(f"{resume} is finished: {result['message']} after {result['nit']} steps; F = {result['fun']:.6g} "
                       f"(continue a run that reached its step limit with a larger --steps)", err=True)
            return
    F = Objective(corpus, alpha, beta, noise=noise, seed=seed, threads=threads or default_threads(),
                  backend=backend, loss=loss_kind, dtype=dtype, diverged_value=diverged_value)
    best = [math.inf]
    with progress_bar(total=max_steps, quiet=quiet, desc=f"tune {method}", unit="step") as bar:
        def on_step(record):
            best[0] = min(best[0], record["fun"])
            bar.update(record["step"] - bar.n)
            bar.set_postfix_str(f"x={_paper_form(record['x'])} F={record['fun']:.4f} best={best[0]:.4f}")

        try:
            result = tune(F, method, x0=x0, seed=seed, max_steps=max_steps, record_every=record_every, gtol=gtol,
                          out=resume or out, resume=resume is not None, overwrite=force, on_step=on_step, **options)
        except RunFileError as exc:
            raise click.BadParameter(str(exc), param_hint="--resume" if resume else "--out") from None
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


def _read_run_option(path: str):
    try:
        return read_run(path)
    except RunFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--resume") from None


# (parameter, flag, key in the run file's settings or its "objective" settings) of what a resumed run keeps.
_RUN_SETTINGS = (
    ("method", "--method", "method"), ("gtol", "--gtol", "gtol"), ("x0", "--x0", "x0"), ("seed", "--seed", "seed"),
)
_OBJECTIVE_SETTINGS = (
    ("alpha", "--alpha", "alpha"), ("beta", "--beta", "beta"), ("noise", "--noise", "noise"),
    ("loss_kind", "--loss", "loss"), ("dtype", "--dtype", "dtype"), ("backend", "--backend", "backend"),
)
_OPTION_FLAGS = dict(step="--step", multiplier="--multiplier", fallback_step="--fallback-step", c="--c", tau="--tau",
                     grad_step="--grad-step", grad_method="--grad-method", hessian_method="--hessian-method")


def _resume_settings(run, path: str, values: dict) -> dict:
    """The settings stored in ``run``; each option given on the command line must agree with them
    (--steps and --record-every may change), else a one-line error naming both values."""
    ctx = click.get_current_context()

    def explicit(name):
        return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)

    def conflict(flag, given, stored):
        raise click.BadParameter(f"{given} conflicts with {stored} stored in {path}; drop {flag} to continue the run "
                                 "with its own settings, or start a new run with --out", param_hint=flag)

    saved, objective = run.settings, run.settings["objective"]
    resolved = dict(values)
    for name, flag, key in _RUN_SETTINGS:
        if explicit(name) and values[name] != saved[key]:
            conflict(flag, values[name], saved[key])
        resolved[name] = saved[key]
    method = saved["method"]
    defaults = default_options(method)
    for key, value in values["options"].items():
        flag = _OPTION_FLAGS[key]
        if key not in defaults:
            raise click.BadParameter(f"does not apply to the {method} run stored in {path}", param_hint=flag)
        stored = saved["options"].get(key, defaults[key])
        if value != stored:
            conflict(flag, value, stored)
    resolved["options"] = saved["options"]
    for name in ("max_steps", "record_every"):
        resolved[name] = values[name] if explicit(name) else saved[name]
    for name, flag, key in _OBJECTIVE_SETTINGS:
        given = values[name].name if name == "backend" else values[name]
        if explicit(name) and given != objective.get(key):
            conflict(flag, given, objective.get(key))
        resolved[name] = objective.get(key)
    try:
        resolved["backend"] = get_backend(resolved["backend"])
        check_backend_dtype(resolved["backend"], resolved["dtype"])
    except (ValueError, BackendUnavailable) as exc:
        raise click.BadParameter(f"the run in {path} trains with it: {exc}", param_hint="--backend") from None
    corpus = values["corpus"]
    if corpus is None:
        name = objective.get("corpus")
        try:
            corpus = load_corpus(None if name == "default" else name)
        except (CorpusError, TypeError) as exc:
            raise click.BadParameter(f"the run's corpus {name!r} cannot be read ({exc}); pass it with --corpus",
                                     param_hint="--corpus") from None
        if corpus.fingerprint != objective.get("corpus_fingerprint"):
            raise click.BadParameter(f"{name!r} is not the text the run in {path} was started on (its SHA-256 differs); "
                                     "pass that text with --corpus", param_hint="--corpus")
    elif corpus.fingerprint != objective.get("corpus_fingerprint"):
        conflict("--corpus", f"{corpus.name} (SHA-256 {corpus.fingerprint[:12]})",
                 f"{objective.get('corpus')} (SHA-256 {str(objective.get('corpus_fingerprint'))[:12]})")
    resolved["corpus"] = corpus
    return resolved


def _paper_form(x) -> str:
    """A point as [h, s, l] with 6 significant digits (a learning rate of 2.9e-7 stays 2.9e-07)."""
    return "[" + ", ".join(f"{float(v):.6g}" for v in x) + "]"


@cli.command("gradient")
@click.argument("hidden", type=float, callback=_finite_float)
@click.argument("seq_length", metavar="SEQ", type=float, callback=_finite_float)
@click.argument("learning_rate", metavar="LR", type=float, callback=_finite_float)
@click.option("--step", "grad_step", type=click.FloatRange(min=0, min_open=True), default=1e-8, show_default=True,
              callback=_finite_float,
              help="Finite-difference step.")
@click.option("--method", "grad_method", type=click.Choice(GRADIENT_METHODS), default="forward", show_default=True)
@_objective_options
@_common_options
def gradient_command(hidden, seq_length, learning_rate, grad_step, grad_method, alpha, beta, noise, loss_kind,
                     threads, corpus, backend, seed, dtype, quiet):
    """The paper's intensive gradient of F at (HIDDEN, SEQ, LR), as JSON (also x 1e-8, the paper's units)."""
    F = Objective(corpus, alpha, beta, noise=noise, seed=seed, threads=threads or default_threads(),
                  backend=backend, loss=loss_kind, dtype=dtype)
    point = (hidden, seq_length, learning_rate)
    if step_lost_in_rounding(point, grad_step):
        raise click.BadParameter(f"{grad_step:g} is lost in rounding at {_paper_form(point)} (x + h == x), so every "
                                 "difference along that axis would be 0; use a larger --step", param_hint="--step")
    try:
        g = gradient(F, point, h=grad_step, method=grad_method)
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="SEQ") from None
    except MemoryLimitError as exc:
        raise click.UsageError(str(exc)) from None
    magnitude = float(np.linalg.norm(g))
    _emit_json(dict(point=list(point), gradient=g.tolist(), magnitude=magnitude,
                    gradient_paper_units=(g * 1e-8).tolist(), magnitude_paper_units=magnitude * 1e-8,
                    step=grad_step, method=grad_method, **F.settings(), counters=F.counters.as_dict()))


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
    labels = [_run_label(run) for run in runs]
    if not os.path.splitext(out)[1]:
        out += ".png"  # what matplotlib would write; the path printed must be the file's
    try:
        plot_runs(runs, labels, out, title)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {out!r}: {exc.strerror or exc}", param_hint="--out") from None
    except ValueError as exc:  # matplotlib: an extension it cannot write
        raise click.BadParameter(f"cannot write {out!r}: {exc}; use a .png name", param_hint="--out") from None
    click.echo(out)


def _run_label(run) -> str:
    settings = run.settings
    options = settings.get("options") or {}
    detail = ", ".join(f"{k}={v}" for k, v in options.items())
    return f"{settings['method']}" + (f" ({detail})" if detail else "")


@cli.command("reproduce")
@click.option("--trial", "trial_spec", default="all", show_default=True, help="Trial number 1-9, a list (1,4,6) or all.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="reproduction", show_default=True,
              help="Folder for run files, figures, summary.json and report.md.")
@click.option("--noise", type=click.Choice(NOISE_KINDS), default="common", show_default=True,
              help="common random numbers (default) or the paper's fresh initialisations.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Worker threads [default: all cores].")
@click.option("--scale", type=click.FloatRange(min=0, min_open=True, max=1), default=1.0, show_default=True,
              callback=_finite_float,
              help="Fraction of each trial's optimizer steps (1 = full scale; smaller for a quick look).")
@click.option("--intensive/--no-intensive", default=True, show_default=True,
              help="Compute the intensive gradient (alpha 100, beta 100) at each final point.")
@_common_options
def reproduce_command(trial_spec, out_dir, noise, threads, scale, intensive, corpus, backend, seed, dtype, quiet):
    """Run the paper's trials and write a Markdown report beside its published numbers."""
    from fastrnn import reproduce
    from fastrnn.plots import plot_runs

    try:
        numbers = reproduce.trial_numbers(trial_spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--trial") from None
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"cannot create {out_dir!r}: {exc.strerror or exc}", param_hint="--out") from None
    threads = threads or default_threads()
    settings = dict(command="fastrnn reproduce " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["reproduce"]
                    else f"fastrnn reproduce --trial {trial_spec}", corpus=corpus.name, corpus_chars=len(corpus),
                    vocab_size=corpus.vocab_size, noise=noise, backend=backend.name, dtype=dtype, threads=threads, scale=scale,
                    seed=seed, environment=reproduce.environment())
    summaries_path = os.path.join(out_dir, "summary.json")
    summaries = {}
    if os.path.exists(summaries_path):
        try:
            with open(summaries_path, encoding="utf-8") as f:
                summaries = {t["number"]: t for t in json.load(f).get("trials", [])}
        except (OSError, ValueError, AttributeError, TypeError, KeyError) as exc:
            raise click.BadParameter(f"{summaries_path!r} is not a summary this command wrote ({exc}); "
                                     "delete it or use another folder", param_hint="--out") from None
    bars = {}

    def progress(label, record):
        if label not in bars:
            for bar in bars.values():
                bar.close()
            bars[label] = progress_bar(total=None, quiet=quiet, desc=label, unit="step")
        bar = bars[label]
        bar.update(record["step"] - bar.n)
        bar.set_postfix_str(f"x={_paper_form(record['x'])} F={record['fun']:.4f}")

    try:
        for number in numbers:
            trial = reproduce.TRIALS[number]
            summary = reproduce.run_trial(trial, corpus, out_dir, noise=noise, seed=seed, threads=threads,
                                          backend=backend.name, dtype=dtype, scale=scale, progress=progress)
            if intensive:
                previous = summaries.get(number)
                if previous and [r["final"] for r in previous["runs"]] == [r["final"] for r in summary["runs"]]:
                    for run, old in zip(summary["runs"], previous["runs"]):
                        if "intensive" in old:
                            run["intensive"] = old["intensive"]
                reproduce.intensive_gradients(summary, corpus, noise=noise, seed=seed, threads=threads,
                                              backend=backend.name, dtype=dtype)
            runs = [read_run(os.path.join(out_dir, run["file"])) for run in summary["runs"]]
            plot_runs(runs, [_run_label(r) for r in runs], os.path.join(out_dir, f"trial{number}.png"),
                      title=f"Trial {number}: {trial.description}")
            summaries[number] = summary
            report = reproduce.write_report([summaries[k] for k in sorted(summaries)], settings, out_dir)
            if not quiet:
                finals = "; ".join(_paper_form(run["final"]) for run in summary["runs"])
                click.echo(f"trial {number}: {finals}", err=True)
    except RunFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    finally:
        for bar in bars.values():
            bar.close()
    click.echo(report)


@cli.command("corpus")
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
def bench_command(corpus_path, backend_names, rounds, dtype_names, beta, alpha):
    """Print Markdown tables: training steps/s per backend and config, and 2-thread speed-up."""
    from fastrnn import bench

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


def main():
    cli(prog_name="fastrnn")


if __name__ == "__main__":
    main()
