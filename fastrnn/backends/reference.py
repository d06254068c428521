"""The plain NumPy reference: min-char-rnn, written to be read, not to be fast.

Every compiled backend is tested against these two functions, and these against finite
differences (``tests/test_reference.py``). :class:`NumpyBackend` serves them as the ``numpy``
backend.
"""

from __future__ import annotations

import numpy as np

from ..network.model import (
    ADAGRAD_EPS,
    BAD_ID_MESSAGE,
    GRADIENT_CLIP,
    SMOOTHING,
    STATUS_DIVERGED,
    TrainState,
    Weights,
    unpack,
    weights_are_finite,
)
from ._base import Backend, KernelResult


def loss_and_gradients(weights: Weights, inputs, targets, hprev):
    """Forward pass and full BPTT over one sequence.

    Returns ``(loss, gradients, h_last)``: the summed cross-entropy, the *unclipped* gradients
    as a ``Weights`` tuple of new arrays, and the last hidden state.
    """
    Wxh, Whh, Why, bh, by = weights
    S = len(inputs)
    hs = {-1: np.asarray(hprev, dtype=float)}
    ps = {}
    loss = 0.0
    for t in range(S):
        hs[t] = np.tanh(Wxh[:, inputs[t]] + Whh @ hs[t - 1] + bh)
        ys = Why @ hs[t] + by
        shifted = ys - ys.max()
        log_normaliser = np.log(np.exp(shifted).sum())
        # log-softmax stays finite where the probability itself would underflow to 0
        loss -= shifted[targets[t]] - log_normaliser
        ps[t] = np.exp(shifted - log_normaliser)

    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(S)):
        dy = ps[t].copy()
        dy[targets[t]] -= 1.0
        dWhy += np.outer(dy, hs[t])
        dby += dy
        dh = Why.T @ dy + dhnext
        dhraw = (1.0 - hs[t] * hs[t]) * dh
        dbh += dhraw
        dWxh[:, inputs[t]] += dhraw
        dWhh += np.outer(dhraw, hs[t - 1])
        dhnext = Whh.T @ dhraw
    return float(loss), Weights(dWxh, dWhh, dWhy, dbh, dby), hs[S - 1]


def train_steps(data: np.ndarray, state: TrainState, n_steps: int) -> None:
    """Advance ``state`` by up to ``n_steps`` Adagrad updates, exactly as min-char-rnn's main loop."""
    S, lr = state.seq_length, state.learning_rate
    weights = unpack(state.params, state.hidden, state.vocab_size)
    memories = unpack(state.memory, state.hidden, state.vocab_size)
    for _ in range(n_steps):
        if state.position + S + 1 >= len(data):
            state.position = 0
            state.hprev = np.zeros_like(state.hprev)
        _check_ids(data[state.position : state.position + S + 1], state.vocab_size)
        inputs = data[state.position : state.position + S]
        targets = data[state.position + 1 : state.position + S + 1]
        loss, grads, state.hprev = loss_and_gradients(weights, inputs, targets, state.hprev)
        if not np.isfinite(loss):
            state.status = STATUS_DIVERGED
            state.last_loss = loss
            return
        state.last_loss = loss
        state.smooth_loss = state.smooth_loss * (1.0 - SMOOTHING) + loss * SMOOTHING
        for param, dparam, mem in zip(weights, grads, memories):
            np.clip(dparam, -GRADIENT_CLIP, GRADIENT_CLIP, out=dparam)
            mem += dparam * dparam
            param -= lr * dparam / np.sqrt(mem + ADAGRAD_EPS)
        state.position += S
        state.steps += 1
    if not weights_are_finite(state.params):
        state.status = STATUS_DIVERGED


def _check_ids(ids: np.ndarray, vocab_size: int) -> None:
    """Refuse ids outside [0, V) (numpy would index from the end for a negative one)."""
    if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(BAD_ID_MESSAGE)


def heldout_loss(weights: Weights, data) -> float:
    """Summed cross-entropy of reading ``data`` continuously from a zero hidden state.

    h_t = tanh(Wxh[:, x_t] + Whh h_{t-1} + bh), p_t = softmax(Why h_t + by); returns the sum
    of -log p_t[x_{t+1}] for t = 0 .. len(data) - 2, accumulated in float64 (NaN or inf when
    the weights are not finite). No weights change: this is the forward pass alone.
    """
    Wxh, Whh, Why, bh, by = (np.asarray(w, dtype=np.float64) for w in weights)
    _check_ids(np.asarray(data), Why.shape[0])
    h = np.zeros(Whh.shape[0])
    loss = 0.0
    for t in range(len(data) - 1):
        h = np.tanh(Wxh[:, data[t]] + Whh @ h + bh)
        ys = Why @ h + by
        shifted = ys - ys.max()
        loss -= shifted[data[t + 1]] - np.log(np.exp(shifted).sum())
    return float(loss)


class NumpyBackend(Backend):
    """The readable reference above, as a backend: float64, one thread (it holds the GIL)."""

    name = "numpy"
    dtypes = ("float64",)

    def version(self) -> str:
        return f"numpy {np.__version__}"

    def _kernel_train_steps(self, data, state, n_steps):
        # The reference advances every field of the state itself (it is min-char-rnn's loop as
        # written); the base class adds steps_done to state.steps, so hand the count back.
        steps_before = state.steps
        train_steps(data, state, n_steps)
        steps_done, state.steps = state.steps - steps_before, steps_before
        return KernelResult(state.position, state.smooth_loss, state.last_loss, steps_done, state.status)

    def _kernel_loss_and_gradients(self, params, hidden, vocab_size, data, start, seq_length, hprev):
        _check_ids(data[start : start + seq_length + 1], vocab_size)
        weights = unpack(params, hidden, vocab_size)
        loss, grads, h_last = loss_and_gradients(
            weights, data[start : start + seq_length], data[start + 1 : start + seq_length + 1], hprev
        )
        return loss, np.concatenate([g.ravel() for g in grads]), h_last

    def _kernel_heldout_loss(self, params, hidden, vocab_size, data):
        return heldout_loss(unpack(params, hidden, vocab_size), data)
