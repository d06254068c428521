"""Generating text from a trained char-RNN (min-char-rnn's ``sample``, with temperature and priming)."""

from __future__ import annotations

import math

import numpy as np

from .model import Weights


def sample(
    weights: Weights,
    vocab: tuple[str, ...],
    n_chars: int,
    *,
    temperature: float = 1.0,
    prime: str = "",
    seed: int | None = None,
    hprev: np.ndarray | None = None,
) -> str:
    """``n_chars`` characters drawn one at a time from the network's softmax.

    As min-char-rnn samples, the network starts from ``hprev``, the hidden state training
    ended in (a saved model's ``state.hprev``): its output there is the prediction of the
    character after the training text, so the first character is drawn from it and each one
    drawn is fed back. A network trained on a long text can depend on that state; started
    from zero it may print garbage. ``prime`` is read first, from that state. With
    ``hprev=None`` the state starts at zero and, without a prime, reads a newline (or the
    first vocabulary character), as if at the start of a speech.

    ``temperature`` < 1 sharpens the distribution, > 1 flattens it. The returned text does not
    include the prime.
    """
    if n_chars < 0:
        raise ValueError(f"the number of characters must be >= 0, got {n_chars}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    index = {c: i for i, c in enumerate(vocab)}
    unknown = dict.fromkeys(c for c in prime if c not in index)  # as typed, each once
    if unknown:
        raise ValueError(f"the prime text has characters the model never saw: {''.join(unknown)!r}")
    Wxh, Whh, Why, bh, by = weights
    if not all(np.isfinite(block).all() for block in weights):
        raise ValueError("the network's weights are not finite (its training diverged); train it with a smaller learning rate")
    hidden = Whh.shape[0]
    rng = np.random.default_rng(seed)
    if hprev is None:
        h = np.zeros(hidden)
        context = prime or ("\n" if "\n" in index else vocab[0])
    else:
        h = np.array(hprev, dtype=float)
        if h.shape != (hidden,):
            raise ValueError(f"hprev has shape {h.shape}; the network's hidden size needs ({hidden},)")
        context = prime
    for c in context:
        h = np.tanh(Wxh[:, index[c]] + Whh @ h + bh)
    out = []
    for _ in range(n_chars):
        logits = (Why @ h + by) / temperature
        p = np.exp(logits - logits.max())
        p /= p.sum()
        ix = int(rng.choice(len(vocab), p=p))
        out.append(vocab[ix])
        h = np.tanh(Wxh[:, ix] + Whh @ h + bh)
    return "".join(out)


def text_loss(weights: Weights, vocab: tuple[str, ...], text: str, hprev: np.ndarray | None = None) -> float:
    """Mean cross-entropy (nats per character) of the network predicting ``text`` from ``hprev``.

    The first character is predicted from ``hprev`` (zero when None), each later one after
    reading the one before it; to measure how well sampled text fits the model that drew it.
    """
    index = {c: i for i, c in enumerate(vocab)}
    unknown = dict.fromkeys(c for c in text if c not in index)  # as they come, each once
    if unknown:
        raise ValueError(f"the text has characters the model never saw: {''.join(unknown)!r}")
    if not text:
        raise ValueError("the text is empty; its loss per character is undefined")
    Wxh, Whh, Why, bh, by = weights
    h = np.zeros(Whh.shape[0]) if hprev is None else np.array(hprev, dtype=float)
    total = 0.0
    for c in text:
        logits = Why @ h + by
        shifted = logits - logits.max()
        total -= shifted[index[c]] - math.log(np.exp(shifted).sum())
        h = np.tanh(Wxh[:, index[c]] + Whh @ h + bh)
    return total / len(text)
