"""What the commands share: one-line errors, the options of every command that trains (--corpus,
--backend, --seed, --dtype, --quiet), the executor's options, JSON output and small parameter types."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys

import click

from fastrnn._validation import MAX_COUNT, MAX_SEED
from fastrnn.backends import (
    BACKEND_NAMES,
    DEFAULT_BACKEND,
    BackendUnavailable,
    check_backend_dtype,
    get_backend,
)
from fastrnn.network.corpus import DEFAULT_CORPUS_DESCRIPTION, CorpusError, load_corpus
from fastrnn.network.model import DTYPES
from fastrnn.running.executors import ExecutorError


class OneLineErrors(click.Group):
    """Report usage errors as one line (``Error: ...``) with exit status 2, no usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            if _is_bare_call(exc):  # `fastrnn` alone asks what it can do: the help, not an error
                click.echo(exc.ctx.get_help())
                sys.exit(0)
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


def _is_bare_call(exc: click.ClickException) -> bool:
    """Whether ``exc`` is click's answer to a group called without a command (NoArgsIsHelpError, click >= 8.2)."""
    return type(exc).__name__ == "NoArgsIsHelpError" and getattr(exc, "ctx", None) is not None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

#: --corpus, as the command receives it: ``corpus_path`` (None: the built-in corpus), read by :func:`read_corpus`.
corpus_option = click.option("--corpus", "corpus_path", type=click.Path(dir_okay=False), default=None,
                             help=f"UTF-8 training text. Default: {DEFAULT_CORPUS_DESCRIPTION}")


def read_corpus(corpus_path):
    """The text --corpus names (None: the built-in corpus); one line naming --corpus if it cannot be used."""
    try:
        return load_corpus(corpus_path)
    except CorpusError as exc:
        missing = corpus_path is not None and not os.path.exists(corpus_path)
        hint = ", or omit --corpus to train on the built-in Shakespeare corpus" if missing else ""
        raise click.BadParameter(f"{exc}{hint}", param_hint="--corpus") from None


def require_backend_dtype(backend, dtype: str, given: bool = True) -> str:
    """``dtype`` if ``backend`` (a Backend) trains in it; else exit 2 naming the fix, and the flag:
    --dtype when the user ``given`` it, else --backend (the precision is the default)."""
    try:
        return check_backend_dtype(backend, dtype)
    except ValueError as exc:
        if given:
            raise click.BadParameter(str(exc), param_hint="--dtype") from None
        raise click.BadParameter(f"{exc}; {dtype} is the precision here without --dtype",
                                 param_hint="--backend") from None


def common_options(func):
    """--corpus, --backend, --seed, --dtype and --quiet, shared by every command that trains."""

    @corpus_option
    @click.option("--backend", type=click.Choice(BACKEND_NAMES), default=DEFAULT_BACKEND, show_default=True,
                  help="Training kernel.")
    @click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Random seed.")
    @click.option("--dtype", type=click.Choice(DTYPES), default=None,
                  help="Training precision (float32: compiled backends only) [the held-out objective: float32; "
                       "the paper's: float64].")
    @click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")
    @functools.wraps(func)
    def wrapper(*args, corpus_path, backend, **kwargs):
        try:
            kwargs["backend"] = get_backend(backend)
        except BackendUnavailable as exc:
            raise click.BadParameter(str(exc), param_hint="--backend") from None
        if kwargs["dtype"] is not None:  # the default is the objective's kind's, checked where F is made
            require_backend_dtype(kwargs["backend"], kwargs["dtype"])
        if corpus_path is None and (kwargs.get("resume") is not None or kwargs.get("from_run") is not None):
            kwargs["corpus"] = None  # `tune --resume`, `train --resume / --from-run` read the corpus a file names
            return func(*args, **kwargs)
        kwargs["corpus"] = read_corpus(corpus_path)
        return func(*args, **kwargs)

    return wrapper


def json_safe(value):
    """``value`` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def emit_json(record: dict) -> None:
    click.echo(json.dumps(json_safe(record), allow_nan=False))

class ExecutorFailed(click.ClickException):
    """The cluster failed (lost scheduler, workers dying): one line, exit status 2."""

    exit_code = 2


def executor_options(func):
    """--scheduler / --local-workers: train on a Dask cluster instead of this process's threads.

    The command receives ``executor`` ("threads", or a DaskExecutor closed when the command
    ends); an :class:`~fastrnn.running.executors.ExecutorError` becomes one ``Error:`` line and exit 2.
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
        from fastrnn.running.executors import dask_executor_class

        try:
            DaskExecutor = dask_executor_class()
            silence_distributed()
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


def silence_distributed() -> None:
    """Mute distributed's log lines (reconnect attempts, tracebacks of dead workers): the
    executor's errors say what went wrong in one line. Dask's logging config gives some of its
    loggers their own levels, so each is set, not only the parent."""
    for name in ["distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))]:
        logging.getLogger(name).setLevel(logging.CRITICAL)

class PositiveOrAuto(click.ParamType):
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

def paper_form(x) -> str:
    """A point as [h, s, l] with 6 significant digits (a learning rate of 2.9e-7 stays 2.9e-07), for progress."""
    return "[" + ", ".join(f"{float(v):.6g}" for v in x) + "]"


def exact_form(x) -> str:
    """A point as [h, s, l] in full precision (each float's shortest exact repr): an answer to
    re-evaluate. Training is chaotic in l, so a rounded rate is another network."""
    return "[" + ", ".join(repr(float(v)) for v in x) + "]"

def make_out_dir(out_dir: str) -> None:
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"cannot create {out_dir!r}: {exc.strerror or exc}", param_hint="--out") from None

def is_default(param: str) -> bool:
    return click.get_current_context().get_parameter_source(param) == click.core.ParameterSource.DEFAULT


def finite_float(ctx, param, value):
    # click's FloatRange lets nan (every comparison is false) and inf (min bounds) through.
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value
