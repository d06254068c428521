"""`fastrnn train` (one network: held-out loss as it trains, checkpoints, continuing a saved one) and
`fastrnn sample` (text from a saved model or checkpoint)."""

from __future__ import annotations

import math
import sys

import click
import numpy as np

from fastrnn._validation import MAX_COUNT
from fastrnn.network.checkpoint import CheckpointError, load_model, save_model
from fastrnn.network.model import STATUS_DIVERGED
from fastrnn.network.sampling import sample
from fastrnn.network.session import CurvePoint, TrainingInterrupted, checkpoint_path, score, train_with_evaluations
from fastrnn.network.training import PROGRESS_CHUNK

from .common import (
    common_options,
    emit_json,
    finite_float,
)
from .objective_options import setting_option
from .progress import progress_bar
from .train_inputs import SPLIT_FIELDS, Plan, from_run_plan, new_plan, resume_plan, settle_cooldown

_SPLIT_HELP = dict(
    heldout_fraction="Share of the corpus, at its end, held out (as the tuner splits it) [0.1].",
    heldout="Separate held-out text (then all of --corpus trains).",
    heldout_chars="Characters of held-out text each evaluation reads [20,000].",
)


def split_options(func):
    for name in reversed(SPLIT_FIELDS):
        func = setting_option(name, _SPLIT_HELP[name])(func)
    return func


@click.command("train")
@click.option("--hidden", type=click.IntRange(1, MAX_COUNT), default=100, show_default=True, help="Hidden layer size h.")
@click.option("--seq", "seq_length", type=click.IntRange(1, MAX_COUNT), default=25, show_default=True,
              help="Sequence length s (characters of BPTT).")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              callback=finite_float, help="Adagrad learning rate l.")
@setting_option("train_chars", "Characters of training text to read: ceil(N / s) updates, as the tuner trains "
                "[100,000].")
@click.option("--steps", type=click.IntRange(0, MAX_COUNT), default=None, help="Training updates, instead of --train-chars.")
@split_options
@click.option("--no-heldout", is_flag=True, help="Train on all of the corpus and read no held-out text.")
@click.option("--eval-every", type=click.IntRange(0, MAX_COUNT), default=None, metavar="CHARS",
              help="Score the held-out text every CHARS training characters (0: at the end only) [a tenth of the "
                   "training].")
@click.option("--checkpoint-every", type=click.IntRange(1, MAX_COUNT), default=None, metavar="CHARS",
              help="Write a checkpoint every CHARS training characters (and at the end and on Ctrl-C).")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
              help="Folder of the checkpoints [checkpoints; with --resume: the model's own].")
@click.option("--save", "save_path", type=click.Path(dir_okay=False), default=None, help="Write the model to this .npz file.")
@click.option("--resume", type=click.Path(dir_okay=False), default=None, metavar="MODEL.npz",
              help="Continue a saved model or checkpoint, on its own text and settings, to its target or to "
                   "--train-chars / --steps (counted from its first update).")
@click.option("--cooldown", type=click.FloatRange(0, 1, max_open=True), default=None, callback=finite_float,
              metavar="SHARE",
              help="Decay the learning rate linearly to zero over the last SHARE of the updates this command trains, "
                   "as the tuner's top networks end (in 20 pieces; a checkpoint inside it resumes to its end). "
                   "[default: 0, a constant rate]")
@click.option("--from-run", type=click.Path(dir_okay=False), default=None, metavar="RUN.jsonl",
              help="Train the best trial of a tuning run with the run's settings (its text, split, training length, "
                   "seed, dtype, backend); flags given replace them.")
@common_options
def train_command(save_path, quiet, cooldown, **opts):
    """Train one network as char-rnn does: training and held-out loss per character at intervals
    (progress on stderr), checkpoints named by their held-out loss, continuing any of them
    (--resume); the result as a JSON object on stdout.

    Trained as a tuning trial was (same point, --train-chars, split and seed), the final held-out
    loss is that trial's value, bit for bit; --from-run RUN trains a run's best trial so.
    """
    if save_path is not None and not save_path.endswith(".npz"):
        raise click.BadParameter("model files end in .npz", param_hint="--save")
    opts["save_path"] = save_path
    given = {name: opts.pop(name) for name in SPLIT_FIELDS}
    if opts["resume"] is not None:
        if opts["from_run"] is not None:
            raise click.UsageError("give --from-run (a tuning run's best point) or --resume (a saved model), not both")
        plan = resume_plan(opts, given)
    elif opts["from_run"] is not None:
        plan = from_run_plan(opts, given)
    else:
        plan = new_plan(opts, given)
    settle_cooldown(plan, cooldown)
    state, seq_length = plan.state, plan.state.seq_length
    if plan.from_run is not None and plan.resumed_from is None:
        _from_run_note(plan)
    if plan.resumed_from is not None and state.steps >= plan.target_steps:
        click.echo(f"{plan.resumed_from} has trained its {plan.target_steps:,} updates; give a larger --train-chars "
                   "or --steps to continue it", err=True)
    written: list[str] = []

    def write_checkpoint(current, point):
        path = checkpoint_path(plan.checkpoint_dir, plan.stem, point)
        _save(path, current, plan, point, "--checkpoint-dir")
        written.append(path)

    with progress_bar(total=plan.target_steps * seq_length, initial=state.steps * seq_length, quiet=quiet,
                      desc="training", unit="char", unit_scale=True) as bar:
        def report(current):
            bar.update(current.steps * seq_length - bar.n)
            bar.set_postfix_str(f"train {current.smooth_loss / seq_length:.4f} nats/char")

        def show(point):
            if not bar.disable:
                bar.write(_progress_line(point, plan.heldout is not None), file=sys.stderr)  # tqdm's default: stdout

        try:
            curve = train_with_evaluations(
                plan.train, state, plan.target_steps, heldout=plan.heldout, backend=plan.backend,
                eval_every=plan.eval_every, checkpoint_every=plan.checkpoint_every, curve=plan.curve,
                seconds=plan.seconds, progress=report, on_point=show,
                on_checkpoint=write_checkpoint if plan.checkpoint_every else None, cooldown=plan.cooldown)
        except TrainingInterrupted as stop:
            bar.close()  # the message starts on a line of its own, and the bar is not drawn again after it
            _interrupted(stop, plan, save_path, written)
    final = curve[-1] if curve and curve[-1].steps == state.steps else None
    diverged = state.status == STATUS_DIVERGED
    # a diverged network cannot be sampled or continued: it must not take the place of a model
    # already at --save (the one it was resumed from, say)
    saved = save_path if save_path is not None and not diverged else None
    if saved is not None:
        _save(saved, state, plan, final, "--save")
    emit_json(_result(plan, final, curve, saved, written))
    if diverged:
        kept = "" if save_path is None else f"; nothing written to {save_path}"
        click.echo(f"Error: training diverged after {state.steps} updates (non-finite loss or weights){kept}; "
                   "try a smaller --lr", err=True)
        sys.exit(1)


def _from_run_note(plan: Plan) -> None:
    """Say on stderr when the network trained is not the one the run's value measured."""
    trial, state = plan.from_run, plan.state
    reasons = []
    if trial["objective"] != "heldout":
        reasons.append("the run's values are the paper's training loss (summed over a sequence), not a held-out "
                       "loss")
    if not trial["whole"]:
        reasons.append(f"the trial's point {trial['point']} lies between whole h and s (its value interpolates "
                       f"networks); this one is ({state.hidden}, {state.seq_length}, {state.learning_rate!r})")
    if trial["beta"] > 1 or trial["noise"] != "common":
        reasons.append(f"the trial's value averages {trial['beta']} network(s) ({trial['noise']} noise); this is "
                       f"one, from seed {state.seed}")
    changed = [f"{name} {ours:,}" if isinstance(ours, int) else f"{name} {ours}"
               for name, ours, theirs in (("updates", plan.target_steps, trial["steps"]), ("seed", state.seed,
                                          trial["seed"]), ("dtype", state.dtype.name, trial["dtype"]))
               if ours != theirs]
    if changed:
        reasons.append(f"it trains with {', '.join(changed)} (the run's trials: {trial['steps']:,} updates, seed "
                       f"{trial['seed']}, {trial['dtype']})")
    if plan.cooldown is not None:
        reasons.append(f"its learning rate decays over its last {plan.cooldown.end - plan.cooldown.start:,} updates "
                       "(the run's trials trained at a constant rate)")
    if reasons:
        click.echo(f"note: this network's held-out loss is not the trial's {trial['value']!r}: " + "; ".join(reasons),
                   err=True)


def _progress_line(point: CurvePoint, heldout: bool) -> str:
    line = (f"{point.chars:>13,} chars {point.steps:>10,} updates   train {point.train_nats:.4f} nats/char "
            f"({point.train_nats / math.log(2.0):.4f} bits)")
    if heldout and point.heldout_nats is not None:
        line += f"   held-out {point.heldout_nats:.4f} nats/char ({point.heldout_nats / math.log(2.0):.4f} bits)"
    return line


def _save(path: str, state, plan: Plan, point, flag: str) -> None:
    try:
        save_model(path, state, plan.vocab, plan.source.name, plan.info(point))
    except CheckpointError as exc:
        where = "; the checkpoints written so far are kept (continue with --resume)" if flag == "--checkpoint-dir" \
            else ""
        raise click.BadParameter(f"{exc}{where}", param_hint=flag) from None


def _result(plan: Plan, final: CurvePoint | None, curve, save_path, written) -> dict:
    state, seq_length = plan.state, plan.state.seq_length
    heldout = None if final is None else final.heldout_nats
    return dict(
        hidden=state.hidden, seq_length=seq_length, learning_rate=state.learning_rate, steps=state.steps,
        train_chars=state.steps * seq_length, seed=state.seed, backend=plan.backend.name, dtype=state.dtype.name,
        corpus=plan.source.name,
        heldout=None if plan.heldout is None else plan.heldout.name,
        heldout_chars=None if plan.heldout is None else len(plan.heldout),
        # the held-out loss per character after the last update (a tuning trial's value)
        heldout_nats_per_char=heldout, heldout_bits_per_char=None if heldout is None else heldout / math.log(2.0),
        # per character, as tune and objective report networks; the smoothed training loss
        nats_per_char=state.smooth_loss / seq_length, bits_per_char=state.smooth_loss / seq_length / math.log(2.0),
        # the paper's (min-char-rnn's) losses: summed over the seq_length characters of an update
        smooth_loss=state.smooth_loss, last_loss=state.last_loss,
        status="diverged" if state.status == STATUS_DIVERGED else "ok",
        seconds=round(curve[-1].seconds if curve else plan.seconds, 4),
        curve=[point.record() for point in curve], saved=save_path, checkpoints=written,
        resumed_from=plan.resumed_from, from_run=plan.from_run,
        cooldown=None if plan.cooldown is None else plan.cooldown.as_list(),
    )


def _interrupted(stop: TrainingInterrupted, plan: Plan, save_path, written) -> None:
    """Ctrl-C or SIGTERM: the network after its last whole chunk of updates goes to a last checkpoint
    (when checkpointing) and to --save (when given), then exit 130."""
    targets = [save_path] if save_path is not None else []
    if not targets and not plan.checkpoint_every:
        click.echo("Error: interrupted", err=True)
        sys.exit(130)
    if stop.state is None:
        click.echo(f"Error: interrupted before the first {PROGRESS_CHUNK} updates; nothing saved"
                   + (f" to {save_path}" if save_path is not None else ""), err=True)
        sys.exit(130)
    state = stop.state
    plan.curve = stop.curve
    point = CurvePoint(state.steps, state.steps * state.seq_length, state.smooth_loss / state.seq_length,
                       score(state, plan.heldout, plan.backend), stop.seconds)
    if plan.checkpoint_every:
        if not plan.curve or plan.curve[-1].steps != state.steps:
            plan.curve = [*plan.curve, point]
        targets.append(checkpoint_path(plan.checkpoint_dir, plan.stem, point))
    saved = []
    for path in targets:
        try:
            save_model(path, state, plan.vocab, plan.source.name, plan.info(point))
            saved.append(path)
        except CheckpointError as exc:
            click.echo(f"Error: interrupted, and the model could not be saved: {exc}", err=True)
            sys.exit(130)
    click.echo(f"Error: interrupted; the model after {state.steps} updates is saved to {' and '.join(saved)}", err=True)
    sys.exit(130)


@click.command("sample")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--chars", "n_chars", type=click.IntRange(0, MAX_COUNT), default=2000, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              callback=finite_float)
@click.option("--prime", default="", help="Text the network reads before sampling; printed before the sample.")
@click.option("--no-echo", is_flag=True, help="Print the sampled continuation only, not the prime before it.")
@click.option("--from-zero", is_flag=True,
              help="Start from a zero hidden state (reading a newline unless --prime is given) instead of the "
                   "state training ended in.")
@click.option("--seed", type=click.IntRange(0, MAX_COUNT), default=None,
              help="Random seed: the same seed, model and options print the same text [default: fresh].")
def sample_command(model_path, n_chars, temperature, prime, no_echo, from_zero, seed):
    """Print characters sampled from a model saved by `fastrnn train --save` or a checkpoint.

    Sampling continues from the hidden state training ended in, as min-char-rnn does;
    --prime reads text from there first and is printed before the continuation, as char-rnn
    does (--no-echo prints the continuation only); --from-zero starts from a zero state instead.
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
    click.echo(text if no_echo else prime + text)
