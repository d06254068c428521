"""`fastrnn train` (one network, optionally saved) and `fastrnn sample` (text from a saved one)."""

from __future__ import annotations

import copy
import math
import sys
import time

import click
import numpy as np

from fastrnn._validation import MAX_COUNT
from fastrnn.network.checkpoint import CheckpointError, load_model, save_model
from fastrnn.network.corpus import CorpusError
from fastrnn.network.model import STATUS_DIVERGED
from fastrnn.network.sampling import sample
from fastrnn.network.training import PROGRESS_CHUNK, new_state, train
from fastrnn.running.memory import MemoryLimitError

from .common import (
    common_options,
    emit_json,
    finite_float,
)
from .progress import progress_bar


@click.command("train")
@click.option("--hidden", type=click.IntRange(1, MAX_COUNT), default=100, show_default=True, help="Hidden layer size h.")
@click.option("--seq", "seq_length", type=click.IntRange(1, MAX_COUNT), default=25, show_default=True,
              help="Sequence length s (characters of BPTT).")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              callback=finite_float, help="Adagrad learning rate l.")
@click.option("--steps", type=click.IntRange(0, MAX_COUNT), default=10000, show_default=True, help="Training updates.")
@click.option("--save", "save_path", type=click.Path(dir_okay=False), default=None, help="Write the model to this .npz file.")
@common_options
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
            bar.set_postfix_str(f"loss {state.smooth_loss / state.seq_length:.4f} nats/char")
            if save_path is not None:
                last_chunk[0] = copy.deepcopy(state)

        try:
            state = train(corpus, steps=steps, backend=backend, progress=report, state=state)
        except KeyboardInterrupt:
            bar.close()  # the message starts on a line of its own, and the bar is not drawn again after it
            _interrupted_training(last_chunk[0], save_path, corpus)
    seconds = time.perf_counter() - started
    if save_path is not None:
        try:
            save_model(save_path, state, corpus.vocab, corpus.name)
        except CheckpointError as exc:
            raise click.BadParameter(str(exc), param_hint="--save") from None
    emit_json(dict(
        hidden=hidden, seq_length=seq_length, learning_rate=learning_rate, steps=state.steps, seed=seed,
        backend=backend.name, dtype=dtype, corpus=corpus.name,
        # per character, as tune and objective report networks; the smoothed training loss
        nats_per_char=state.smooth_loss / seq_length, bits_per_char=state.smooth_loss / seq_length / math.log(2.0),
        # the paper's (min-char-rnn's) losses: summed over the seq_length characters of an update
        smooth_loss=state.smooth_loss, last_loss=state.last_loss,
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

@click.command("sample")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--chars", "n_chars", type=click.IntRange(0, MAX_COUNT), default=2000, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              callback=finite_float)
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
