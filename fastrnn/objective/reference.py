"""The n-gram reference on F's own split: the held-out loss a network has to beat.

A character n-gram model (:mod:`fastrnn.network.ngram`: interpolated Witten-Bell and modified
Kneser-Ney) is fitted to exactly the text the tuner's networks train on, the training part of
:meth:`HeldoutSettings.split`, and scored on exactly the text they are scored on: the first
``heldout_chars`` characters of the held-out part, read from its first character, charged for
the n - 1 characters after it, in nats per character. So its loss and F are the same measure of
the same text, and a tuned network whose F is above it predicts that text worse than counting
does.

**The choice of order and smoothing.** Every order 1 .. ``max_order`` and smoothing is scored,
and the best is the one with the lowest loss *on that same held-out text*. That is the rule the
tuner itself follows (its best network is the one with the lowest F on that text), so the two
bests are alike; both are slightly optimistic, since the minimum of several noisy scores is
below the score the chosen model would get on new text. For the n-gram the choice is among a
handful of models whose losses differ by much more than their noise; on tinyshakespeare's
default split, the order chosen on the first 20,000 held-out characters is also the best on each
of the next four slices of 20,000 (README, "The n-gram reference"). The table of every order is
reported beside the best, so the choice can be checked.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

from ..network.corpus import Corpus
from ..network.ngram import DEFAULT_MAX_ORDER, SMOOTHINGS, NgramChoice, NgramLoss, choose_ngram
from .settings import HeldoutSettings


class NgramReference(NamedTuple):
    """The n-gram models scored on F's held-out text (:func:`ngram_reference`)."""

    settings: HeldoutSettings
    train: Corpus
    heldout: Corpus  # the text scored: the first heldout_chars characters of the held-out part
    choice: NgramChoice
    seconds: float  # fitting and scoring

    @property
    def best(self) -> NgramLoss:
        return self.choice.best

    def record(self) -> dict:
        """The JSON object ``fastrnn ngram`` prints (fields in README, "The n-gram reference")."""
        settings = self.settings
        return dict(
            corpus=settings.corpus.name, corpus_fingerprint=settings.corpus_fingerprint,
            heldout=None if settings.heldout is None else settings.heldout.name,
            heldout_fraction=settings.heldout_fraction, heldout_chars=settings.heldout_chars,
            train_text=self.train.name, train_chars=len(self.train),
            scored_text=self.heldout.name, scored_chars=len(self.heldout), predictions=self.best.predictions,
            vocab_size=self.choice.vocab_size, uniform_nats_per_char=math.log(self.choice.vocab_size),
            losses=[_loss_record(loss) for loss in self.choice.losses],
            best=_loss_record(self.best), chosen_on="scored_text", seconds=self.seconds,
        )


def _loss_record(loss: NgramLoss) -> dict:
    return dict(order=loss.order, smoothing=loss.smoothing, nats_per_char=loss.nats, bits_per_char=loss.bits)


def ngram_reference(settings: HeldoutSettings, max_order: int = DEFAULT_MAX_ORDER,
                    smoothings=SMOOTHINGS) -> NgramReference:
    """Fit orders 1 .. ``max_order`` to the training part of ``settings``' split and score every
    order and smoothing on its held-out text (see the module notes). ValueError naming the rule
    for settings without held-out text; CorpusError when the held-out text is too short."""
    if not isinstance(settings, HeldoutSettings):
        raise ValueError("the n-gram reference is scored on held-out text: give HeldoutSettings (the held-out "
                         f"objective's settings), got {type(settings).__name__}")
    settings = settings.loaded()
    train, heldout = settings.split()
    started = time.perf_counter()
    choice = choose_ngram(train.data, heldout.data, train.vocab_size, max_order, smoothings)
    return NgramReference(settings, train, heldout, choice, time.perf_counter() - started)


__all__ = ["NgramReference", "ngram_reference"]
