"""Splitting a corpus into training text and held-out text, for the held-out objective.

The corpus is split once: its first ``1 - fraction`` trains, its last ``fraction`` is held out
(or the held-out text is a separate file, and all of the corpus trains). Both are encoded over
one vocabulary, the sorted characters of all the text, so a network can be scored on held-out
characters it never trained on (it then predicts them badly, as it should). Networks read the
held-out text's first ``heldout_chars`` characters.
"""

from __future__ import annotations

from typing import NamedTuple

from ..network.corpus import Corpus, CorpusError, load_corpus

DEFAULT_HELDOUT_FRACTION = 0.1
DEFAULT_HELDOUT_CHARS = 20_000
#: Shorter held-out text measures too little to rank networks.
MIN_HELDOUT_CHARS = 1_000


class HeldoutSplit(NamedTuple):
    train: Corpus
    heldout: Corpus
    #: The share of the corpus held out, or None when the held-out text is a separate file.
    fraction: float | None


def split_heldout(corpus: Corpus, fraction: float = DEFAULT_HELDOUT_FRACTION, heldout: Corpus | str | None = None,
                  heldout_chars: int = DEFAULT_HELDOUT_CHARS) -> HeldoutSplit:
    """Training and held-out text (see the module docstring); ValueError naming the rule."""
    if isinstance(heldout_chars, bool) or not isinstance(heldout_chars, int) or heldout_chars < MIN_HELDOUT_CHARS:
        raise ValueError(f"heldout_chars must be a whole number >= {MIN_HELDOUT_CHARS}, got {heldout_chars!r}")
    if heldout is None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 0.5:
            raise ValueError(f"the held-out fraction must lie in (0, 0.5], got {fraction!r}")
        cut = len(corpus.text) - int(round(len(corpus.text) * fraction))
        train_text, heldout_text = corpus.text[:cut], corpus.text[cut:]
        heldout_name = f"{corpus.name} (last {fraction:.0%})"
        train_name = f"{corpus.name} (first {1 - fraction:.0%})"
        vocab = corpus.vocab
    else:
        heldout_corpus = heldout if isinstance(heldout, Corpus) else load_corpus(heldout)
        train_text, heldout_text = corpus.text, heldout_corpus.text
        heldout_name, train_name, fraction = heldout_corpus.name, corpus.name, None
        vocab = tuple(sorted(set(corpus.vocab) | set(heldout_corpus.vocab)))
    heldout_text = heldout_text[:heldout_chars]
    if heldout is not None and heldout_text in train_text:
        raise CorpusError(f"the held-out text ({heldout_name}) is part of the training text ({train_name}): a loss on it "
                          "measures memory, not what the network learnt; give --heldout a text --corpus does not "
                          "contain, or drop --heldout to hold out the end of --corpus")
    if len(heldout_text) < MIN_HELDOUT_CHARS:
        raise CorpusError(f"the held-out text ({heldout_name}) has {len(heldout_text):,} characters; at least "
                          f"{MIN_HELDOUT_CHARS:,} are needed to rank networks: use a longer corpus, a larger "
                          "--heldout-fraction, or --heldout PATH")
    return HeldoutSplit(Corpus.from_text(train_text, train_name, vocab),
                        Corpus.from_text(heldout_text, heldout_name, vocab), fraction)
