"""Held-out loss: how well a trained network predicts text it never trained on.

The network reads the text continuously from a zero hidden state, one character at a time,
with no weight updates::

    h_t = tanh(Wxh[:, x_t] + Whh h_{t-1} + bh),   p_t = softmax(Why h_t + by)

and is charged -log p_t[x_{t+1}] for every t = 0 .. n - 2: n characters give n - 1
predictions. :func:`heldout_loss` reports the mean per prediction in nats (and bits), the
sum, and the count; the sum is accumulated in float64 whatever the weights' precision. A
network with non-finite weights (a diverged run) gets a NaN or infinite loss, which
``HeldoutLoss.finite`` flags.

The backends compute the sum (``Backend.heldout_loss``): the NumPy reference
(``fastrnn.backends.reference.heldout_loss``) and the compiled kernels, which run the training
kernels' forward pass over blocks of 64 steps, so its memory does not grow with the text;
per character it costs a fifth to a half of a training step's (benches/test_scoring.py:
scoring 20,000 characters took 4-9% of training on 100,000).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Sequence

import numpy as np

from ..backends import DEFAULT_BACKEND, Backend, check_backend_dtype, default_threads, get_backend
from .corpus import Corpus
from .model import TrainState, Weights, check_dtype, parameter_count


class HeldoutLoss(NamedTuple):
    """The score of one network on one text."""

    nats: float  # mean cross-entropy per predicted character, in nats
    total: float  # summed cross-entropy, in nats
    predictions: int  # characters predicted: n_chars - 1

    @property
    def bits(self) -> float:
        """Mean cross-entropy per predicted character in bits."""
        return self.nats / math.log(2.0)

    @property
    def finite(self) -> bool:
        """False for a network whose loss is NaN or infinite (non-finite weights)."""
        return math.isfinite(self.total)


class _Network(NamedTuple):
    params: np.ndarray  # flat, float64 or float32 (the layout of fastrnn.network.model)
    hidden: int
    vocab_size: int


def _network(network) -> _Network:
    """A TrainState or a Weights tuple as (flat params, hidden, vocab size), or ValueError."""
    if isinstance(network, TrainState):
        params, hidden, vocab_size = network.params, network.hidden, network.vocab_size
    elif isinstance(network, Weights):
        hidden, vocab_size = network.Whh.shape[0], network.Why.shape[0]
        params = np.concatenate([np.asarray(block).ravel() for block in network])
    else:
        raise ValueError(f"network must be a TrainState or a fastrnn.network.model.Weights tuple, got {type(network).__name__}")
    params = np.asarray(params)
    try:
        dtype = check_dtype(params.dtype)
    except ValueError as exc:
        raise ValueError(f"network weights: {exc}") from None
    if params.shape != (parameter_count(hidden, vocab_size),):
        raise ValueError(f"network weights have shape {params.shape}; hidden={hidden}, vocab_size={vocab_size} "
                         f"needs ({parameter_count(hidden, vocab_size)},)")
    return _Network(np.ascontiguousarray(params, dtype=dtype), int(hidden), int(vocab_size))


def _text(text, n_chars, vocab_size: int) -> np.ndarray:
    """The first ``n_chars`` ids of ``text`` (a Corpus or 1-D integer array), checked."""
    if isinstance(text, Corpus):
        if text.vocab_size != vocab_size:
            raise ValueError(f"the corpus has {text.vocab_size} characters but the network reads {vocab_size}; "
                             "score with the corpus (vocabulary) the network was trained on")
        data = text.data
    else:
        data = np.asarray(text)
        if data.ndim != 1 or data.dtype.kind not in "ui":
            raise ValueError(f"text must be a Corpus or a 1-D array of integer character ids, "
                             f"got {data.dtype} of shape {data.shape}")
    if n_chars is None:
        n_chars = len(data)
    elif isinstance(n_chars, bool) or not isinstance(n_chars, numbers.Integral):
        raise ValueError(f"n_chars must be a whole number, got {n_chars!r}")
    if not 2 <= n_chars <= len(data):
        raise ValueError(f"n_chars must lie in [2, {len(data)}] (the text's length; "
                         f"two characters make one prediction), got {n_chars}")
    data = np.ascontiguousarray(data[:n_chars])
    low, high = int(data.min()), int(data.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"text holds character ids in [{low}, {high}], outside the network's "
                         f"vocabulary [0, {vocab_size}); encode it with the training corpus")
    return data


def _result(total: float, n_chars: int) -> HeldoutLoss:
    return HeldoutLoss(total / (n_chars - 1), total, n_chars - 1)


def heldout_loss(network, text, n_chars: int | None = None, backend: str | Backend = DEFAULT_BACKEND) -> HeldoutLoss:
    """The cross-entropy of ``network`` (a TrainState or Weights) on the first ``n_chars``
    characters of ``text`` (a Corpus, or an array of ids; default all of it)."""
    runner = get_backend(backend)
    net = _network(network)
    check_backend_dtype(runner, net.params.dtype)
    data = _text(text, n_chars, net.vocab_size)
    return _result(runner.heldout_loss(net.params, net.hidden, net.vocab_size, data), len(data))


def heldout_losses(networks: Sequence, text, n_chars: int | None = None, backend: str | Backend = DEFAULT_BACKEND,
                   threads: int | None = None) -> list[HeldoutLoss]:
    """:func:`heldout_loss` of every network, in parallel on up to ``threads`` threads.

    Each network is scored by one thread, so results equal scoring them one by one. The
    Cython backend scores each precision's networks in one OpenMP call.
    """
    runner = get_backend(backend)
    threads = default_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    nets = [_network(network) for network in networks]
    if not nets:
        return []
    vocab_sizes = {net.vocab_size for net in nets}
    if len(vocab_sizes) > 1:
        raise ValueError(f"the networks read different vocabularies ({sorted(vocab_sizes)}); score them separately")
    for net in nets:
        check_backend_dtype(runner, net.params.dtype)
    data = _text(text, n_chars, nets[0].vocab_size)
    totals = runner.heldout_totals(nets, data, threads)
    return [_result(float(total), len(data)) for total in totals]
