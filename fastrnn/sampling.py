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
) -> str:
    """``n_chars`` characters drawn one at a time from the network's softmax.

    The hidden state starts at zero and first reads ``prime`` (every character must be in
    ``vocab``); without a prime it reads a newline (or the first vocabulary character), as if
    at the start of a speech. ``temperature`` < 1 sharpens the distribution, > 1 flattens it.
    The returned text does not include the prime.
    """
    if n_chars < 0:
        raise ValueError(f"the number of characters must be >= 0, got {n_chars}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    index = {c: i for i, c in enumerate(vocab)}
    unknown = sorted({c for c in prime if c not in index})
    if unknown:
        raise ValueError(f"the prime text has characters the model never saw: {''.join(unknown)!r}")
    Wxh, Whh, Why, bh, by = weights
    rng = np.random.default_rng(seed)
    h = np.zeros(Whh.shape[0])
    context = prime or ("\n" if "\n" in index else vocab[0])
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
