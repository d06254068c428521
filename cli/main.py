"""The ``fastrnn`` command line: a thin layer of click over the library.

Bad input exits with status 2 and one line on stderr (``Error: ...``), never a traceback.
Progress goes to stderr, only on a terminal and without ``--quiet``; results go to stdout.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import math
import os
import sys
import time

import click
import numpy as np
from click.core import ParameterSource

from fastrnn._validation import MAX_COUNT, MAX_SEED
from fastrnn.backends import (
    BACKEND_NAMES,
    COMPILED_BACKENDS,
    DEFAULT_BACKEND,
    BackendUnavailable,
    backend_report,
    check_backend_dtype,
    default_threads,
    get_backend,
)
from fastrnn.calculus import GRADIENT_METHODS, gradient, step_lost_in_rounding
from fastrnn.checkpoint import CheckpointError, load_model, save_model
from fastrnn.corpus import DEFAULT_CORPUS_DESCRIPTION, SHIPPED_TEXTS, CorpusError, default_corpus, load_corpus, shipped_text
from fastrnn.executors import ExecutorError
from fastrnn.heldout import DEFAULT_HELDOUT_CHARS, MIN_HELDOUT_CHARS
from fastrnn.memory import MemoryLimitError
from fastrnn.model import DTYPES, STATUS_DIVERGED
from fastrnn.objective import DEFAULT_TRAIN_CHARS, NOISE_KINDS, Objective
from fastrnn.optimize import METHOD_TABLE, METHODS, default_options
from fastrnn.sampling import sample
from fastrnn.settings import Evaluation, ObjectiveSettings
from fastrnn.space import SpaceView
from fastrnn.training import PROGRESS_CHUNK, new_state, train
from fastrnn.tuning import HELDOUT_SETTINGS, RunFileError, default_method, read_run, run_is_finished, tune

from .objective_options import build_settings, finite_float, resumed_settings, setting_flags
from .progress import RunBars, progress_bar


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
        except click.exceptions.Abort as exc:
            if isinstance(exc.__context__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
                click.echo("Error: interrupted", err=True)
                sys.exit(130)
            click.echo("Error: aborted", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        except OSError as exc:  # the system refused a read or write (a full disk, say): not a bug to trace
            where = f" ({exc.filename})" if exc.filename else ""
            click.echo(f"Error: {exc.strerror or exc}{where}", err=True)
            sys.exit(1)


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
    @click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Random seed.")
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


_finite_float = finite_float


@cli.command("train")
@click.option("--hidden", type=click.IntRange(1, MAX_COUNT), default=100, show_default=True, help="Hidden layer size h.")
@click.option("--seq", "seq_length", type=click.IntRange(1, MAX_COUNT), default=25, show_default=True,
              help="Sequence length s (characters of BPTT).")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              callback=_finite_float, help="Adagrad learning rate l.")
@click.option("--steps", type=click.IntRange(0, MAX_COUNT), default=10000, show_default=True, help="Training updates.")
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
    @click.option("--local-workers", type=click.IntRange(1, MAX_COUNT), default=None, metavar="N",
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


def _objective_flags(func):
    """The flags that define F (made from :mod:`fastrnn.settings`' fields), --threads and the
    executor's, collected into ``objective_args`` (with --corpus, --backend, --dtype and --seed):
    goes below ``_common_options``. ``_build_objective`` makes F."""

    @setting_flags
    @click.option("--threads", type=click.IntRange(1, MAX_COUNT), default=None, help="Worker threads [default: all cores].")
    @_executor_options
    @functools.wraps(func)
    def wrapper(*args, kind, settings_given, threads, corpus, backend, dtype, executor, **kwargs):
        objective_args = dict(kind=kind, given=settings_given, corpus=corpus, seed=kwargs["seed"], dtype=dtype,
                              evaluation=Evaluation(backend=backend, threads=threads, executor=executor))
        return func(*args, objective_args=objective_args, **kwargs)

    return wrapper


def _build_objective(args: dict, settings: ObjectiveSettings | None = None) -> Objective:
    """F from ``_objective_flags``' values (or from ``settings``, a resumed run's); bad
    combinations exit 2 naming the flag."""
    if settings is None:
        settings = build_settings(args["kind"], args["given"], args["corpus"], args["seed"], args["dtype"])
    try:
        return Objective(settings, evaluation=args["evaluation"])
    except CorpusError as exc:
        flag = "--heldout-fraction" if args["given"].get("heldout") is None else "--heldout"
        raise click.BadParameter(str(exc), param_hint=flag) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _objective_options(func):
    """``_objective_flags`` with F built: the command receives it as ``F`` (and keeps ``seed``, ``quiet``)."""

    @_objective_flags
    @functools.wraps(func)
    def wrapper(*args, objective_args, **kwargs):
        return func(*args, F=_build_objective(objective_args), **kwargs)

    return wrapper


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
    except MemoryLimitError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        # held-out values are nats per character; bits per character beside them
        bits = dict(bits_per_char=value / math.log(2.0)) if F.definition.values_in_nats else {}
        _emit_json(dict(point=[hidden, seq_length, learning_rate], value=value, **bits, **F.settings(),
                        backend=F.backend.name, counters=F.counters.as_dict(), executor=F.executor.describe()))
    else:
        click.echo(repr(value))


@cli.command("sample")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--chars", "n_chars", type=click.IntRange(0, MAX_COUNT), default=2000, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              callback=_finite_float)
@click.option("--prime", default="", help="Text the network reads before sampling (not repeated in the output).")
@click.option("--from-zero", is_flag=True,
              help="Start from a zero hidden state (reading a newline unless --prime is given) instead of the "
                   "state training ended in.")
@click.option("--seed", type=click.IntRange(0, MAX_COUNT), default=None, help="Random seed [default: fresh].")
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
        heldout = {}
        for method, _ in uses:
            if name in HELDOUT_SETTINGS.get(method, {}):
                heldout.setdefault(HELDOUT_SETTINGS[method][name], []).append(method)
        if heldout:  # the log space's own settings (fastrnn.tuning.HELDOUT_SETTINGS)
            default_text = (f"paper: {default_text}; heldout: "
                            + "; ".join(f"{'/'.join(methods)} {value}" for value, methods in heldout.items()))
        methods_text = ", ".join(method for method, _ in uses)
        finite = _finite_float if option.rule in ("positive", "positive_or_none", "open_unit") else None
        func = click.option(f"--{name.replace('_', '-')}", name, type=_OPTION_TYPES[option.rule](option), default=None,
                            callback=finite, help=f"{methods_text}: {option.help} [{default_text}].")(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        options = {name: kwargs.pop(name) for name in names}
        return func(*args, options={k: v for k, v in options.items() if v is not None}, **kwargs)

    return wrapper


class _PositiveOrAuto(click.ParamType):
    name = "FLOAT|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a finite positive number nor 'auto'", param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"{value!r} is neither a finite positive number nor 'auto'", param, ctx)
        return number


_OPTION_TYPES = {
    "positive_or_auto": lambda option: _PositiveOrAuto(),
    "positive": lambda option: click.FloatRange(min=0, min_open=True),
    "positive_or_none": lambda option: click.FloatRange(min=0, min_open=True),
    "open_unit": lambda option: click.FloatRange(0, 1, min_open=True, max_open=True),
    "int_min1": lambda option: click.IntRange(1, MAX_COUNT),
    "choice": lambda option: click.Choice(option.choices),
}


@cli.command("tune")
@click.option("--method", type=click.Choice(METHODS), default=None,
              help="Optimizer [heldout: tpe, or random without the optuna extra (the best two in "
                   "docs/COMPARISON.md); paper: gd].")
@click.option("--steps", "max_steps", type=click.IntRange(0, MAX_COUNT), default=10000, show_default=True,
              help="Maximum optimizer steps.")
@click.option("--gtol", type=click.FloatRange(min=0), default=1e-4, show_default=True, callback=_finite_float,
              help="Stop when the gradient norm is below this.")
@click.option("--record-every", type=click.IntRange(1, MAX_COUNT), default=100, show_default=True,
              help="Write a record every N steps.")
@click.option("--x0", callback=_point_option, default=None, metavar="H,S,L",
              help="Initial point [heldout: uniform in the sane box (in the search space) from --seed; "
                   "paper: uniform in [0, 10]^3, as the paper].")
@click.option("--budget-chars", type=click.IntRange(1, MAX_COUNT), default=None,
              help="Stop once the networks trained have read this many characters (memo hits are free).")
@click.option("--budget-trainings", type=click.IntRange(1, MAX_COUNT), default=None,
              help="Stop once this many networks have been trained.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the run to this JSON Lines file (a new one, unless --force).")
@click.option("--force", is_flag=True, help="Let --out overwrite an existing file.")
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="Continue the run in this file with the settings stored in it (--steps, --record-every and "
                   "the budgets may change; other options given must match it).")
@_optimizer_options
@_common_options
@_objective_flags
def tune_command(method, options, max_steps, gtol, record_every, x0, out, force, resume, budget_chars, budget_trainings,
                 objective_args, seed, quiet):
    """Minimise F(h, s, l) and print the final point [h, s, l] (the run goes to --out as JSON Lines)."""
    if resume is not None and out is not None and os.path.abspath(out) != os.path.abspath(resume):
        raise click.BadParameter("--resume continues its own file; drop --out or give the same path", param_hint="--out")
    if resume is not None and force:
        raise click.BadParameter("--resume continues a run and never overwrites it; drop --force", param_hint="--force")
    run = definition = None
    if resume is not None:
        run = _read_run_option(resume)  # read once: its settings here, its records in tune
        settings = _resume_settings(run, resume, dict(
            method=method, options=options, max_steps=max_steps, gtol=gtol, record_every=record_every, x0=x0, seed=seed,
            budget_chars=budget_chars, budget_trainings=budget_trainings))
        method, options, max_steps, gtol, record_every, x0, seed, budget_chars, budget_trainings = (
            settings[k] for k in ("method", "options", "max_steps", "gtol", "record_every", "x0", "seed", "budget_chars",
                                  "budget_trainings"))
        definition = resumed_settings(run, resume, objective_args["kind"], objective_args["given"],
                                      objective_args["corpus"], objective_args["seed"], objective_args["dtype"],
                                      _conflict(resume))
        objective_args["evaluation"] = _resumed_evaluation(run, resume, objective_args["evaluation"])
        if run_is_finished(run, max_steps, budget_chars, budget_trainings):
            result = run.result
            click.echo(_paper_form(result["x"]))
            click.echo(f"{resume} is finished: {result['message']} after {result['nit']} steps; F = {result['fun']:.6g} "
                       f"(continue a run that reached its step limit or budget with a larger --steps or --budget-*)",
                       err=True)
            return
    F = _build_objective(objective_args, definition)
    if method is None:
        method = default_method(F)
    if resume is None and F.space.name == "log":
        options = {**HELDOUT_SETTINGS.get(method, {}), **options}  # the paper's defaults are for its linear space
    best = [math.inf]
    with progress_bar(total=max_steps, quiet=quiet, desc=f"tune {method}", unit="step") as bar:
        def on_step(record):
            best[0] = min(best[0], record["fun"])
            bar.update(record["step"] - bar.n)
            bar.set_postfix_str(f"x={_paper_form(record['x'])} F={record['fun']:.4f} best={best[0]:.4f}")

        try:
            result = tune(F, method, x0=x0, seed=seed, max_steps=max_steps, record_every=record_every, gtol=gtol,
                          out=resume or out, resume=run or False, overwrite=force, on_step=on_step,
                          budget_chars=budget_chars, budget_trainings=budget_trainings, **options)
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
                   f"{F.counters.trainings_run} trainings ({F.counters.training_chars:,} characters), "
                   f"{F.counters.memo_share:.0%} served by the memo", err=True)


def _read_run_option(path: str):
    try:
        return read_run(path)
    except RunFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--resume") from None


# (parameter, flag, key in the run file's settings) of what a resumed run keeps.
_RUN_SETTINGS = (
    ("method", "--method", "method"), ("gtol", "--gtol", "gtol"), ("x0", "--x0", "x0"), ("seed", "--seed", "seed"),
)
#: What a resumed run may change: how long it runs, how often it records, what it may spend.
_RESUMABLE = (("max_steps", "--steps"), ("record_every", "--record-every"), ("budget_chars", "--budget-chars"),
              ("budget_trainings", "--budget-trainings"))


def _explicit(name: str) -> bool:
    return click.get_current_context().get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                                      ParameterSource.ENVIRONMENT)


def _conflict(path: str):
    def conflict(flag, given, stored):
        raise click.BadParameter(f"{given} conflicts with {stored} stored in {path}; drop {flag} to continue the run "
                                 "with its own settings, or start a new run with --out", param_hint=flag)

    return conflict


def _resume_settings(run, path: str, values: dict) -> dict:
    """The run's settings stored in ``run`` (its objective's: cli.objective_options); each option
    given on the command line must agree with them (--steps, --record-every and the budgets may
    change), else a one-line error naming both values."""
    conflict = _conflict(path)
    saved = run.settings
    resolved = dict(values)
    for name, flag, key in _RUN_SETTINGS:
        if _explicit(name) and values[name] != saved[key]:
            conflict(flag, values[name], saved[key])
        resolved[name] = saved[key]
    method = saved["method"]
    defaults = default_options(method)
    for key, value in values["options"].items():
        flag = f"--{key.replace('_', '-')}"
        if key not in defaults:
            raise click.BadParameter(f"does not apply to the {method} run stored in {path}", param_hint=flag)
        stored = saved["options"].get(key, defaults[key])
        if value != stored:
            conflict(flag, value, stored)
    resolved["options"] = saved["options"]
    for name, _flag in _RESUMABLE:
        resolved[name] = values[name] if _explicit(name) else saved.get(name)
    return resolved


def _resumed_evaluation(run, path: str, given: Evaluation) -> Evaluation:
    """How the resumed run computes F: --threads and the executor as given; the backend the run
    file names (format 1: in its objective), unless --backend is given (not part of F)."""
    stored = run.settings.get("evaluation", run.settings["objective"]).get("backend")
    if _explicit("backend") or stored is None:
        return given
    try:
        backend = get_backend(stored)
    except (ValueError, BackendUnavailable) as exc:
        raise click.BadParameter(f"the run in {path} trains with it: {exc}", param_hint="--backend") from None
    return dataclasses.replace(given, backend=backend)


def _paper_form(x) -> str:
    """A point as [h, s, l] with 6 significant digits (a learning rate of 2.9e-7 stays 2.9e-07)."""
    return "[" + ", ".join(f"{float(v):.6g}" for v in x) + "]"


@cli.command("gradient")
@click.argument("hidden", type=float, callback=_finite_float)
@click.argument("seq_length", metavar="SEQ", type=float, callback=_finite_float)
@click.argument("learning_rate", metavar="LR", type=float, callback=_finite_float)
@click.option("--step", "grad_step", type=_PositiveOrAuto(), default=None,
              help="Finite-difference step, or 'auto' (noise-aware) [paper: 1e-8; heldout: auto, in the search "
                   "space's coordinates].")
@click.option("--method", "grad_method", type=click.Choice(GRADIENT_METHODS), default="forward", show_default=True)
@_common_options
@_objective_options
def gradient_command(hidden, seq_length, learning_rate, grad_step, grad_method, F, seed, quiet):
    """The gradient of F at (HIDDEN, SEQ, LR) as JSON: the paper's intensive gradient (also x 1e-8, its
    units), or for the held-out objective exact corner differences along h and s and a noise-aware
    difference along l, with the noise estimate and signal-to-noise ratio of each component."""
    point = (hidden, seq_length, learning_rate)
    searched_as_is = F.definition.searched_as_is  # the paper's way: differences of F in (h, s, l)
    if grad_step is None:
        grad_step = 1e-8 if searched_as_is else "auto"
    if grad_step != "auto" and step_lost_in_rounding(point, grad_step):
        raise click.BadParameter(f"{grad_step:g} is lost in rounding at {_paper_form(point)} (x + h == x), so every "
                                 "difference along that axis would be 0; use a larger --step", param_hint="--step")
    if not searched_as_is and F.steps_lost(point):
        raise click.BadParameter(f"at {_paper_form(point)} the corners a whole number apart are one float (h or s >= "
                                 "2**52), so every difference along h and s would be 0; give a smaller HIDDEN and SEQ",
                                 param_hint="HIDDEN")
    diagnostics = {}
    try:
        if searched_as_is:
            g = gradient(F, point, h=grad_step, method=grad_method, diagnostics=diagnostics)
            extra = {}
        else:
            view = SpaceView(F)
            z = view.space.from_point(point)
            _, g_z = view.value_and_gradient(z, grad_step, grad_method, diagnostics=diagnostics)
            g = g_z / view.space.chain_factors(point)
            extra = dict(gradient_in_space=g_z.tolist())
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="SEQ") from None
    except MemoryLimitError as exc:
        raise click.UsageError(str(exc)) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    magnitude = float(np.linalg.norm(g))
    _emit_json(dict(point=list(point), gradient=g.tolist(), magnitude=magnitude,
                    gradient_paper_units=(g * 1e-8).tolist(), magnitude_paper_units=magnitude * 1e-8,
                    step=grad_step, method=grad_method, **extra, diagnostics=diagnostics, **F.settings(),
                    backend=F.backend.name, counters=F.counters.as_dict(), executor=F.executor.describe()))


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
    if not os.path.splitext(out)[1]:
        out += ".png"  # what matplotlib would write; the path printed must be the file's
    try:
        plot_runs(runs, labels, out, title)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {out!r}: {exc.strerror or exc}", param_hint="--out") from None
    except ValueError as exc:  # matplotlib: an extension it cannot write
        raise click.BadParameter(f"cannot write {out!r}: {exc}; use a .png name", param_hint="--out") from None
    click.echo(out)


def _make_out_dir(out_dir: str) -> None:
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"cannot create {out_dir!r}: {exc.strerror or exc}", param_hint="--out") from None


@cli.command("reproduce")
@click.option("--trial", "trial_spec", default="all", show_default=True, help="Trial number 1-9, a list (1,4,6) or all.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="reproduction", show_default=True,
              help="Folder for run files, figures, summary.json and report.md.")
@click.option("--noise", type=click.Choice(NOISE_KINDS), default="common", show_default=True,
              help="common random numbers (default) or the paper's fresh initialisations.")
@click.option("--threads", type=click.IntRange(1, MAX_COUNT), default=None, help="Worker threads [default: all cores].")
@click.option("--scale", type=click.FloatRange(min=0, min_open=True, max=1), default=1.0, show_default=True,
              callback=_finite_float,
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
    _make_out_dir(out_dir)
    command = ("fastrnn reproduce " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["reproduce"]
               else f"fastrnn reproduce --trial {trial_spec}")
    bars = RunBars(quiet, unit="step")

    def progress(label, record):
        bars(label, record["step"], f"x={_paper_form(record['x'])} F={record['fun']:.4f}")

    def on_trial(summary):
        if not quiet:
            finals = "; ".join(_paper_form(run["final"]) for run in summary["runs"])
            click.echo(f"trial {summary['number']}: {finals}", err=True)

    try:
        report = reproduce.reproduce(numbers, corpus, out_dir, command=command, noise=noise, seed=seed,
                                     threads=threads or default_threads(), backend=backend.name, dtype=dtype,
                                     scale=scale, intensive=intensive, progress=progress, on_trial=on_trial,
                                     executor=executor)
    except RunFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    finally:
        bars.close()
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


@cli.command("compare")
@click.option("--methods", default="gd,bfgs,random,tpe", show_default=True,
              help="Comma-separated methods to compare (each with the settings in fastrnn.compare.METHOD_SETTINGS).")
@click.option("--repeats", type=click.IntRange(1, MAX_COUNT), default=5, show_default=True, help="Seeds per method.")
@click.option("--budget-chars", type=click.IntRange(1, MAX_COUNT), required=True,
              help="Training characters each run may spend (memo hits are free).")
@click.option("--train-chars", type=click.IntRange(1, MAX_COUNT), default=None,
              help=f"Characters of training text per network while tuning [{DEFAULT_TRAIN_CHARS:,}].")
@click.option("--heldout-chars", type=click.IntRange(MIN_HELDOUT_CHARS, MAX_COUNT), default=DEFAULT_HELDOUT_CHARS,
              show_default=True, help="Characters of held-out text each network reads.")
@click.option("--beta", type=click.IntRange(1, MAX_COUNT), default=1, show_default=True, help="Runs averaged per corner.")
@click.option("--final-factor", type=click.IntRange(1, MAX_COUNT), default=10, show_default=True,
              help="The final check trains each final point this many times longer.")
@click.option("--threads", type=click.IntRange(1, MAX_COUNT), default=None, help="Worker threads [default: all cores].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder for run files, best_so_far.png, summary.json and report.md (an existing one is resumed).")
@_common_options
def compare_command(methods, repeats, budget_chars, train_chars, heldout_chars, beta, final_factor, threads, out_dir,
                    corpus, backend, seed, dtype, quiet):
    """Tune with several methods from several seeds at equal budget; report the held-out losses."""
    from fastrnn import compare

    if not _is_default("seed"):
        raise click.BadParameter("compare tunes each method from seeds 0 to --repeats - 1, a run file each; "
                                 "drop --seed", param_hint="--seed")
    names = [name.strip() for name in methods.split(",") if name.strip()]
    unknown = [name for name in names if name not in compare.METHOD_SETTINGS]
    if not names or unknown:
        raise click.BadParameter(f"unknown method {unknown[0] if unknown else ''!r}; valid: "
                                 f"{', '.join(compare.METHOD_SETTINGS)}", param_hint="--methods")
    longest = 40  # one update at the longest sane sequence length
    if budget_chars < longest:
        raise click.BadParameter(f"must be at least {longest} (one update at the longest sane sequence length)",
                                 param_hint="--budget-chars")
    if "tpe" in names:
        try:
            METHOD_TABLE["tpe"].algorithm.check_available()
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--methods") from None
    _make_out_dir(out_dir)
    bars = RunBars(quiet, total=budget_chars, unit="char", unit_scale=True)

    def progress(label, record):
        bars(label, min(record["counters"]["training_chars"], budget_chars),
             f"x={_paper_form(record['x'])} F={record['fun']:.4f}")

    command = "fastrnn compare " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["compare"] else "fastrnn compare"
    try:
        report = compare.compare(corpus, names, out_dir, repeats=repeats, budget_chars=budget_chars,
                                 train_chars=train_chars, heldout_chars=heldout_chars, beta=beta,
                                 final_factor=final_factor, backend=backend, dtype=dtype, threads=threads,
                                 command=command, progress=progress)
    except RunFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="--corpus") from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        bars.close()
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
@click.option("--rounds", type=click.IntRange(1, MAX_COUNT), default=5, show_default=True,
              help="Interleaved rounds per figure (medians are reported).")
@click.option("--dtypes", "dtype_names", default=",".join(DTYPES), show_default=True,
              help="Comma-separated precisions to compare (numpy trains in float64 only).")
@click.option("--beta", type=click.IntRange(1, MAX_COUNT), default=4, show_default=True,
              help="Replicas in the threads comparison.")
@click.option("--alpha", type=click.IntRange(1, MAX_COUNT), default=100, show_default=True,
              help="Training steps per replica in the threads comparison.")
@click.option("--executor", "executor_name", type=click.Choice(["threads", "dask"]), default="threads", show_default=True,
              help="dask: compare a LocalCluster of --workers single-threaded processes with --workers threads "
                   "(beta 8 unless --beta is given) instead of the backends.")
@click.option("--workers", type=click.IntRange(1, MAX_COUNT), default=2, show_default=True,
              help="Dask workers and threads in the executor comparison.")
@click.option("--roofline", is_flag=True,
              help="Also print this machine's ceilings (BLAS GEMM, cache read bandwidths, Adagrad throughput) and, "
                   "per config, the lower bound per step, what sets it, and each compiled backend's time against it.")
@click.option("--phases", is_flag=True,
              help="Also time each phase of the numba kernel's training step (recurrence, outputs and softmax, "
                   "backward sweep, weight gradients, Adagrad, Wxh columns) against its own bound.")
@click.option("--repeat", type=click.IntRange(1, MAX_COUNT), default=1, show_default=True,
              help="Repeat the whole measurement and print each figure as its range over the repeats "
                   "(README's tables: --repeat 3).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")
def bench_command(corpus_path, backend_names, rounds, dtype_names, beta, alpha, executor_name, workers, roofline,
                  phases, repeat, quiet):
    """Print Markdown tables: training steps/s per backend and config with the share of this machine's
    roofline bound, and the 2-thread speed-up of an evaluation of F beside this machine's ideal one."""
    import os

    from fastrnn import bench

    if executor_name == "dask":
        _bench_dask(corpus_path, rounds, 8 if _is_default("beta") else beta, alpha, workers)
        return

    names = [name.strip() for name in backend_names.split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKEND_NAMES]
    if not names:
        raise click.BadParameter(f"name at least one backend; valid: {', '.join(BACKEND_NAMES)}",
                                 param_hint="--backends")
    if unknown:
        raise click.BadParameter(f"unknown backend {unknown[0]!r}; valid: {', '.join(BACKEND_NAMES)}",
                                 param_hint="--backends")
    compiled = [name for name in names if name in COMPILED_BACKENDS]
    if roofline and not compiled:
        raise click.BadParameter("--roofline measures the compiled backends: name numba or cython",
                                 param_hint="--backends")
    if phases and "numba" not in names:
        raise click.BadParameter("--phases times the numba kernel's phases: include numba", param_hint="--backends")
    dtypes = [name.strip() for name in dtype_names.split(",") if name.strip()]
    if not dtypes or any(d not in DTYPES for d in dtypes):
        raise click.BadParameter(f"valid: {', '.join(DTYPES)}", param_hint="--dtypes")
    try:
        corpus = load_corpus(corpus_path)
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="--corpus") from None
    _check_bench_corpus(corpus, [s for _, s in bench.CONFIGS])
    if phases:
        try:
            get_backend("numba")
        except BackendUnavailable as exc:
            raise click.BadParameter(str(exc), param_hint="--phases") from None
    before = os.getloadavg()
    runs = []
    stages = bench.bench_stages(names, phases=phases)
    with progress_bar(total=stages * repeat, quiet=quiet, desc="bench", unit="part") as bar:
        for k in range(repeat):
            def tick(label, k=k):
                bar.set_postfix_str(f"repeat {k + 1}/{repeat}: {label}")
                bar.update(1)

            runs.append(bench.bench_run(corpus, names, dtypes, rounds=rounds, beta=beta, alpha=alpha, progress=tick,
                                        phases=phases))
    after = os.getloadavg()
    ranges = f"; each cell the range over {repeat} repeats" if repeat > 1 else ""
    click.echo(f"corpus: {corpus.name} ({len(corpus):,} characters, V={corpus.vocab_size}); medians of {rounds} "
               f"interleaved rounds{ranges}; load average {before[0]:.2f} before, {after[0]:.2f} after\n")
    if roofline:
        click.echo("Single-thread ceilings of this machine:\n")
        click.echo(bench.ceilings_markdown([run.ceilings for run in runs]))
        click.echo("")
    click.echo("Training steps, single thread; % of roofline = lower bound per step / measured time "
               "(model in fastrnn/bench.py):\n")
    click.echo(bench.rates_markdown(runs))
    if roofline:
        click.echo("\nTime per training step against its lower bound, and the resource that sets the bound:\n")
        click.echo(bench.roofline_markdown([run.roofline_rows for run in runs], compiled))
    if any(run.threads for run in runs):
        click.echo(f"\nOne evaluation of F (beta runs of {alpha} steps at one corner, float64, fresh memo) on 1 and 2 "
                   f"threads; ideal tasks: beta independent compute tasks of the same total length, in the same "
                   f"rounds (what two threads give work of that grain here); share: median over rounds of speed-up / ideal:\n")
        click.echo(bench.threads_markdown(runs))
    if phases:
        click.echo("\nWhere a training step of the numba kernel goes, single thread: each phase repeated alone (its "
                   "data warm in cache), against its own bound; the sum of the phases' bounds is a kernel that runs "
                   "each at its ceiling, one after the other (model in fastrnn/bench.py, phase_models):\n")
        click.echo(bench.phases_markdown([run.phases for run in runs]))


def _check_bench_corpus(corpus, seq_lengths) -> None:
    """The benchmarks train at every sequence length in ``seq_lengths``: refuse a text too short."""
    needed = max(seq_lengths) + 2
    if len(corpus.data) < needed:
        raise click.BadParameter(f"the benchmarks train with sequences of up to {needed - 2} characters and need at "
                                 f"least {needed} characters of text; the corpus has {len(corpus.data)}",
                                 param_hint="--corpus")


def _is_default(param: str) -> bool:
    return click.get_current_context().get_parameter_source(param) == click.core.ParameterSource.DEFAULT


def _bench_dask(corpus_path, rounds, beta, alpha, workers):
    """``fastrnn bench --executor dask``: the tables in docs/SCALING.md."""
    from fastrnn import bench
    from fastrnn.executors import ThreadExecutor, dask_executor_class

    try:
        corpus = load_corpus(corpus_path)
        _check_bench_corpus(corpus, [s for _, s in bench.EXECUTOR_CONFIGS])
        Objective(corpus, alpha=alpha, beta=1)  # the comparison's objective: held-out text split off
    except (CorpusError, ValueError) as exc:
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
