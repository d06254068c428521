"""The character n-gram reference model (fastrnn.network.ngram) against a slow, plain reference
written from the formulas, hand-computed values and its properties; its split (the tuner's) and
`fastrnn ngram`."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from fastrnn.network.corpus import Corpus, shipped_text
from fastrnn.network.ngram import (
    MIN_DISCOUNT,
    SMOOTHINGS,
    choose_ngram,
    fit_ngram,
    next_char_distribution,
    ngram_loss,
    ngram_losses,
    ngram_probabilities,
)
from fastrnn.objective.function import Objective
from fastrnn.objective.reference import ngram_reference
from fastrnn.objective.settings import HeldoutSettings, PaperSettings

from helpers import assert_one_line_error, invoke, synthetic_text


class PlainNgram:
    """Both smoothings straight from their formulas (fastrnn.network.ngram's module notes), with
    dictionaries of n-gram tuples and a recursion per probability: slow, and easy to check by eye."""

    def __init__(self, codes, vocab_size, max_order):
        codes = [int(c) for c in codes]
        self.V = vocab_size
        self.counts = {n: Counter(tuple(codes[i:i + n]) for i in range(len(codes) - n + 1))
                       for n in range(1, max_order + 1)}
        # N1+(• g): the distinct characters seen before g
        self.continuation = {n: Counter(gram[1:] for gram in self.counts[n + 1]) for n in range(1, max_order)}

    def count(self, gram, top):
        table = self.counts if top else self.continuation
        return table[len(gram)].get(gram, 0)

    def discounts(self, order, top):
        table = self.counts if top else self.continuation
        n = Counter(table[order].values())
        y = n[1] / (n[1] + 2 * n[2]) if n[1] + n[2] else 0.5
        found = [0.0]
        for r in (1, 2, 3):
            ratio = n[r + 1] / n[r] if n[r] else 0.0
            found.append(min(max(r - (r + 1) * y * ratio, MIN_DISCOUNT), r))
        return found

    def witten_bell(self, w, h):
        lower = 1 / self.V if not h else self.witten_bell(w, h[1:])
        following = [self.count(h + (v,), True) for v in range(self.V)]
        total, distinct = sum(following), sum(c > 0 for c in following)
        if total == 0:
            return lower
        return (following[w] + distinct * lower) / (total + distinct)

    def kneser_ney(self, w, h, top=True):
        lower = 1 / self.V if not h else self.kneser_ney(w, h[1:], top=False)
        following = [self.count(h + (v,), top) for v in range(self.V)]
        total = sum(following)
        if total == 0:
            return lower
        D = self.discounts(len(h) + 1, top)
        discount = [D[min(c, 3)] for c in following]
        gamma = sum(discount) / total
        return (following[w] - discount[w]) / total + gamma * lower

    def probability(self, w, h, smoothing):
        return self.witten_bell(w, tuple(h)) if smoothing == "witten-bell" else self.kneser_ney(w, tuple(h))

    def probabilities(self, codes, order, smoothing):
        codes = [int(c) for c in codes]
        return np.array([self.probability(codes[j], codes[max(0, j - order + 1):j], smoothing)
                         for j in range(len(codes))])


def _codes(text, vocab):
    return Corpus.from_text(text, vocab=tuple(vocab)).data


def _random_codes(rng, length, used, vocab_size):
    """Markov-ish codes over ``used`` of ``vocab_size`` characters, so that higher orders matter."""
    codes = [int(rng.integers(used))]
    for _ in range(length - 1):
        codes.append((codes[-1] * 3 + int(rng.integers(2))) % used if rng.random() < 0.7 else int(rng.integers(used)))
    return np.array(codes, dtype=np.int64)


SMALL_TEXTS = [
    ("abracadabra", "abcdrz", 4),
    ("aab", "abc", 3),
    ("mississippi river", " eimprsvx", 5),
]


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("text, vocab, max_order", SMALL_TEXTS)
def test_probabilities_match_the_plain_reference_on_small_texts(text, vocab, max_order, smoothing):
    codes = _codes(text, vocab)
    model, plain = fit_ngram(codes, len(vocab), max_order), PlainNgram(codes, len(vocab), max_order)
    scored = np.concatenate([codes[::-1], np.arange(len(vocab))])  # seen, unseen and unseen-character contexts
    for order in range(1, max_order + 1):
        np.testing.assert_allclose(ngram_probabilities(model, scored, order, smoothing),
                                   plain.probabilities(scored, order, smoothing), rtol=1e-12, atol=0)


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probabilities_match_the_plain_reference_on_random_texts(seed, smoothing):
    rng = np.random.default_rng(seed)
    vocab_size, max_order = 6, 5
    train = _random_codes(rng, 400, vocab_size - 1, vocab_size)  # the last character never trains
    scored = np.concatenate([_random_codes(rng, 150, vocab_size, vocab_size), [vocab_size - 1] * 3])
    model, plain = fit_ngram(train, vocab_size, max_order), PlainNgram(train, vocab_size, max_order)
    for order in range(1, max_order + 1):
        np.testing.assert_allclose(ngram_probabilities(model, scored, order, smoothing),
                                   plain.probabilities(scored, order, smoothing), rtol=1e-12, atol=0)


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_every_conditional_distribution_sums_to_one_over_the_vocabulary(smoothing):
    rng = np.random.default_rng(7)
    vocab_size = 9
    train = _random_codes(rng, 3000, vocab_size - 2, vocab_size)
    model = fit_ngram(train, vocab_size, 6)
    contexts = [train[i:i + k] for i, k in zip(rng.integers(0, 2900, 40), rng.integers(0, 8, 40))]
    contexts += [rng.integers(0, vocab_size, k) for k in range(8)] + [[vocab_size - 1] * 3, []]
    for context, order in itertools.product(contexts, range(1, 7)):
        p = next_char_distribution(model, context, order, smoothing)
        assert p.shape == (vocab_size,) and p.min() > 0
        assert math.isclose(p.sum(), 1.0, rel_tol=0, abs_tol=1e-12), (context, order, p.sum())


def test_the_next_character_distribution_is_what_the_text_is_scored_with():
    codes = _codes(synthetic_text(3000), sorted(set(synthetic_text(3000))))
    V = int(codes.max()) + 1
    model = fit_ngram(codes[:2500], V, 5)
    text = codes[2500:2600]
    for smoothing in SMOOTHINGS:
        p = ngram_probabilities(model, text, 5, smoothing)
        for j in (0, 1, 3, 50, 99):
            assert next_char_distribution(model, text[:j], 5, smoothing)[text[j]] == pytest.approx(p[j], rel=1e-14)


# Hand-computed on "abbcccdddd" over the vocabulary a..e (e never seen): a, b, c, d counted 1, 2, 3, 4 times.
HAND_TEXT, HAND_VOCAB = "abbcccdddd", "abcde"


def test_witten_bell_by_hand():
    model = fit_ngram(_codes(HAND_TEXT, HAND_VOCAB), 5, 2)
    # order 1: c = 10 characters, N1+ = 4 distinct: p(w) = (c(w) + 4/5) / 14
    unigram = next_char_distribution(model, [], 1, "witten-bell")
    expected = [Fraction(c * 5 + 4, 70) for c in (1, 2, 3, 4, 0)]
    np.testing.assert_allclose(unigram, [float(f) for f in expected], rtol=1e-15)
    # order 2, after b (followed by b and c once each): (1 + 2 p(c)) / (2 + 2) = (1 + 2 * 19/70) / 4
    after_b = next_char_distribution(model, [1], 2, "witten-bell")
    assert after_b[2] == pytest.approx(float(Fraction(27, 70)), rel=1e-15)
    # after e (never seen as a context): the unigram
    np.testing.assert_allclose(next_char_distribution(model, [4], 2, "witten-bell"), unigram, rtol=1e-15)


def test_kneser_ney_by_hand():
    model = fit_ngram(_codes(HAND_TEXT, HAND_VOCAB), 5, 2)
    # order 1: n1 = n2 = n3 = n4 = 1, so Y = 1/3, D1 = 1/3, D2 = 2 - 3 Y = 1, D3+ = 3 - 4 Y = 5/3;
    # gamma = (1/3 + 1 + 5/3 + 5/3) / 10 = 7/15; p(w) = (c - D(c)) / 10 + 7/15 * 1/5
    unigram = next_char_distribution(model, [], 1, "kneser-ney")
    expected = [Fraction(24, 150), Fraction(29, 150), Fraction(34, 150), Fraction(49, 150), Fraction(14, 150)]
    np.testing.assert_allclose(unigram, [float(f) for f in expected], rtol=1e-15)
    # order 2 after b: bigram counts ab bb bc cd 1, cc 2, dd 3: n1 = 4, n2 = 1, so Y = 2/3 and D1 = 2/3;
    # b is followed by b and c once each: gamma(b) = (2/3 + 2/3) / 2 = 2/3. The continuation counts of
    # b, c, d are 2 each (a only starts the text): n1 = 0, so D2 = 2 and the continuation unigram is
    # uniform. p(c | b) = (1 - 2/3) / 2 + 2/3 * 1/5 = 3/10
    assert next_char_distribution(model, [1], 2, "kneser-ney")[2] == pytest.approx(0.3, rel=1e-15)


def test_a_fit_of_a_higher_order_holds_every_lower_order_model():
    codes = _codes(synthetic_text(5000), sorted(set(synthetic_text(5000))))
    V = int(codes.max()) + 1
    big = fit_ngram(codes[:4000], V, 6)
    for order in range(1, 7):
        small = fit_ngram(codes[:4000], V, order)
        for smoothing in SMOOTHINGS:
            np.testing.assert_array_equal(ngram_probabilities(big, codes[4000:], order, smoothing),
                                          ngram_probabilities(small, codes[4000:], order, smoothing))


def test_losses_of_every_order_in_one_pass_are_each_orders_loss():
    codes = _codes(synthetic_text(8000), sorted(set(synthetic_text(8000))))
    V = int(codes.max()) + 1
    model = fit_ngram(codes[:6000], V, 5)
    losses = ngram_losses(model, codes[6000:])
    assert [(loss.smoothing, loss.order) for loss in losses] == list(itertools.product(SMOOTHINGS, range(1, 6)))
    for loss in losses:
        single = ngram_loss(model, codes[6000:], loss.order, loss.smoothing)
        assert single == loss and loss.predictions == 1999
        p = ngram_probabilities(model, codes[6000:], loss.order, loss.smoothing)
        assert loss.nats == pytest.approx(-np.log(p[1:]).mean(), rel=1e-13)  # the first character is not predicted
        assert loss.bits == pytest.approx(loss.nats / math.log(2), rel=1e-15)


def test_the_order_chosen_has_the_lowest_held_out_loss():
    codes = _codes(synthetic_text(30_000), sorted(set(synthetic_text(30_000))))
    V = int(codes.max()) + 1
    choice = choose_ngram(codes[:27_000], codes[27_000:], V, max_order=8)
    assert len(choice.losses) == 16 and choice.vocab_size == V and choice.train_chars == 27_000
    assert choice.best.nats == min(loss.nats for loss in choice.losses)
    assert 1 < choice.best.order < 8  # this text has structure a few characters long, and not more
    only = choose_ngram(codes[:27_000], codes[27_000:], V, max_order=8, smoothings=["witten-bell"])
    assert {loss.smoothing for loss in only.losses} == {"witten-bell"} and only.best.smoothing == "witten-bell"
    assert only.best.nats == min(loss.nats for loss in choice.losses if loss.smoothing == "witten-bell")


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_the_loss_on_the_training_text_falls_with_the_order(smoothing):
    codes = _codes(synthetic_text(20_000), sorted(set(synthetic_text(20_000))))
    model = fit_ngram(codes, int(codes.max()) + 1, 8)
    nats = [loss.nats for loss in ngram_losses(model, codes, [smoothing])]
    assert all(high < low for low, high in zip(nats, nats[1:])), nats


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_characters_never_seen_in_training_get_a_finite_loss(smoothing):
    vocab = tuple(sorted(set(synthetic_text(5000)) | {"Z", "~"}))
    train, heldout = _codes(synthetic_text(5000), vocab), _codes("ROMEO: Zounds~ ZZ~ the lord", vocab)
    model = fit_ngram(train, len(vocab), 6)
    p = ngram_probabilities(model, heldout, 6, smoothing)
    assert np.all(p > 0) and np.all(np.isfinite(np.log(p)))
    assert p[heldout == vocab.index("Z")].max() < 1 / len(vocab)  # and less likely than a uniform guess
    assert math.isfinite(ngram_loss(model, heldout, 6, smoothing).nats)


@pytest.mark.parametrize("call, message", [
    (lambda: fit_ngram([0, 1, 2], 2), r"codes must lie in \[0, 2\)"),
    (lambda: fit_ngram([], 3), "at least 1 characters"),
    (lambda: fit_ngram([[0, 1]], 3), "1-D array of integer"),
    (lambda: fit_ngram([0.5, 1.0], 3), "1-D array of integer"),
    (lambda: fit_ngram([0, 1], 3, max_order=0), "max_order must be from 1 to 16"),
    (lambda: fit_ngram([0, 1], 3, max_order=True), "max_order must be a whole number"),
    (lambda: fit_ngram([0, 1], 0), "vocab_size must be at least 1"),
    (lambda: ngram_loss(fit_ngram([0, 1], 2, 2), [0]), "at least 2 characters"),
    (lambda: ngram_loss(fit_ngram([0, 1], 2, 2), [0, 1], order=3), "order must be from 1 to 2"),
    (lambda: ngram_loss(fit_ngram([0, 1], 2, 2), [0, 1], smoothing="good-turing"), "unknown smoothing"),
    (lambda: ngram_losses(fit_ngram([0, 1], 2, 2), [0, 1], smoothings=[]), "smoothings must be distinct"),
    (lambda: ngram_loss("model", [0, 1]), "model must be an NgramModel"),
    (lambda: next_char_distribution(fit_ngram([0, 1], 2, 2), [5]), r"context's codes must lie in \[0, 2\)"),
])
def test_bad_input_is_refused_naming_the_rule(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- the reference on F's split, and `fastrnn ngram` ------------------------------------------------

def test_the_reference_trains_and_scores_on_the_texts_of_f(small_corpus):
    settings = HeldoutSettings(corpus=small_corpus, heldout_chars=1500)
    F = Objective(settings)
    reference = ngram_reference(F.definition, max_order=4)
    np.testing.assert_array_equal(reference.train.data, F.corpus.data)  # the networks' training text
    np.testing.assert_array_equal(reference.heldout.data, F.heldout.data)  # and the text they are scored on
    assert len(reference.heldout) == 1500 and reference.best.predictions == 1499
    model = fit_ngram(F.corpus.data, F.corpus.vocab_size, 4)
    assert reference.choice.losses == ngram_losses(model, F.heldout.data)
    record = reference.record()
    assert record["best"] == dict(order=reference.best.order, smoothing=reference.best.smoothing,
                                  nats_per_char=reference.best.nats, bits_per_char=reference.best.bits)
    assert (record["train_chars"], record["scored_chars"], record["heldout_chars"]) == (18_000, 1500, 1500)
    with pytest.raises(ValueError, match="give HeldoutSettings"):
        ngram_reference(PaperSettings(corpus=small_corpus))


def _ngram(args):
    return invoke(["ngram", *args], paper=False)


def test_ngram_prints_every_order_and_the_best_on_the_default_corpus():
    result = _ngram(["--max-order", "2"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["corpus"] == "default" and record["vocab_size"] == 76 and record["heldout_fraction"] == 0.1
    assert record["scored_chars"] == 20_000 and record["predictions"] == 19_999 and record["chosen_on"] == "scored_text"
    assert [(row["smoothing"], row["order"]) for row in record["losses"]] == list(itertools.product(SMOOTHINGS, [1, 2]))
    assert record["best"] == min(record["losses"], key=lambda row: row["nats_per_char"])
    assert all(row["nats_per_char"] < record["uniform_nats_per_char"] for row in record["losses"])


def test_ngram_takes_the_split_flags_of_the_objective(corpus_file, small_corpus, tmp_path):
    result = _ngram(["--corpus", corpus_file, "--heldout-fraction", "0.2", "--heldout-chars", "2000",
                     "--max-order", "3", "--smoothing", "witten-bell"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    expected = ngram_reference(HeldoutSettings(corpus=small_corpus, heldout_fraction=0.2, heldout_chars=2000), 3,
                               ["witten-bell"]).record()
    assert record["losses"] == expected["losses"] and record["best"] == expected["best"]
    assert {row["smoothing"] for row in record["losses"]} == {"witten-bell"} and len(record["losses"]) == 3
    assert record["best"]["bits_per_char"] == pytest.approx(
        record["best"]["nats_per_char"] / math.log(2), rel=1e-15)
    # a separate held-out text, with a character the corpus never has: still a finite loss
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("ROMEO: Zounds!\n" * 100, encoding="utf-8")
    result = _ngram(["--corpus", corpus_file, "--heldout", str(heldout), "--max-order", "3"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["heldout"] == str(heldout) and record["heldout_fraction"] is None
    assert record["train_chars"] == len(small_corpus) and record["scored_chars"] == 1500
    assert all(math.isfinite(row["nats_per_char"]) for row in record["losses"])


@pytest.mark.parametrize("args, fragments", [
    (["--max-order", "0"], ["--max-order"]),
    (["--max-order", "17"], ["--max-order"]),
    (["--smoothing", "good-turing"], ["--smoothing"]),
    (["--heldout-chars", "10"], ["--heldout-chars"]),
    (["--heldout-fraction", "0.7"], ["--heldout-fraction"]),
    (["--heldout-fraction", "nan"], ["--heldout-fraction", "finite"]),
    (["--heldout-chars", "1000", "--heldout-fraction", "0.01"], ["--heldout-fraction", "at least 1,000"]),
    (["--heldout", "missing.txt"], ["--heldout", "does not exist"]),
    (["--beta", "2"], ["No such option"]),
])
def test_ngram_refuses_bad_input_in_one_line(corpus_file, args, fragments):
    assert_one_line_error(_ngram(["--corpus", corpus_file, *args]), *fragments)


def test_ngram_refuses_a_missing_corpus_in_one_line(tmp_path):
    assert_one_line_error(_ngram(["--corpus", str(tmp_path / "none.txt")]), "--corpus", "does not exist")


def test_the_figures_readme_gives_for_tinyshakespeare():
    """README's table: the shipped tinyshakespeare, default split, orders 1 to 8 (half a second)."""
    corpus = Corpus.from_text(shipped_text("tinyshakespeare"), name="tinyshakespeare")
    reference = ngram_reference(HeldoutSettings(corpus=corpus))
    table = {(loss.smoothing, loss.order): round(loss.nats, 3) for loss in reference.choice.losses}
    assert [table["witten-bell", order] for order in range(1, 9)] == [3.348, 2.492, 1.987, 1.684, 1.556, 1.572,
                                                                       1.645, 1.738]
    assert [table["kneser-ney", order] for order in range(1, 9)] == [3.348, 2.493, 1.987, 1.660, 1.491, 1.445,
                                                                      1.435, 1.437]
    assert (reference.best.smoothing, reference.best.order) == ("kneser-ney", 7)
    assert reference.record()["train_chars"] == 1_003_854
