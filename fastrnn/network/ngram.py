"""A character n-gram language model: the reference an RNN's held-out loss should beat.

Counts come from the training text's integer codes (:attr:`fastrnn.network.corpus.Corpus.data`)
for every order n = 1 .. N at once, and the model predicts a character w from the n - 1
characters h before it, interpolating each order with the one below (Chen & Goodman, *An
Empirical Study of Smoothing Techniques for Language Modeling*, TR-10-98, Harvard, 1998,
sections 2.5 and 3). The bottom of every chain is the uniform distribution over the vocabulary's
V characters, so every character of the vocabulary, even one never seen in training, has p > 0.
With h' the context h without its first character, and c(hw) the count of the n-gram hw:

* **Witten-Bell** (interpolated)::

      p(w | h) = λ(h) c(hw) / c(h) + (1 - λ(h)) p(w | h'),   λ(h) = c(h) / (c(h) + N1+(h •))

  where c(h) = Σ_w c(hw) and N1+(h •) is the number of distinct characters seen after h.
  Equivalently p = (c(hw) + N1+(h •) p(w | h')) / (c(h) + N1+(h •)).
* **Kneser-Ney** (interpolated, modified: Chen & Goodman's three discounts)::

      p(w | h) = (c(hw) - D(c(hw))) / c(h) + γ(h) p(w | h'),
      γ(h) = (D1 N1(h •) + D2 N2(h •) + D3+ N3+(h •)) / c(h)

  with D(0) = 0, D(1) = D1, D(2) = D2, D(c >= 3) = D3+, and Nr(h •) the number of characters
  seen exactly r times after h (N3+: three times or more). The top order uses the counts c;
  every lower order uses *continuation counts* instead: c(hw) := N1+(• hw), the number of
  distinct characters seen before hw, and c(h) := Σ_w N1+(• hw). The discounts of each order
  (and kind of count) come from its counts of counts n_r (the number of n-grams counted r times)::

      Y = n1 / (n1 + 2 n2),   D_r = r - (r + 1) Y n_{r+1} / n_r   (r = 1, 2, 3; D1 = Y)

  clipped to [:data:`MIN_DISCOUNT`, r] (a ratio with n_r = 0 counts as 0, and Y = 1/2 when
  n1 = n2 = 0), so no count goes negative and every seen context leaves some probability to
  the order below.

A context never followed by a character in training (c(h) = 0) passes its order's whole weight
to the order below. The first characters of a scored text have fewer than n - 1 characters
before them; they are predicted by the model of the highest order their context allows. A text
of n characters gives n - 1 predictions, as a network's held-out loss does
(:mod:`fastrnn.network.scoring`): the first character is read, not predicted.

The model of order n for every n <= N comes out of one fit to order N (Witten-Bell's lower
orders are the lower-order models; Kneser-Ney's continuation counts of order m come from the
(m + 1)-grams), so :func:`ngram_losses` scores every order and smoothing in one pass.

How it is computed: the n-grams of the training text are numbered order by order: an n-gram's
key is (rank of its first n - 1 characters among the (n - 1)-grams) * V + its last character,
and its rank is its index among the sorted distinct keys (``np.unique``), so keys never
overflow whatever V and N are, and a text to score is numbered with ``np.searchsorted`` against
the same keys. Counts, context totals and counts of counts are ``np.bincount`` over ranks: no
Python loop per character. Fitting orders 1 to 8 on tinyshakespeare's first 90% (1M characters)
and scoring both smoothings on 20,000 characters takes about half a second (4 s on the built-in
corpus's 4.3M). The model holds about 72 bytes per distinct n-gram of each order (190 MB for
orders 1 to 8 of the built-in corpus).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from ..running.memory import check_memory

#: The smoothings, as the command line and the records name them.
SMOOTHINGS = ("witten-bell", "kneser-ney")
DEFAULT_MAX_ORDER = 8
#: Highest order fitted: the model grows by about 72 bytes per training character per order.
MAX_ORDER = 16
#: Smallest Kneser-Ney discount: keeps some probability for unseen characters even where the
#: counts of counts are degenerate (a tiny or repetitive text).
MIN_DISCOUNT = 0.01


class _Estimate(NamedTuple):
    """One order's estimate in the shape both smoothings share::

        p(w | h) = scale(h) (c(hw) - discount(c(hw))) + backoff(h) p(w | h')

    Witten-Bell: scale 1 / (c(h) + N1+(h •)), no discount, backoff N1+(h •) scale; Kneser-Ney:
    scale 1 / c(h), backoff γ(h). A context not seen has scale 0 and backoff 1. The arrays end
    with an entry for "not seen" (rank -1)."""

    counts: np.ndarray  # per n-gram rank: c(hw) (or the continuation count), then 0
    discounts: np.ndarray  # [0, D1, D2, D3+], indexed by min(count, 3)
    scale: np.ndarray  # per context rank, then 0
    backoff: np.ndarray  # per context rank, then 1


class _Level(NamedTuple):
    """The n-grams of one length n in the training text; their contexts are the (n - 1)-grams."""

    keys: np.ndarray  # sorted distinct keys; an n-gram's rank is its index here
    witten_bell: _Estimate
    kneser_ney: _Estimate  # with the counts: this order at the top of a model
    kneser_ney_lower: _Estimate | None  # with continuation counts: below a higher order (None at order N)


class NgramModel(NamedTuple):
    """Counts of orders 1 .. ``max_order`` of a training text, ready to score (see the module notes)."""

    vocab_size: int
    max_order: int
    train_chars: int
    levels: tuple  # of _Level, order 1 first


class NgramLoss(NamedTuple):
    """The loss of one model (order, smoothing) on one text."""

    order: int
    smoothing: str
    nats: float  # mean cross-entropy per predicted character, in nats
    predictions: int  # characters predicted: the text's length - 1

    @property
    def bits(self) -> float:
        return self.nats / math.log(2.0)


class NgramChoice(NamedTuple):
    """Every (order, smoothing) scored on one held-out text, and the best."""

    losses: tuple  # of NgramLoss: by smoothing, then order
    best: NgramLoss
    vocab_size: int
    train_chars: int


# -- the public functions: validate, then compute --------------------------------------------------

def fit_ngram(codes, vocab_size: int, max_order: int = DEFAULT_MAX_ORDER) -> NgramModel:
    """Count orders 1 .. ``max_order`` of ``codes`` (a training text's codes, in [0, vocab_size))."""
    vocab_size = _check_count("vocab_size", vocab_size, 1, None)
    max_order = _check_count("max_order", max_order, 1, MAX_ORDER)
    codes = _check_codes("the training text", codes, vocab_size, minimum_length=1)
    check_memory(_fit_bytes(len(codes), vocab_size, max_order), f"an n-gram model of order {max_order}",
                 "use a smaller max_order (--max-order)")
    return _fit(codes, vocab_size, max_order)


def ngram_probabilities(model: NgramModel, codes, order: int | None = None, smoothing: str = "kneser-ney") -> np.ndarray:
    """The probability of each character of ``codes`` given the characters before it (at most
    ``order - 1`` of them; ``order`` defaults to the model's); the first is given none."""
    order, smoothing = _check_model_order_smoothing(model, order, smoothing)
    codes = _check_codes("the text", codes, model.vocab_size, minimum_length=1)
    return _probabilities_by_order(model, codes[None, :], smoothing, order)[order - 1][0]


def next_char_distribution(model: NgramModel, context, order: int | None = None,
                           smoothing: str = "kneser-ney") -> np.ndarray:
    """p(w | context) for every character w of the vocabulary (the last ``order - 1`` characters of
    ``context`` are used; it may be empty): an array of ``vocab_size`` probabilities summing to 1."""
    order, smoothing = _check_model_order_smoothing(model, order, smoothing)
    context = _check_codes("the context", context, model.vocab_size, minimum_length=0)
    context = context[max(0, len(context) - (order - 1)):] if order > 1 else context[:0]  # what the model reads
    V = model.vocab_size
    rows = np.concatenate([np.broadcast_to(context, (V, len(context))), np.arange(V, dtype=np.int64)[:, None]], axis=1)
    return _probabilities_by_order(model, rows, smoothing, order)[order - 1][:, -1]


def ngram_loss(model: NgramModel, codes, order: int | None = None, smoothing: str = "kneser-ney") -> NgramLoss:
    """Mean cross-entropy per predicted character of ``codes`` under the model (its first
    character is read, not predicted, as in a network's held-out loss)."""
    order, smoothing = _check_model_order_smoothing(model, order, smoothing)
    codes = _check_codes("the scored text", codes, model.vocab_size, minimum_length=2)
    return _losses(model, codes, (smoothing,), top=order)[-1]


def ngram_losses(model: NgramModel, codes, smoothings=SMOOTHINGS) -> tuple:
    """:class:`NgramLoss` of every order 1 .. ``model.max_order`` and smoothing on ``codes``, in one pass."""
    _check_model(model)
    smoothings = _check_smoothings(smoothings)
    codes = _check_codes("the scored text", codes, model.vocab_size, minimum_length=2)
    return _losses(model, codes, smoothings, top=model.max_order)


def choose_ngram(train_codes, heldout_codes, vocab_size: int, max_order: int = DEFAULT_MAX_ORDER,
                 smoothings=SMOOTHINGS) -> NgramChoice:
    """Fit orders 1 .. ``max_order`` on ``train_codes``, score every order and smoothing on
    ``heldout_codes`` and pick the lowest loss (ties: the lower order, then the smoothing listed
    first). Choosing on the text the loss is reported on makes the best slightly optimistic
    (see :mod:`fastrnn.objective.reference`)."""
    smoothings = _check_smoothings(smoothings)
    model = fit_ngram(train_codes, vocab_size, max_order)
    losses = ngram_losses(model, heldout_codes, smoothings)
    best = min(losses, key=lambda loss: (loss.nats, loss.order, smoothings.index(loss.smoothing)))
    return NgramChoice(losses, best, model.vocab_size, model.train_chars)


def _check_count(name, value, minimum, maximum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return int(value)


def _check_codes(what, codes, vocab_size, minimum_length):
    array = np.asarray(codes)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or (array.size == 0 and array.dtype == float)):
        raise ValueError(f"{what} must be a 1-D array of integer character codes (Corpus.data), got "
                         f"{array.ndim}-D {array.dtype}")
    if len(array) < minimum_length:
        raise ValueError(f"{what} must hold at least {minimum_length} characters, got {len(array)}")
    if array.size and (array.min() < 0 or array.max() >= vocab_size):
        raise ValueError(f"{what}'s codes must lie in [0, {vocab_size}) (the vocabulary), got {array.min()} to "
                         f"{array.max()}; encode every text over one vocabulary (Corpus.from_text(text, vocab=...))")
    return array.astype(np.int64)


def _check_model(model):
    if not isinstance(model, NgramModel):
        raise ValueError(f"model must be an NgramModel from fit_ngram, got {type(model).__name__}")


def _check_smoothings(smoothings):
    smoothings = (smoothings,) if isinstance(smoothings, str) else tuple(smoothings)
    unknown = [name for name in smoothings if name not in SMOOTHINGS]
    if unknown or not smoothings or len(set(smoothings)) != len(smoothings):
        raise ValueError(f"smoothings must be distinct names from {', '.join(SMOOTHINGS)}, got {smoothings!r}")
    return smoothings


def _check_model_order_smoothing(model, order, smoothing):
    _check_model(model)
    order = model.max_order if order is None else _check_count("order", order, 1, model.max_order)
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"unknown smoothing {smoothing!r}; valid: {', '.join(SMOOTHINGS)}")
    return order, smoothing


def _fit_bytes(length: int, vocab_size: int, max_order: int) -> int:
    """A bound on the memory of a fit: 72 bytes per distinct n-gram of each order (at most
    V^n and the text's length), and the sort's buffers, about 64 bytes per character."""
    grams = sum(min(length, vocab_size ** n) for n in range(1, max_order + 1))
    return 72 * grams + 64 * length


# -- counting -------------------------------------------------------------------------------------

def _fit(codes: np.ndarray, vocab_size: int, max_order: int) -> NgramModel:
    V, length = vocab_size, len(codes)
    keys_by_order, counts_by_order, continuation_by_order = [], [], []
    previous_rank = None  # rank of the (n - 1)-gram ending at each position, -1 where none ends
    for n in range(1, max_order + 1):
        if n == 1:
            keys = np.arange(V, dtype=np.int64)  # every character, seen or not: one key per code
            counts = np.bincount(codes, minlength=V).astype(np.int64)
            rank = codes.copy()
        else:
            # the n-gram ending at i is the (n - 1)-gram ending at i - 1 followed by codes[i]
            key_at = previous_rank[n - 2:length - 1] * V + codes[n - 1:]
            keys, inverse, counts = np.unique(key_at, return_inverse=True, return_counts=True)
            rank = np.full(length, -1, dtype=np.int64)
            rank[n - 1:] = inverse.reshape(-1)
            # N1+(• g) of the (n - 1)-gram g: the distinct n-grams that end with it (every
            # occurrence of an n-gram writes the same suffix, so the scatter is well defined)
            suffix = np.empty(len(keys), dtype=np.int64)
            suffix[inverse.reshape(-1)] = previous_rank[n - 1:]
            continuation_by_order.append(np.bincount(suffix, minlength=len(keys_by_order[-1])))
        keys_by_order.append(keys)
        counts_by_order.append(counts)
        previous_rank = rank
    continuation_by_order.append(None)  # nothing above the top order
    levels = []
    for n in range(1, max_order + 1):
        keys, counts, continuation = keys_by_order[n - 1], counts_by_order[n - 1], continuation_by_order[n - 1]
        contexts = 1 if n == 1 else len(keys_by_order[n - 2])
        prefix = keys // V
        counts = _with_unseen(counts, 0)  # one array for both smoothings
        levels.append(_Level(
            keys=keys,
            witten_bell=_witten_bell(counts, prefix, contexts),
            kneser_ney=_kneser_ney(counts, prefix, contexts),
            kneser_ney_lower=None if continuation is None else _kneser_ney(_with_unseen(continuation, 0), prefix,
                                                                            contexts),
        ))
    return NgramModel(V, max_order, length, tuple(levels))


def _with_unseen(array: np.ndarray, value) -> np.ndarray:
    """``array`` with one more entry, ``value``, which rank -1 (not seen) indexes."""
    return np.append(array, np.asarray(value, dtype=array.dtype))


def _witten_bell(counts, prefix, contexts) -> _Estimate:
    """``counts``: per n-gram rank, then the 0 of "not seen"; ``prefix``: each n-gram's context rank."""
    seen_counts = counts[:-1]
    total = np.bincount(prefix, weights=seen_counts, minlength=contexts)  # c(h)
    distinct = np.bincount(prefix, weights=seen_counts > 0, minlength=contexts)  # N1+(h •)
    seen = total > 0
    denominator = np.where(seen, total + distinct, 1.0)
    scale = np.where(seen, 1.0 / denominator, 0.0)
    backoff = np.where(seen, distinct / denominator, 1.0)
    return _Estimate(counts, np.zeros(4), _with_unseen(scale, 0.0), _with_unseen(backoff, 1.0))


def _kneser_ney(counts, prefix, contexts) -> _Estimate:
    """As :func:`_witten_bell`; ``counts`` are the counts or the continuation counts."""
    seen_counts = counts[:-1]
    discounts = _discounts(seen_counts)
    total = np.bincount(prefix, weights=seen_counts, minlength=contexts)  # c(h), or Σ_w N1+(• hw)
    left = np.bincount(prefix, weights=discounts[np.minimum(seen_counts, 3)], minlength=contexts)  # γ(h) c(h)
    seen = total > 0
    safe_total = np.where(seen, total, 1.0)
    scale = np.where(seen, 1.0 / safe_total, 0.0)
    backoff = np.where(seen, left / safe_total, 1.0)
    return _Estimate(counts, discounts, _with_unseen(scale, 0.0), _with_unseen(backoff, 1.0))


def _discounts(counts) -> np.ndarray:
    """[0, D1, D2, D3+] from the counts of counts (module notes)."""
    n = np.bincount(np.minimum(counts, 5), minlength=6)[:5].astype(float)  # n[r] for r = 0 .. 4
    y = n[1] / (n[1] + 2 * n[2]) if n[1] + n[2] > 0 else 0.5
    discounts = np.zeros(4)
    for r in (1, 2, 3):
        ratio = n[r + 1] / n[r] if n[r] > 0 else 0.0
        discounts[r] = min(max(r - (r + 1) * y * ratio, MIN_DISCOUNT), r)
    return discounts


# -- scoring --------------------------------------------------------------------------------------

def _lookup(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The rank of each wanted key, or -1 where it is not among ``keys`` (a negative key never is)."""
    if len(keys) == 0:
        return np.full(wanted.shape, -1, dtype=np.int64)
    index = np.searchsorted(keys, wanted)
    clipped = np.minimum(index, len(keys) - 1)
    return np.where(keys[clipped] == wanted, clipped, -1)


def _apply(estimate: _Estimate, gram, context, lower) -> np.ndarray:
    counts = estimate.counts[gram]
    return estimate.scale[context] * (counts - estimate.discounts[np.minimum(counts, 3)]) \
        + estimate.backoff[context] * lower


def _probabilities_by_order(model: NgramModel, rows: np.ndarray, smoothing: str, top: int) -> list:
    """For each order n = 1 .. ``top``: the probability of every ``rows[b, j]`` given
    ``rows[b, :j]`` under the model of order n (each row is a text of its own)."""
    V = model.vocab_size
    uniform = np.full(rows.shape, 1.0 / V)
    lower = uniform  # Kneser-Ney: the chain of continuation-count estimates below the top
    found = []
    previous_rank = None  # rank of the (n - 1)-gram ending at each position, -1 where none ends
    for n in range(1, top + 1):
        level = model.levels[n - 1]
        if n == 1:
            context = np.zeros(rows.shape, dtype=np.int64)
            rank = rows
        else:
            context = np.full(rows.shape, -1, dtype=np.int64)
            context[:, 1:] = previous_rank[:, :-1]
            rank = _lookup(level.keys, np.where(context >= 0, context * V + rows, -1))
        if smoothing == "witten-bell":
            p = _apply(level.witten_bell, rank, context, found[-1] if found else uniform)
        else:
            p = _apply(level.kneser_ney, rank, context, lower)
            if n < top:
                lower = _apply(level.kneser_ney_lower, rank, context, lower)
        if n > 1:  # the first n - 1 characters: the model of the highest order their context allows
            p[:, :n - 1] = found[-1][:, :n - 1]
        found.append(p)
        previous_rank = rank
    return found


def _losses(model: NgramModel, codes: np.ndarray, smoothings, top: int) -> tuple:
    """:class:`NgramLoss` of orders 1 .. ``top`` for each smoothing, in that order."""
    losses = []
    for smoothing in smoothings:
        by_order = _probabilities_by_order(model, codes[None, :], smoothing, top)
        for order, p in enumerate(by_order, start=1):
            nats = float(-np.log(p[0, 1:]).sum() / (len(codes) - 1))
            losses.append(NgramLoss(order, smoothing, nats, len(codes) - 1))
    return tuple(losses)


__all__ = [
    "NgramModel", "NgramLoss", "NgramChoice", "fit_ngram", "ngram_probabilities", "next_char_distribution",
    "ngram_loss", "ngram_losses", "choose_ngram", "SMOOTHINGS", "DEFAULT_MAX_ORDER", "MAX_ORDER", "MIN_DISCOUNT",
]
