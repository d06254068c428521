"""The command line's flags that define F, made from :mod:`fastrnn.objective.settings`' fields, and the
objective of a resumed run.

Each field of the settings classes with a :class:`~fastrnn.objective.settings.Flag` in its metadata becomes
one click option (``--objective`` chooses the class). A flag's value is None unless it is given,
so the settings class's own defaults apply and a resumed run knows which flags were given: each
one given must agree with the field stored in the run file.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import click
from click.core import ParameterSource

from fastrnn._validation import MAX_COUNT
from fastrnn.backends import get_backend
from fastrnn.network.corpus import Corpus, CorpusError, load_corpus
from fastrnn.objective.function import Objective
from fastrnn.objective.settings import KINDS, Evaluation, ObjectiveSettings, flags, settings_class, settings_from_record

from .common import executor_options, finite_float, require_backend_dtype

#: Every flag that defines F: {field: (Flag, kinds it belongs to, default)}.
FLAGS = flags()



_TYPES = {
    "count": lambda flag: click.IntRange(flag.minimum, MAX_COUNT),
    "choice": lambda flag: click.Choice(flag.choices),
    "fraction": lambda flag: click.FloatRange(0, 0.5, min_open=True),
    "text": lambda flag: click.Path(dir_okay=False),
}


def setting_option(name: str, help: str | None = None):
    """The click option of one settings field (its flag, rule and help from the field's metadata),
    None unless given: for a command that shares some of F's flags (`train` and `ngram` share the
    split's). ``help`` replaces the field's own."""
    flag, _, default = FLAGS[name]
    shown = "" if help is not None or default is None or flag.help.endswith("].") else f" [{default}]"
    return click.option(flag.name, name, type=_TYPES[flag.rule](flag), default=None,
                        callback=finite_float if flag.rule == "fraction" else None, help=(help or flag.help) + shown)


#: The held-out objective's fields that say which text is held out and how much of it is read.
SPLIT_FIELDS = ("heldout_fraction", "heldout", "heldout_chars")


def split_flags(func):
    """The flags of the held-out split alone (--heldout-fraction, --heldout, --heldout-chars), for a
    command that reads F's texts without training (``fastrnn ngram``); the command receives
    ``settings_given`` as with :func:`setting_flags`, for :func:`build_settings`."""
    for name in reversed(SPLIT_FIELDS):
        func = setting_option(name)(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, settings_given={name: kwargs.pop(name) for name in SPLIT_FIELDS}, **kwargs)

    return wrapper


def setting_flags(func):
    """``--objective`` and one option per flagged settings field; the command receives ``kind``
    and ``settings_given``: {field: value} of the flags given (None where not given)."""
    for name in reversed(FLAGS):
        func = setting_option(name)(func)
    func = click.option("--objective", "kind", type=click.Choice(KINDS), default=None,
                        help="heldout: mean cross-entropy per character on held-out text after training; "
                             "paper: the paper's smoothed training loss after --alpha updates [heldout].")(func)

    @functools.wraps(func)
    def wrapper(*args, kind, **kwargs):
        given = {name: kwargs.pop(name) for name in FLAGS}
        return func(*args, kind=kind, settings_given=given, **kwargs)

    return wrapper


def _flag(name: str) -> str:
    return "--objective" if name == "kind" else FLAGS[name][0].name if name in FLAGS else f"--{name}"


def build_settings(kind: str | None, given: dict, corpus, seed: int, dtype: str) -> ObjectiveSettings:
    """The settings of the flags given; a flag of the other kind, or a value the settings refuse,
    exits 2 naming the flag."""
    kind = kind or "heldout"
    cls = settings_class(kind)
    own = {item.name for item in dataclasses.fields(cls)}
    values = {name: value for name, value in given.items() if value is not None}
    for name in values:
        if name not in own:
            other = next(k for k in FLAGS[name][1] if k != kind)
            raise click.BadParameter(f"belongs to the {settings_class(other).title} objective; drop it or use "
                                     f"--objective {other}",
                                     param_hint=_flag(name))
    for name, value in values.items():
        if FLAGS[name][0].rule == "text":
            values[name] = _load(value, _flag(name))
    try:
        return cls(corpus=corpus, seed=seed, dtype=dtype, **values)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _load(path, flag) -> Corpus:
    try:
        return load_corpus(path)
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def resumed_settings(run, path: str, kind, given: dict, corpus, seed: int, dtype: str, conflict) -> ObjectiveSettings:
    """The settings stored in ``run`` (a RunFile), with its texts read. Each flag given must agree
    with them (``conflict(flag, given, stored)`` raises otherwise); --corpus and --heldout, if
    given, must be the run's texts, else they are read from the names the file stores."""
    stored = settings_from_record(run.settings["objective"])
    explicit = {name for name in ("seed", "dtype")
                if click.get_current_context().get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                                            ParameterSource.ENVIRONMENT)}
    wanted = {"kind": kind, **{name: value for name, value in given.items() if value is not None}}
    wanted.update({name: value for name, value in (("seed", seed), ("dtype", dtype)) if name in explicit})
    for name, value in wanted.items():
        if value is None or (name in FLAGS and FLAGS[name][0].rule == "text"):
            continue
        stored_value = stored.kind if name == "kind" else getattr(stored, name, None)
        if value != stored_value:
            conflict(_flag(name), value, stored_value)
    texts = {}
    for item in dataclasses.fields(stored):
        if not item.metadata["text"] or (item.name != "corpus" and getattr(stored, item.name) is None):
            continue
        given_text = corpus if item.name == "corpus" else given.get(item.name)
        if given_text is not None and not isinstance(given_text, Corpus):
            given_text = _load(given_text, _flag(item.name))
        texts[item.name] = resume_text(given_text, getattr(stored, item.name), _flag(item.name), path, conflict)
    return dataclasses.replace(stored, **texts)


def resume_text(given, stored, flag, path, conflict):
    """The text a resumed run was started on: ``given`` if it is that text, else read from its stored name."""
    name, fingerprint = stored
    if given is None:
        try:
            given = _read_run_text(name, path)
        except (CorpusError, TypeError) as exc:
            raise click.BadParameter(f"the run's text {name!r} cannot be read ({exc}); pass it with {flag}",
                                     param_hint=flag) from None
        if given.fingerprint != fingerprint:
            raise click.BadParameter(f"{name!r} is not the text the run in {path} was started on (its SHA-256 differs); "
                                     f"pass that text with {flag}", param_hint=flag)
    elif given.fingerprint != fingerprint:
        conflict(flag, f"{given.name} (SHA-256 {given.fingerprint[:12]})", f"{name} (SHA-256 {str(fingerprint)[:12]})")
    return given


def _read_run_text(name, run_path):
    """The text a run file names: where the run started (a relative name is relative to that
    directory), or else beside the run file."""
    if name == "default":
        return load_corpus(None)
    try:
        return load_corpus(name)
    except (CorpusError, TypeError):
        beside = None if not isinstance(name, str) or os.path.isabs(name) else \
            os.path.join(os.path.dirname(os.path.abspath(run_path)), name)
        if beside is None or not os.path.exists(beside):
            raise
        return load_corpus(beside)


def objective_flags(func):
    """The flags that define F (made from :mod:`fastrnn.objective.settings`' fields), --threads and the
    executor's, collected into ``objective_args`` (with --corpus, --backend, --dtype and --seed):
    goes below ``common_options``. ``build_objective`` makes F."""

    @setting_flags
    @click.option("--threads", type=click.IntRange(1, MAX_COUNT), default=None, help="Worker threads [default: all cores].")
    @executor_options
    @functools.wraps(func)
    def wrapper(*args, kind, settings_given, threads, corpus, backend, dtype, executor, **kwargs):
        objective_args = dict(kind=kind, given=settings_given, corpus=corpus, seed=kwargs["seed"], dtype=dtype,
                              evaluation=Evaluation(backend=backend, threads=threads, executor=executor))
        return func(*args, objective_args=objective_args, **kwargs)

    return wrapper


def build_objective(args: dict, settings: ObjectiveSettings | None = None) -> Objective:
    """F from ``objective_flags``' values (or from ``settings``, a resumed run's); bad
    combinations exit 2 naming the flag."""
    if settings is None:
        settings = build_settings(args["kind"], args["given"], args["corpus"], args["seed"], args["dtype"])
    require_backend_dtype(get_backend(args["evaluation"].backend), settings.dtype,  # the kind's default, too
                          given=args["dtype"] is not None)
    try:
        return Objective(settings, evaluation=args["evaluation"])
    except CorpusError as exc:
        flag = "--heldout-fraction" if args["given"].get("heldout") is None else "--heldout"
        raise click.BadParameter(str(exc), param_hint=flag) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def objective_options(func):
    """``objective_flags`` with F built: the command receives it as ``F`` (and keeps ``seed``, ``quiet``)."""

    @objective_flags
    @functools.wraps(func)
    def wrapper(*args, objective_args, **kwargs):
        return func(*args, F=build_objective(objective_args), **kwargs)

    return wrapper
