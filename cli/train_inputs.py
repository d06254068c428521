"""What `fastrnn train` trains, from its flags, a run file (--from-run) or a saved model (--resume).

Each path ends in a :class:`Plan`: the network's state (new or loaded), the training and held-out
text (split by :class:`~fastrnn.objective.settings.HeldoutSettings`, exactly as the tuner splits),
the target in updates, the evaluation and checkpoint intervals, and what the model files record
(:meth:`Plan.info`) so that a later --resume can check and continue them. Every refusal is a
one-line click error (exit 2) raised before anything is trained or written.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

import click
from click.core import ParameterSource

import fastrnn
from fastrnn.backends import BackendUnavailable, check_backend_dtype, get_backend
from fastrnn.network.checkpoint import CheckpointError, check_writable_folder, load_model
from fastrnn.network.corpus import Corpus, CorpusError
from fastrnn.network.model import STATUS_DIVERGED, TrainState
from fastrnn.network.schedule import Cooldown
from fastrnn.network.session import CurvePoint
from fastrnn.network.training import new_state
from fastrnn.objective.settings import DEFAULT_TRAIN_CHARS, HeldoutSettings, TextRef, settings_from_record
from fastrnn.running.memory import MemoryLimitError
from fastrnn.tuning.halving_store import companion_paths, is_halving_file
from fastrnn.tuning.run_files import RunFileError, read_run
from fastrnn.tuning.trials import best_trial

from .common import require_backend_dtype
from .objective_options import FLAGS, resume_text

#: The split's flags, shared with the tuner (fields of HeldoutSettings).
SPLIT_FIELDS = ("heldout_fraction", "heldout", "heldout_chars")
#: Evaluations over a training when --eval-every is not given.
DEFAULT_EVALUATIONS = 10
DEFAULT_CHECKPOINT_DIR = "checkpoints"


@dataclass
class Plan:
    state: TrainState
    vocab: tuple[str, ...]
    source: Corpus  # the text as given (its name and SHA-256 identify it)
    train: Corpus  # the part the network reads
    heldout: Corpus | None
    settings: HeldoutSettings | None  # the split's settings; None with --no-heldout
    target_steps: int
    eval_every: int
    checkpoint_every: int
    checkpoint_dir: str | None
    stem: str
    backend: object
    curve: list[CurvePoint] = field(default_factory=list)
    seconds: float = 0.0
    from_run: dict | None = None
    resumed_from: str | None = None
    #: The learning rate's decay (--cooldown, or the one a resumed file is inside); None: constant.
    cooldown: Cooldown | None = None

    def info(self, point: CurvePoint | None) -> dict:
        """What a model file records about this training (fastrnn.network.checkpoint)."""
        return dict(
            corpus=self.source.name, corpus_fingerprint=self.source.fingerprint,
            train_fingerprint=self.train.fingerprint,
            objective=None if self.settings is None else self.settings.record(),
            target_steps=self.target_steps, eval_every=self.eval_every, checkpoint_every=self.checkpoint_every,
            checkpoint_stem=self.stem,
            checkpoint_dir=None if self.checkpoint_dir is None else os.path.abspath(self.checkpoint_dir),
            backend=self.backend.name, heldout_nats_per_char=None if point is None else point.heldout_nats,
            curve=[p.record() for p in self.curve],
            seconds=point.seconds if point is not None else self.curve[-1].seconds if self.curve else self.seconds,
            fastrnn_version=fastrnn.__version__, from_run=self.from_run,
            cooldown=None if self.cooldown is None else self.cooldown.as_list(),
        )


def explicit(name: str) -> bool:
    source = click.get_current_context().get_parameter_source(name)
    return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _refuse_with(flags: dict, why: str) -> None:
    for name, flag in flags.items():
        if explicit(name):
            raise click.BadParameter(why, param_hint=flag)


def _updates(chars: int | None, seq_length: int) -> int | None:
    """Characters as updates of ``seq_length`` characters, rounded up (None stays None)."""
    return None if chars is None else -(-chars // seq_length)


def _split(settings: HeldoutSettings, flag: str) -> tuple[Corpus, Corpus]:
    try:
        return settings.split()
    except (CorpusError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def _settings(**values) -> HeldoutSettings:
    try:
        return HeldoutSettings(**values)
    except ValueError as exc:
        message = str(exc)
        hint = "--train-chars" if "train_chars" in message else "--heldout-chars" if "heldout_chars" in message \
            else "--heldout-fraction"
        raise click.BadParameter(message, param_hint=hint) from None


def _text_of(path, flag):
    from fastrnn.network.corpus import load_corpus

    try:
        return load_corpus(path)
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def _split_settings(corpus: Corpus, given: dict, length: dict, seed: int, dtype: str, no_heldout: bool):
    """(settings, training text, held-out text) of a new training."""
    if no_heldout:
        _refuse_with({name: FLAGS[name][0].name for name in SPLIT_FIELDS},
                     "--no-heldout trains on all of the corpus and reads no held-out text; drop one of the two")
        return None, corpus, None
    values = {name: value for name, value in given.items() if value is not None}
    if "heldout" in values:
        values["heldout"] = _text_of(values["heldout"], "--heldout")
    settings = _settings(corpus=corpus, seed=seed, dtype=dtype, **length, **values)
    flag = "--heldout" if "heldout" in values else "--heldout-fraction"
    train, heldout = _split(settings, flag)
    return settings, train, heldout


def _length(steps: int | None, train_chars: int | None) -> dict:
    """The training length as HeldoutSettings takes it (alpha = updates, or characters)."""
    if steps is not None and train_chars is not None:
        raise click.UsageError("give the training length as --train-chars or as --steps (updates), not both")
    if steps:
        return dict(alpha=steps)
    return {} if train_chars is None else dict(train_chars=train_chars)


def _target(settings: HeldoutSettings | None, steps: int | None, length: dict, seq_length: int) -> int:
    """Updates to train: --steps, else the split settings' (ceil(train_chars / s), as the tuner's)."""
    if steps is not None:
        return steps
    if settings is not None:
        return settings.updates(seq_length)
    return length.get("alpha") or _updates(length.get("train_chars", DEFAULT_TRAIN_CHARS), seq_length)


def _intervals(opts: dict, seq_length: int, target: int, stored: dict | None = None) -> tuple[int, int, str | None]:
    """(eval_every, checkpoint_every) in updates and the checkpoint folder, checked writable."""
    stored = stored or {}
    eval_every = _updates(opts["eval_every"], seq_length)
    if eval_every is None:
        eval_every = stored.get("eval_every", max(1, math.ceil(target / DEFAULT_EVALUATIONS)))
    checkpoint_every = _updates(opts["checkpoint_every"], seq_length)
    if checkpoint_every is None:
        checkpoint_every = stored.get("checkpoint_every", 0)
    folder = opts["checkpoint_dir"]
    if folder is not None and not checkpoint_every:
        raise click.BadParameter("give --checkpoint-every too (training characters between checkpoints)",
                                 param_hint="--checkpoint-dir")
    if checkpoint_every and folder is None:
        folder = stored.get("folder", DEFAULT_CHECKPOINT_DIR)
    if folder is not None:
        try:
            folder = check_writable_folder(folder)
        except CheckpointError as exc:
            raise click.BadParameter(str(exc), param_hint="--checkpoint-dir") from None
    if opts["save_path"] is not None:
        try:
            check_writable_folder(os.path.dirname(opts["save_path"]))
        except CheckpointError as exc:
            raise click.BadParameter(str(exc), param_hint="--save") from None
    return eval_every, checkpoint_every, folder


def _stem(save_path: str | None) -> str:
    return "model" if save_path is None else os.path.splitext(os.path.basename(save_path))[0]


def _new_state(corpus, hidden, seq_length, learning_rate, seed, dtype) -> TrainState:
    try:
        return new_state(corpus, hidden, seq_length, learning_rate, seed, dtype)
    except MemoryLimitError as exc:
        raise click.BadParameter(str(exc), param_hint="--hidden") from None
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="--seq") from None


def new_plan(opts: dict, given: dict) -> Plan:
    """A training from the flags alone."""
    corpus, seq_length = opts["corpus"], opts["seq_length"]
    try:
        corpus.require_length(seq_length)
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="--seq") from None
    length = _length(opts["steps"], opts["train_chars"])
    dtype = require_backend_dtype(opts["backend"], opts["dtype"] or HeldoutSettings.default_dtype,  # as a trial trains
                                  given=opts["dtype"] is not None)
    settings, train, heldout = _split_settings(corpus, given, length, opts["seed"], dtype, opts["no_heldout"])
    target = _target(settings, opts["steps"], length, seq_length)
    eval_every, checkpoint_every, folder = _intervals(opts, seq_length, target)
    state = _new_state(train, opts["hidden"], seq_length, opts["learning_rate"], opts["seed"], dtype)
    return Plan(state, corpus.vocab, corpus, train, heldout, settings, target, eval_every, checkpoint_every, folder,
                _stem(opts["save_path"]), opts["backend"])


def _conflict(path: str, what: str):
    def conflict(flag, given, stored):
        raise click.BadParameter(f"{given} conflicts with {stored} stored in {path}; drop {flag} to {what}",
                                 param_hint=flag)

    return conflict


def _backend(name: str, dtype: str, flag: str):
    try:
        backend = get_backend(name)
        check_backend_dtype(backend, dtype)
    except (BackendUnavailable, ValueError) as exc:
        raise click.BadParameter(f"the file trains with it: {exc}", param_hint=flag) from None
    return backend


def from_run_plan(opts: dict, given: dict) -> Plan:
    """The best trial of a run file, trained with the run's objective settings (flags given replace
    them, but --corpus must be the run's text)."""
    path = opts["from_run"]
    if opts["resume"] is not None:
        raise click.UsageError("give --from-run (a tuning run's best point) or --resume (a saved model), not both")
    _refuse_with(dict(hidden="--hidden", seq_length="--seq", learning_rate="--lr"),
                 "--from-run trains the run's best point; drop it, or train a point of your own without --from-run")
    if is_halving_file(path):
        model = companion_paths(path)[1]
        raise click.BadParameter(f"{path} is a successive-halving run: its answer is a trained network, saved as "
                                 f"{model}; continue it with --resume {model}", param_hint="--from-run")
    try:
        run = read_run(path)
    except RunFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--from-run") from None
    trial = best_trial(run)
    if trial is None:
        raise click.BadParameter(f"{path} has no finished trial inside the sane box yet (no network to train); "
                                 "let the run go on, or give --hidden, --seq and --lr", param_hint="--from-run")
    stored = settings_from_record(run.settings["objective"])
    conflict = _conflict(path, "train on the run's text")
    corpus = resume_text(opts["corpus"], stored.corpus, "--corpus", path, conflict)
    values = {name: value for name, value in given.items() if value is not None}
    if "heldout" in values:
        values["heldout"] = _text_of(values["heldout"], "--heldout")
    elif "heldout_fraction" not in values and isinstance(stored, HeldoutSettings) and stored.heldout is not None:
        values["heldout"] = resume_text(None, stored.heldout, "--heldout", path, conflict)
    split = {name: getattr(stored, name) for name in SPLIT_FIELDS if isinstance(stored, HeldoutSettings)}
    split.pop("heldout", None)
    if "heldout" in values:
        split.pop("heldout_fraction", None)
    split.update(values)
    seed = opts["seed"] if explicit("seed") else stored.seed
    dtype = opts["dtype"] if explicit("dtype") else stored.dtype
    backend = opts["backend"] if explicit("backend") else _backend(_run_backend(run), dtype, "--from-run")
    hidden, seq_length, learning_rate = round(trial.x[0]), round(trial.x[1]), trial.x[2]
    if opts["steps"] is None and opts["train_chars"] is None:
        length = dict(alpha=stored.alpha) if stored.alpha is not None else dict(train_chars=stored.train_chars)
    else:
        length = _length(opts["steps"], opts["train_chars"])
    if opts["no_heldout"]:
        settings, train, heldout = _split_settings(corpus, given, length, seed, dtype, True)
    else:
        settings = _settings(corpus=corpus, seed=seed, dtype=dtype, **length, **split)
        train, heldout = _split(settings, "--from-run")
    target = _target(settings, opts["steps"], length, seq_length)
    eval_every, checkpoint_every, folder = _intervals(opts, seq_length, target)
    state = _new_state(train, hidden, seq_length, learning_rate, seed, dtype)
    from_run = dict(run=path, step=trial.step, point=list(trial.x), value=trial.fun, objective=stored.kind,
                    beta=stored.beta, noise=stored.noise, seed=stored.seed, dtype=stored.dtype,
                    steps=stored.updates(seq_length), whole=trial.whole)
    return Plan(state, corpus.vocab, corpus, train, heldout, settings, target, eval_every, checkpoint_every, folder,
                _stem(opts["save_path"]), backend, from_run=from_run)


def _run_backend(run) -> str:
    evaluation = run.settings.get("evaluation") or {}
    return evaluation.get("backend") or run.settings["objective"].get("backend") or "numba"


def resume_plan(opts: dict, given: dict) -> Plan:
    """A saved model (a checkpoint or --save's file), continued where it stopped, on the text it was
    trained on, with its split, its backend unless --backend is given, to its target or to
    --train-chars / --steps (counted from its first update); checkpoints as before (interval and
    folder) unless --checkpoint-every / --checkpoint-dir say otherwise."""
    path = opts["resume"]
    try:
        model = load_model(path)
    except CheckpointError as exc:
        raise click.BadParameter(str(exc), param_hint="--resume") from None
    info, state = model.info, model.state
    if model.format_version < 2 or not info.get("corpus_fingerprint"):
        raise click.BadParameter(f"{path!r} was written by an earlier fastrnn (model format {model.format_version}), "
                                 "which did not record its training text and split: it can be sampled, not "
                                 "continued; train it again with this fastrnn", param_hint="--resume")
    if state.status == STATUS_DIVERGED:
        raise click.BadParameter(f"{path!r} holds a training that diverged; there is nothing to continue",
                                 param_hint="--resume")
    conflict = _conflict(path, "continue the model with its own settings")
    stored_values = dict(hidden=state.hidden, seq_length=state.seq_length, learning_rate=state.learning_rate,
                         dtype=state.dtype.name, seed=state.seed)
    flags = dict(hidden="--hidden", seq_length="--seq", learning_rate="--lr", dtype="--dtype", seed="--seed")
    for name, flag in flags.items():
        if explicit(name) and opts[name] != stored_values[name]:
            conflict(flag, f"{flag} {opts[name]}", stored_values[name])
    corpus = resume_text(opts["corpus"], TextRef(info["corpus"], info["corpus_fingerprint"]), "--corpus", path,
                         conflict)
    if info.get("objective") is None:
        _refuse_with({name: FLAGS[name][0].name for name in SPLIT_FIELDS},
                     f"{path} was trained with --no-heldout: it reads no held-out text")
        settings, train, heldout = None, corpus, None
    else:
        stored = settings_from_record(info["objective"])
        for name, value in given.items():
            if value is not None and FLAGS[name][0].rule != "text" and value != getattr(stored, name):
                conflict(FLAGS[name][0].name, f"{FLAGS[name][0].name} {value}", getattr(stored, name))
        texts = {"corpus": corpus}
        if stored.heldout is not None:
            held = _text_of(given["heldout"], "--heldout") if given.get("heldout") is not None else None
            texts["heldout"] = resume_text(held, stored.heldout, "--heldout", path, conflict)
        settings = dataclasses.replace(stored, **texts)
        train, heldout = _split(settings, "--resume")
    if train.fingerprint != info.get("train_fingerprint") or len(model.vocab) != train.vocab_size:
        raise click.BadParameter(f"{path!r}: the training text split from {corpus.name} is not the one the model "
                                 "was trained on; the file is damaged", param_hint="--resume")
    if opts["no_heldout"] and settings is not None:
        raise click.BadParameter(f"{path} reads held-out text; drop --no-heldout", param_hint="--no-heldout")
    stored_target = int(info.get("target_steps", state.steps))
    if opts["steps"] is not None or opts["train_chars"] is not None:
        _length(opts["steps"], opts["train_chars"])  # not both
        target = opts["steps"] if opts["steps"] is not None else _updates(opts["train_chars"], state.seq_length)
    else:
        target = stored_target
    if target < state.steps:
        flag = "--steps" if opts["steps"] is not None else "--train-chars"
        raise click.BadParameter(f"{path} has already trained {state.steps:,} updates "
                                 f"({state.steps * state.seq_length:,} characters), more than {target:,} updates; "
                                 "the length counts from the model's first update", param_hint=flag)
    stored_intervals = dict(checkpoint_every=int(info.get("checkpoint_every", 0)),
                            folder=info.get("checkpoint_dir") or DEFAULT_CHECKPOINT_DIR)
    if target == stored_target:  # to a new target: a tenth of it, unless --eval-every says
        stored_intervals["eval_every"] = int(info.get("eval_every", 0))
    eval_every, checkpoint_every, folder = _intervals(opts, state.seq_length, target, stored_intervals)
    backend = opts["backend"] if explicit("backend") else _backend(info.get("backend", "numba"), state.dtype.name,
                                                                    "--resume")
    curve = [CurvePoint.from_record(point) for point in info.get("curve", [])]
    stored_cooldown = info.get("cooldown")
    return Plan(state, model.vocab, corpus, train, heldout, settings, target, eval_every, checkpoint_every, folder,
                info.get("checkpoint_stem") or _stem(opts["save_path"]), backend, curve=curve,
                seconds=float(info.get("seconds", 0.0)), from_run=info.get("from_run"), resumed_from=path,
                cooldown=None if stored_cooldown is None else Cooldown(*stored_cooldown))


def settle_cooldown(plan: Plan, share: float | None) -> None:
    """The decay this training follows: a resumed file's, when it stopped inside it (it goes on to
    its end, as the training that was stopped would have), else the last ``share`` (--cooldown) of
    the updates this command trains, else none (a constant rate)."""
    stored, state = plan.cooldown, plan.state
    if stored is not None and state.steps < stored.end:
        where = (f"{plan.resumed_from} stopped inside a learning-rate cooldown (updates {stored.start:,} to "
                 f"{stored.end:,})")
        if share is not None:
            raise click.BadParameter(f"{where}; resume it without --cooldown to finish that one", param_hint="--cooldown")
        if plan.target_steps != stored.end:
            flag = "--steps" if explicit("steps") else "--train-chars"
            raise click.BadParameter(f"{where}; resume it to its end, update {stored.end:,} (drop {flag}), then "
                                     "continue from there", param_hint=flag)
        return
    plan.cooldown = Cooldown.over_last(share or 0.0, state.steps, plan.target_steps)
