"""`fastrnn ngram`: a character n-gram model's held-out loss on F's split, the bar a network must beat."""

from __future__ import annotations

import click

from fastrnn.network.corpus import CorpusError
from fastrnn.network.ngram import DEFAULT_MAX_ORDER, MAX_ORDER, SMOOTHINGS
from fastrnn.objective.reference import ngram_reference
from fastrnn.running.memory import MemoryLimitError

from .common import corpus_option, emit_json, read_corpus
from .objective_options import build_settings, split_flags


@click.command("ngram")
@corpus_option
@split_flags
@click.option("--max-order", type=click.IntRange(1, MAX_ORDER), default=DEFAULT_MAX_ORDER, show_default=True,
              help="Score the n-gram models of orders 1 to this.")
@click.option("--smoothing", type=click.Choice([*SMOOTHINGS, "best"]), default="best", show_default=True,
              help="Interpolated Witten-Bell, modified Kneser-Ney, or both (the best of either is chosen).")
def ngram_command(corpus_path, settings_given, max_order, smoothing):
    """Fit character n-gram models to the training part of the held-out split (the text the tuner's
    networks train on) and print, as JSON, each one's loss on the held-out text the networks are
    scored on (nats and bits per character), and the best order and smoothing, chosen on that text."""
    settings = build_settings("heldout", settings_given, read_corpus(corpus_path), seed=0, dtype="float64")
    try:
        reference = ngram_reference(settings, max_order, SMOOTHINGS if smoothing == "best" else (smoothing,))
    except CorpusError as exc:  # the held-out text is too short
        flag = "--heldout-fraction" if settings.heldout is None else "--heldout"
        raise click.BadParameter(str(exc), param_hint=flag) from None
    except MemoryLimitError as exc:
        raise click.UsageError(str(exc)) from None
    emit_json(reference.record())
