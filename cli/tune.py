"""`fastrnn tune` (one run, resumable: its flags from the method table, the resume check) and
`fastrnn compare` (methods head to head at equal budget)."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import shlex
import sys
import time

import click
from click.core import ParameterSource

from fastrnn._validation import MAX_COUNT
from fastrnn.backends import (
    BackendUnavailable,
    get_backend,
)
from fastrnn.network.checkpoint import CheckpointError
from fastrnn.network.corpus import CorpusError
from fastrnn.objective.function import DEFAULT_TRAIN_CHARS
from fastrnn.objective.heldout import DEFAULT_HELDOUT_CHARS, MIN_HELDOUT_CHARS
from fastrnn.objective.settings import Evaluation, HeldoutSettings
from fastrnn.optimize.methods import METHOD_TABLE, METHODS, default_options
from fastrnn.tuning.deliver import deliver, model_path_for
from fastrnn.tuning.run_files import RunFileError, read_run, run_is_finished, stored_method
from fastrnn.tuning.runner import HELDOUT_SETTINGS, default_method, tune

from .common import (
    PositiveOrAuto,
    common_options,
    exact_form,
    finite_float,
    is_default,
    make_out_dir,
    paper_form,
    require_backend_dtype,
)
from .halving import (
    HALVING_METHODS,
    file_state,
    halving_options,
    interrupted_hint,
    is_halving_run,
    refuse_halving_flags,
    run_halving,
)
from .objective_options import (
    build_objective,
    objective_flags,
    resumed_settings,
)
from .progress import RunBars, TuneProgress, progress_bar


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
        finite = finite_float if option.rule in ("positive", "positive_or_none", "open_unit") else None
        func = click.option(f"--{name.replace('_', '-')}", name, type=_OPTION_TYPES[option.rule](option), default=None,
                            callback=finite, help=f"{methods_text}: {option.help} [{default_text}].")(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        options = {name: kwargs.pop(name) for name in names}
        return func(*args, options={k: v for k, v in options.items() if v is not None}, **kwargs)

    return wrapper

_OPTION_TYPES = {
    "positive_or_auto": lambda option: PositiveOrAuto(),
    "positive": lambda option: click.FloatRange(min=0, min_open=True),
    "positive_or_none": lambda option: click.FloatRange(min=0, min_open=True),
    "open_unit": lambda option: click.FloatRange(0, 1, min_open=True, max_open=True),
    "int_min1": lambda option: click.IntRange(1, MAX_COUNT),
    "int_min0": lambda option: click.IntRange(0, MAX_COUNT),
    "bool": lambda option: click.BOOL,
    "choice": lambda option: click.Choice(option.choices),
}


@click.command("tune")
@click.option("--method", type=click.Choice((*METHODS, *HALVING_METHODS)), default=None,
              help="Tuning method [heldout: halving, successive halving over training characters, the fastest "
                   "to a good network at equal time in docs/COMPARISON.md; paper: gd]. tpe and random try "
                   "whole networks of --train-chars; gd, newton, bfgs, dfp follow finite-difference gradients.")
@click.option("--steps", "max_steps", type=click.IntRange(0, MAX_COUNT), default=10000, show_default=True,
              help="Maximum optimizer steps.")
@click.option("--gtol", type=click.FloatRange(min=0), default=1e-4, show_default=True, callback=finite_float,
              help="Stop when the gradient norm is below this.")
@click.option("--record-every", type=click.IntRange(1, MAX_COUNT), default=1, show_default=True,
              help="Write a record every N steps (Ctrl-C or SIGTERM also writes the last finished step; "
                   "kill -9 loses the steps since the last record).")
@click.option("--x0", callback=_point_option, default=None, metavar="H,S,L",
              help="Initial point [heldout: uniform in the sane box (in the search space) from --seed; "
                   "paper: uniform in [0, 10]^3, as the paper].")
@click.option("--budget-chars", type=click.IntRange(1, MAX_COUNT), default=None,
              help="Stop once the networks trained have read this many characters (memo hits are free).")
@click.option("--budget-trainings", type=click.IntRange(1, MAX_COUNT), default=None,
              help="Stop once this many networks have been trained.")
@click.option("--budget-seconds", type=click.FloatRange(min=0, min_open=True), default=None, callback=finite_float,
              help="Stop within this many seconds of wall-clock time (the tuner's own included; a resumed run counts "
                   "its earlier time).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the run to this JSON Lines file, a new one (unless --force), creating its folders; the "
                   "held-out objective's answer is saved beside it as a model file (run.jsonl: run.npz), which must "
                   "not exist either. Nothing is written before the run starts: a refused run leaves the disk as "
                   "it was.")
@click.option("--force", is_flag=True,
              help="Let --out replace an existing run file and the files beside it (its model file; a halving run's "
                   "checkpoints).")
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="Continue the run in this file with the settings stored in it (--steps, --record-every and "
                   "the budgets may change; other options given must match it).")
@_optimizer_options
@halving_options
@common_options
@objective_flags
def tune_command(method, options, max_steps, gtol, record_every, x0, out, force, resume, budget_chars, budget_trainings,
                 budget_seconds, objective_args, seed, quiet, halving_given):
    """Minimise F(h, s, l) and print the final point [h, s, l] (the run goes to --out as JSON Lines)."""
    if resume is not None and out is not None and os.path.abspath(out) != os.path.abspath(resume):
        raise click.BadParameter("--resume continues its own file; drop --out or give the same path", param_hint="--out")
    if resume is not None and force:
        raise click.BadParameter("--resume continues a run and never overwrites it; drop --force", param_hint="--force")
    if resume is not None and method is not None:
        _check_resumed_method(resume, method)
    # the held-out objective's default: successive halving, the winner at equal time (docs/COMPARISON.md)
    by_default = method is None and resume is None and objective_args["kind"] in (None, "heldout")
    if by_default or is_halving_run(method, resume):
        return run_halving(halving_given=halving_given, budget_seconds=budget_seconds, budget_chars=budget_chars,
                           budget_trainings=budget_trainings, out=out, force=force, resume=resume, options=options,
                           objective_args=objective_args, quiet=quiet, explicit=explicit, conflict=_conflict,
                           resumed_evaluation=_resumed_evaluation, by_default=by_default)
    refuse_halving_flags(halving_given)
    run = definition = None
    if resume is not None:
        run = _read_run_option(resume)  # read once: its settings here, its records in tune
        settings = _resume_settings(run, resume, dict(
            method=method, options=options, max_steps=max_steps, gtol=gtol, record_every=record_every, x0=x0, seed=seed,
            budget_chars=budget_chars, budget_trainings=budget_trainings, budget_seconds=budget_seconds))
        method, options, max_steps, gtol, record_every, x0, seed, budget_chars, budget_trainings, budget_seconds = (
            settings[k] for k in ("method", "options", "max_steps", "gtol", "record_every", "x0", "seed", "budget_chars",
                                  "budget_trainings", "budget_seconds"))
        definition = resumed_settings(run, resume, objective_args["kind"], objective_args["given"],
                                      objective_args["corpus"], objective_args["seed"], objective_args["dtype"],
                                      _conflict(resume))
        objective_args["evaluation"] = _resumed_evaluation(run, resume, objective_args["evaluation"])
        if run_is_finished(run, max_steps, budget_chars, budget_trainings, budget_seconds):
            result = run.result
            click.echo(exact_form(result["x"]))
            click.echo(f"{resume} is finished: {result['message']} after {result['nit']} steps; F = {result['fun']!r} "
                       f"(continue a run that reached its step limit or budget with a larger --steps or --budget-*)",
                       err=True)
            if definition.kind == "heldout" and not os.path.exists(model_path_for(resume)):
                _deliver_network(build_objective(objective_args, definition), result["x"], resume, quiet)
            return
    F = build_objective(objective_args, definition)
    if method is None:
        method = default_method(F)
    if resume is None and F.space.name == "log":
        options = {**HELDOUT_SETTINGS.get(method, {}), **options}  # the paper's defaults are for its linear space
    shown = TuneProgress(max_steps, budget_chars, budget_trainings, F.counters.as_dict(), budget_seconds)
    # a new run's model file (the held-out objective's answer) is its own: an existing one is refused
    # unless --force, as the run file is (fastrnn.tuning.tune's companions)
    companions = (model_path_for(out),) if resume is None and out is not None and F.kind == "heldout" else ()
    before = file_state(out) if resume is None else None
    started = time.perf_counter()
    with progress_bar(total=shown.total, quiet=quiet, desc=f"tune {method}", unit=shown.unit,
                      unit_scale=shown.unit == "char") as bar:
        def on_step(record):
            bar.update(shown.position(record) - bar.n)
            bar.set_postfix_str(shown.postfix(record, paper_form))
            warning = shown.warning(record, time.perf_counter() - started)
            if warning and not bar.disable:
                bar.write(f"tune {method}: {warning}", file=sys.stderr)

        try:
            result = tune(F, method, x0=x0, seed=seed, max_steps=max_steps, record_every=record_every, gtol=gtol,
                          out=resume or out, resume=run or False, overwrite=force, on_step=on_step,
                          budget_chars=budget_chars, budget_trainings=budget_trainings, budget_seconds=budget_seconds,
                          companions=companions, **options)
        except RunFileError as exc:
            raise click.BadParameter(str(exc), param_hint="--resume" if resume else "--out") from None
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        except KeyboardInterrupt:
            bar.close()  # the message starts on a line of its own, and the bar is not drawn again after it
            click.echo(f"Error: interrupted{interrupted_hint(resume, out, before)}", err=True)
            sys.exit(130)
    click.echo(exact_form(result.x))
    if not quiet:
        click.echo(f"{result.message} after {result.nit} steps; F = {result.fun!r}; {result.nfev} evaluations; "
                   f"{F.counters.trainings_run} trainings ({F.counters.training_chars:,} characters), "
                   f"{F.counters.memo_share:.0%} served by the memo", err=True)
    _deliver_network(F, result.x, resume or out, quiet)


def _deliver_network(F, point, run_path: str | None, quiet: bool) -> None:
    """The held-out objective's answer as a network beside the run file (fastrnn.tuning.deliver)."""
    if F.kind != "heldout":
        return
    if run_path is None:
        if not quiet:
            click.echo("no network saved: give --out RUN.jsonl to save the answer's network beside the run",
                       err=True)
        return
    path = model_path_for(run_path)
    try:
        network = deliver(F, point, path, run_path)
    except CheckpointError as exc:
        raise click.BadParameter(f"{exc}; the run file is complete, so --resume {run_path} saves the network "
                                 "once the folder can be written", param_hint="--out") from None
    except ValueError as exc:
        click.echo(f"no network saved: {exc}", err=True)
        return
    if not quiet:
        click.echo(f"network ({network.hidden}, {network.seq_length}, {network.learning_rate!r}), seed "
                   f"{network.seed}, trained on {network.train_chars:,} characters: held-out loss "
                   f"{network.nats_per_char:.4f} nats/char ({network.bits_per_char:.4f} bits/char), saved to "
                   f"{network.path}; sample it with: fastrnn sample {shlex.quote(network.path)}", err=True)


def _check_resumed_method(path: str, method: str) -> None:
    """--method given with --resume must be the run's own (its file says which it is): one line
    naming both otherwise, before either method's reader calls the other's file damaged."""
    stored = stored_method(path)
    if stored is not None and stored != method:
        raise click.BadParameter(f"{method} conflicts with {stored}: {path} is a {stored} run file; drop --method to "
                                 "resume it (the file says which method it is), or start a new run with --out",
                                 param_hint="--method")


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
              ("budget_trainings", "--budget-trainings"), ("budget_seconds", "--budget-seconds"))


def explicit(name: str) -> bool:
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
        if explicit(name) and values[name] != saved[key]:
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
        resolved[name] = values[name] if explicit(name) else saved.get(name)
    return resolved


def _resumed_evaluation(run, path: str, given: Evaluation) -> Evaluation:
    """How the resumed run computes F: --threads and the executor as given; the backend the run
    file names (format 1: in its objective), unless --backend is given (not part of F)."""
    stored = run.settings.get("evaluation", run.settings["objective"]).get("backend")
    if explicit("backend") or stored is None:
        return given
    try:
        backend = get_backend(stored)
    except (ValueError, BackendUnavailable) as exc:
        raise click.BadParameter(f"the run in {path} trains with it: {exc}", param_hint="--backend") from None
    return dataclasses.replace(given, backend=backend)

@click.command("compare")
@click.option("--methods", default="gd,bfgs,random,tpe", show_default=True,
              help="Comma-separated methods to compare (each with the settings in fastrnn.tuning.compare.METHOD_SETTINGS).")
@click.option("--repeats", type=click.IntRange(1, MAX_COUNT), default=5, show_default=True, help="Seeds per method.")
@click.option("--budget-chars", type=click.IntRange(1, MAX_COUNT), default=None,
              help="Training characters each run may spend (memo hits are free).")
@click.option("--budget-seconds", type=click.FloatRange(min=0, min_open=True), default=None, callback=finite_float,
              help="Instead of --budget-chars: wall-clock seconds each run may spend; the methods are judged by the best "
                   "held-out loss at --target-chars against time (fastrnn.tuning.race).")
@click.option("--target-chars", type=click.IntRange(40, MAX_COUNT), default=None,
              help=f"With --budget-seconds: the training length the answer is judged at [{DEFAULT_TRAIN_CHARS:,}].")
@click.option("--min-chars", type=click.IntRange(40, MAX_COUNT), default=None,
              help="With --budget-seconds: the first rung of the multi-fidelity methods [target / eta**3, at least 40].")
@click.option("--eta", type=click.IntRange(2, MAX_COUNT), default=3, show_default=True,
              help="With --budget-seconds: the rungs' growth factor (multi-fidelity methods).")
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
@common_options
def compare_command(methods, repeats, budget_chars, budget_seconds, target_chars, min_chars, eta, train_chars,
                    heldout_chars, beta, final_factor, threads, out_dir, corpus, backend, seed, dtype, quiet):
    """Tune with several methods from several seeds at equal budget; report the held-out losses."""
    from fastrnn.tuning import compare

    if not is_default("seed"):
        raise click.BadParameter("compare tunes each method from seeds 0 to --repeats - 1, a run file each; "
                                 "drop --seed", param_hint="--seed")
    if (budget_chars is None) == (budget_seconds is None):
        raise click.BadParameter("give one budget: --budget-chars (equal training) or --budget-seconds (equal wall-clock "
                                 "time)", param_hint="--budget-chars")
    dtype = require_backend_dtype(backend, dtype or HeldoutSettings.default_dtype,  # compare tunes the held-out F
                                  given=dtype is not None)
    if budget_seconds is not None:
        _race(methods, repeats, budget_seconds, target_chars, min_chars, eta, train_chars, heldout_chars, beta, threads,
              out_dir, corpus, backend, dtype, quiet)
        return
    for flag, value in (("--target-chars", target_chars), ("--min-chars", min_chars)):
        if value is not None:
            raise click.BadParameter("applies to --budget-seconds (a race at equal time)", param_hint=flag)
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
    make_out_dir(out_dir)
    bars = RunBars(quiet, total=budget_chars, unit="char", unit_scale=True)

    def progress(label, record):
        bars(label, min(record["counters"]["training_chars"], budget_chars),
             f"x={paper_form(record['x'])} F={record['fun']:.4f}")

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


def _race(methods, repeats, budget_seconds, target_chars, min_chars, eta, train_chars, heldout_chars, beta, threads,
          out_dir, corpus, backend, dtype, quiet):
    """`compare --budget-seconds`: every method for the same wall-clock time (fastrnn.tuning.race)."""
    from fastrnn.tuning import race

    if train_chars is not None:
        raise click.BadParameter("a race judges every method at --target-chars; give that instead",
                                 param_hint="--train-chars")
    names = [name.strip() for name in methods.split(",") if name.strip()]
    unknown = [name for name in names if name not in race.race_methods()]
    if not names or unknown:
        raise click.BadParameter(f"unknown method {unknown[0] if unknown else ''!r}; valid: "
                                 f"{', '.join(race.race_methods())}", param_hint="--methods")
    target = DEFAULT_TRAIN_CHARS if target_chars is None else target_chars
    first = max(40, target // eta**3) if min_chars is None else min_chars
    if first > target:
        raise click.BadParameter(f"--min-chars {first:,} is above --target-chars {target:,}: the rungs would not fit",
                                 param_hint="--min-chars")
    for name in names:
        if name in ("tpe", race.ANCHOR):
            try:
                METHOD_TABLE["tpe"].algorithm.check_available()
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--methods") from None
    objective = HeldoutSettings(corpus=corpus, train_chars=target, heldout_chars=heldout_chars, beta=beta, dtype=dtype)
    settings = race.RaceSettings(objective=objective, budget_seconds=budget_seconds, min_chars=first, eta=eta,
                                 threads=threads, backend=backend.name)
    make_out_dir(out_dir)
    command = "fastrnn compare " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["compare"] else "fastrnn compare"
    # one bar over the runs, only for a person at a terminal (not with --quiet), as --budget-chars's
    # bars; made at the first run, so a refusal before any run is the only line on stderr
    bars = []

    def progress(label):
        if not bars:
            bars.append(progress_bar(total=len(names) * repeats, quiet=quiet, desc="race", unit="run"))
        else:
            bars[0].update(1)  # the previous run is done
        bars[0].set_postfix_str(f"{label} ({budget_seconds:g} s)")

    try:
        report = race.race(settings, names, out_dir, repeats=repeats, command=command, progress=progress)
        if bars:
            bars[0].update(1)  # the last run is done too
    except race.NoResult as exc:
        raise click.BadParameter(str(exc), param_hint="--budget-seconds") from None
    except RunFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="--corpus") from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        for bar in bars:
            bar.close()
    click.echo(report)
