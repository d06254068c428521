"""`fastrnn tune --method halving`: successive halving over training characters (its flags, the
resume of its run files, and what it prints). ``tune`` dispatches here; see
:mod:`fastrnn.tuning.halving`."""

from __future__ import annotations

import functools
import math
import os
import shlex
import sys
import time

import click

from fastrnn._validation import MAX_COUNT
from fastrnn.objective.heldout import DEFAULT_HELDOUT_CHARS, DEFAULT_HELDOUT_FRACTION
from fastrnn.tuning.halving import METHOD, BudgetError, HalvingResult, halve, stored_result
from fastrnn.tuning.halving_plan import HalvingSettings, flags, settings_from_record
from fastrnn.tuning.halving_store import CheckpointError, is_halving_file, read_halving
from fastrnn.tuning.run_files import RunFileError

from .common import finite_float
from .objective_options import build_objective, resumed_settings
from .progress import progress_bar

#: When this module was imported (as the command starts): a time budget counts from here.
COMMAND_STARTED = time.monotonic()
#: The methods this module runs (beside METHOD_TABLE's).
HALVING_METHODS = (METHOD,)
#: Every halving flag: {field: (HalvingFlag, default)}.
FLAGS = flags()
#: The optimizer flags `tune` has that successive halving does not use.
_NOT_HALVING = (("max_steps", "--steps"), ("gtol", "--gtol"), ("record_every", "--record-every"), ("x0", "--x0"))

_TYPES = {
    "count": lambda flag: click.IntRange(flag.minimum, MAX_COUNT),
    "choice": lambda flag: click.Choice(flag.choices),
    "share": lambda flag: click.FloatRange(0, 1, max_open=True),
}


def halving_options(func):
    """The halving flags (from :class:`HalvingSettings`' fields); the command receives
    ``halving_given`` ({field: value or None}). ``--budget-seconds`` is tune's, for every method."""
    for name, (flag, _default) in reversed(FLAGS.items()):
        func = click.option(flag.name, name, type=_TYPES[flag.rule](flag), default=None, help=flag.help,
                            callback=finite_float if flag.rule == "share" else None)(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        given = {name: kwargs.pop(name) for name in FLAGS}
        return func(*args, halving_given=given, **kwargs)

    return wrapper


def is_halving_run(method, resume) -> bool:
    return method == METHOD or (method is None and resume is not None and is_halving_file(resume))


def refuse_halving_flags(halving_given: dict) -> None:
    """A halving flag given to another method: one line, exit 2."""
    for name, value in halving_given.items():
        if value is not None:
            raise click.BadParameter("is for --method halving", param_hint=FLAGS[name][0].name)


def run_halving(*, halving_given, budget_seconds, budget_chars, budget_trainings, out, force, resume, options,
                objective_args, quiet, explicit, conflict, resumed_evaluation, by_default=False):
    """The body of `tune --method halving` (``explicit(name)``, ``conflict(path)`` and
    ``resumed_evaluation(run, path, evaluation)`` are tune's own helpers; ``by_default``: no
    --method was given, so a refused flag says how to choose another method)."""
    other = "; it is the default method: for the methods that train every network as long, give --method tpe " \
        "(or random, gd, ...)" if by_default else ""
    for name, flag in _NOT_HALVING:
        if explicit(name):
            raise click.BadParameter("does not apply to --method halving (its rungs say how long networks train)"
                                     + other, param_hint=flag)
    if options:
        flag = "--" + next(iter(options)).replace("_", "-")
        raise click.BadParameter("does not apply to --method halving" + other, param_hint=flag)
    for name in ("train_chars", "alpha"):
        if objective_args["given"].get(name) is not None:
            flag = "--train-chars" if name == "train_chars" else "--alpha"
            raise click.BadParameter("does not apply to --method halving (the rungs set the training length: "
                                     "--min-chars, --target-chars)" + other, param_hint=flag)
    definition = None
    budgets = dict(budget_chars=budget_chars, budget_trainings=budget_trainings, budget_seconds=budget_seconds)
    if resume is not None:
        try:
            saved = read_halving(resume)
        except RunFileError as exc:
            raise click.BadParameter(str(exc), param_hint="--resume") from None
        stored = saved.settings["halving"]
        settings = settings_from_record(stored)  # a setting the file predates reads as its fastrnn had it
        for name, value in halving_given.items():
            if value is not None and value != getattr(settings, name):
                conflict(resume)(FLAGS[name][0].name, value, getattr(settings, name))
        for name, flag in (("budget_chars", "--budget-chars"), ("budget_trainings", "--budget-trainings"),
                           ("budget_seconds", "--budget-seconds")):
            if not explicit(name):
                budgets[name] = saved.settings.get(name)
        definition = resumed_settings(saved, resume, objective_args["kind"], objective_args["given"],
                                      objective_args["corpus"], objective_args["seed"], objective_args["dtype"],
                                      conflict(resume))
        objective_args["evaluation"] = resumed_evaluation(saved, resume, objective_args["evaluation"])
        if saved.result is not None:
            _print_result(stored_result(saved, resume), saved, quiet, finished=resume)
            return
    else:
        try:
            settings = HalvingSettings(**{k: v for k, v in halving_given.items() if v is not None})
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    if objective_args["kind"] not in (None, "heldout"):
        raise click.BadParameter("successive halving tunes the held-out objective", param_hint="--objective")
    F = build_objective(objective_args, definition)
    shown = _Progress(budgets)
    where = resume or out
    before = file_state(out) if resume is None else None
    with progress_bar(total=shown.total, quiet=quiet, desc="tune halving", unit=shown.unit,
                      unit_scale=shown.unit == "char") as bar:
        def on_event(entry):
            shown.update(bar, entry)

        try:
            result = halve(F, settings, out=where, resume=resume is not None, overwrite=force,
                           started=COMMAND_STARTED, on_event=on_event, **budgets)
        except BudgetError as exc:
            hint = "--budget-seconds" if "seconds" in str(exc) else "--budget-chars"
            raise click.BadParameter(str(exc), param_hint=hint) from None
        except (RunFileError, CheckpointError) as exc:
            raise click.BadParameter(str(exc), param_hint="--resume" if resume else "--out") from None
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        except KeyboardInterrupt:
            bar.close()
            click.echo(f"Error: interrupted{interrupted_hint(resume, out, before)}", err=True)
            sys.exit(130)
    _print_result(result, F, quiet)


def interrupted_hint(resume, out, before) -> str:
    """What a Ctrl-C message adds: how to continue the run, or (a new run interrupted before it wrote
    its first line, ``out``'s :func:`file_state` still ``before``) that nothing was written."""
    if resume is not None:
        return f"; continue with --resume {resume}"
    if out is None:
        return ""
    if file_state(out) != before:
        return f"; continue with --resume {out}"
    return f" before the run started; {out} was not written"


def file_state(path):
    """What tells whether a file was written: (inode, size, modification time), or None."""
    try:
        stat = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class _Progress:
    """The bar counts the budget that bounds the run (seconds, characters or networks)."""

    def __init__(self, budgets: dict):
        if budgets["budget_seconds"] is not None:
            self.total, self.unit, self.counter = budgets["budget_seconds"], "s", "seconds"
        elif budgets["budget_chars"] is not None:
            self.total, self.unit, self.counter = budgets["budget_chars"], "char", "training_chars"
        elif budgets["budget_trainings"] is not None:
            self.total, self.unit, self.counter = budgets["budget_trainings"], "network", "trainings_run"
        else:
            self.total, self.unit, self.counter = None, "char", "training_chars"
        self.best = math.inf

    def update(self, bar, entry: dict) -> None:
        counters = entry.get("counters")
        if counters is None:
            return
        position = counters[self.counter]
        if self.total is not None:
            position = min(position, self.total)
        bar.update(position - bar.n)
        if entry["type"] == "record":
            self.best = min(self.best, entry["fun"])
            bar.set_postfix_str(f"rung {entry['rung']} ({entry['chars']:,} chars) best {self.best:.4f}")
        elif entry["type"] == "segment" and entry["values"]:
            values = ", ".join(f"{value:.4f}" for _, value in entry["values"])
            bar.set_postfix_str(f"top rung {entry['chars']:,} chars: {values}")


def _print_result(result: HalvingResult, source, quiet: bool, finished: str | None = None) -> None:
    """The answer (h, s, l) in full precision on stdout; its loss, model file and commands on stderr."""
    h, s, lr = result.x
    click.echo(f"[{int(h)}, {int(s)}, {float(lr)!r}]")  # whole h and s; the rate in full (a rounded one is another network)
    if finished is not None:
        click.echo(f"{finished} is finished", err=True)  # what it did follows on the loss's line
    click.echo(f"held-out loss {result.fun!r} nats/char ({result.fun / math.log(2.0)!r} bits/char) after "
               f"{result.chars:,} characters of training ({result.steps:,} updates); {result.message}; "
               f"{result.seconds:.1f} s", err=True)
    if result.model:
        click.echo(f"model: {result.model}", err=True)
        click.echo(f"sample it: fastrnn sample {shlex.quote(result.model)}", err=True)
    check = _objective_command(result, source)
    if check:
        click.echo(f"its loss again: {check}", err=True)


def _objective_command(result: HalvingResult, source) -> str | None:
    """`fastrnn objective` with the run's settings: gives the answer's held-out loss bit for bit;
    None when it cannot (an answer whose rate decayed: F trains at a constant rate)."""
    definition = getattr(source, "definition", None)
    if definition is None or result.cooldown is not None:
        return None
    h, s, lr = result.x
    parts = ["fastrnn", "objective", str(h), str(s), repr(float(lr)), "--train-chars", str(result.chars)]
    corpus = definition.corpus
    if corpus is not None and getattr(corpus, "name", "default") not in ("default", None) and \
            not str(corpus.name).startswith("Shakespeare"):
        parts += ["--corpus", shlex.quote(str(corpus.name))]
    if definition.heldout is not None:
        parts += ["--heldout", shlex.quote(str(definition.heldout.name))]
    elif definition.heldout_fraction != DEFAULT_HELDOUT_FRACTION:
        parts += ["--heldout-fraction", repr(definition.heldout_fraction)]
    if definition.heldout_chars != DEFAULT_HELDOUT_CHARS:
        parts += ["--heldout-chars", str(definition.heldout_chars)]
    if definition.seed != 0:
        parts += ["--seed", str(definition.seed)]
    if definition.dtype != definition.default_dtype:
        parts += ["--dtype", definition.dtype]
    return " ".join(parts)
