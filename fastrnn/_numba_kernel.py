"""The Numba training kernel: min-char-rnn's step loop compiled, GIL released.

Why it is written this way (measured on the 2-core AVX2 machine this project targets):

- ``error_model="numpy"``: the default Python error model checks every division for zero and
  blocks SIMD in the Adagrad loop (about 4x slower).
- ``fastmath={"reassoc", "contract"}``: lets LLVM vectorise the dot-product reductions and
  fuse multiply-adds; full ``fastmath=True`` adds nothing and would allow assuming no NaNs,
  which the divergence check relies on.
- Weight gradients dWhh and dWhy are formed as matrix products after the BPTT sweep instead
  of one outer product per character, which halves the time at H >= 100.
- The whole step loop runs inside one call: a call costs about 0.3 us per array argument.

The state layout is the one in :mod:`fastrnn.model`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .model import ADAGRAD_EPS, GRADIENT_CLIP, SMOOTHING, STATUS_DIVERGED, STATUS_OK

_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})


@njit(**_JIT)
def _forward_backward(Wxh, Whh, Why, bh, by, data, start, S, hprev, hs, probs, dhraws, grads):
    """Loss of ``data[start:start+S+1]`` and its raw gradients, written into ``grads``.

    ``hs[0]`` receives ``hprev``; ``hs[t + 1]`` is the hidden state after character t.
    Returns the summed cross-entropy loss.
    """
    H = Whh.shape[0]
    V = Why.shape[0]
    loss = 0.0
    for i in range(H):
        hs[0, i] = hprev[i]
    for t in range(S):
        x = data[start + t]
        target = data[start + t + 1]
        h_in = hs[t]
        h_out = hs[t + 1]
        for i in range(H):
            acc = 0.0
            row = Whh[i]
            for j in range(H):
                acc += row[j] * h_in[j]
            h_out[i] = math.tanh(Wxh[i, x] + acc + bh[i])
        p = probs[t]
        y_max = -np.inf
        for v in range(V):
            acc = 0.0
            row = Why[v]
            for j in range(H):
                acc += row[j] * h_out[j]
            acc += by[v]
            p[v] = acc
            if acc > y_max:
                y_max = acc
        y_target = p[target]
        total = 0.0
        for v in range(V):
            e = math.exp(p[v] - y_max)
            p[v] = e
            total += e
        # log-softmax form: finite even where the target's probability underflows to 0
        loss -= (y_target - y_max) - math.log(total)
        inv_total = 1.0 / total
        for v in range(V):
            p[v] *= inv_total

    nWxh = Wxh.size
    nWhh = Whh.size
    nWhy = Why.size
    grads[:] = 0.0
    dWxh = grads[0:nWxh].reshape((H, V))
    dWhh = grads[nWxh:nWxh + nWhh].reshape((H, H))
    dWhy = grads[nWxh + nWhh:nWxh + nWhh + nWhy].reshape((V, H))
    dbh = grads[nWxh + nWhh + nWhy:nWxh + nWhh + nWhy + H]
    dby = grads[nWxh + nWhh + nWhy + H:]

    dh = np.empty(H)
    dhnext = np.zeros(H)
    for t in range(S - 1, -1, -1):
        dy = probs[t]
        dy[data[start + t + 1]] -= 1.0
        for v in range(V):
            dby[v] += dy[v]
        for j in range(H):
            dh[j] = dhnext[j]
        for v in range(V):
            g = dy[v]
            row = Why[v]
            for j in range(H):
                dh[j] += g * row[j]
        h = hs[t + 1]
        dhraw = dhraws[t]
        x = data[start + t]
        for j in range(H):
            d = (1.0 - h[j] * h[j]) * dh[j]
            dhraw[j] = d
            dbh[j] += d
            dWxh[j, x] += d
        for j in range(H):
            dhnext[j] = 0.0
        for i in range(H):
            g = dhraw[i]
            row = Whh[i]
            for j in range(H):
                dhnext[j] += g * row[j]
    # dWhy = dY^T hs[1:], dWhh = dHraw^T hs[:-1], accumulated row by row so the inner loop is
    # a contiguous axpy that vectorises.
    for t in range(S):
        dy = probs[t]
        h = hs[t + 1]
        for v in range(V):
            g = dy[v]
            row = dWhy[v]
            for j in range(H):
                row[j] += g * h[j]
        dhraw = dhraws[t]
        h = hs[t]
        for i in range(H):
            g = dhraw[i]
            row = dWhh[i]
            for j in range(H):
                row[j] += g * h[j]
    return loss


@njit(**_JIT)
def _views(params, H, V):
    nWxh = H * V
    nWhh = H * H
    nWhy = V * H
    Wxh = params[0:nWxh].reshape((H, V))
    Whh = params[nWxh:nWxh + nWhh].reshape((H, H))
    Why = params[nWxh + nWhh:nWxh + nWhh + nWhy].reshape((V, H))
    bh = params[nWxh + nWhh + nWhy:nWxh + nWhh + nWhy + H]
    by = params[nWxh + nWhh + nWhy + H:]
    return Wxh, Whh, Why, bh, by


@njit(**_JIT)
def loss_and_gradients(params, H, V, data, start, S, hprev):
    """One step's loss, raw gradients (flat, like ``params``) and last hidden state."""
    Wxh, Whh, Why, bh, by = _views(params, H, V)
    hs = np.empty((S + 1, H))
    probs = np.empty((S, V))
    dhraws = np.empty((S, H))
    grads = np.empty_like(params)
    loss = _forward_backward(Wxh, Whh, Why, bh, by, data, start, S, hprev, hs, probs, dhraws, grads)
    return loss, grads, hs[S].copy()


@njit(**_JIT)
def train_steps(data, H, V, S, lr, n_steps, params, memory, hprev, position, smooth_loss):
    """Advance one run by up to ``n_steps`` Adagrad updates in place.

    Returns ``(position, smooth_loss, last_loss, steps_done, status)``; ``hprev``, ``params``
    and ``memory`` are updated in place.
    """
    Wxh, Whh, Why, bh, by = _views(params, H, V)
    N = data.shape[0]
    P = params.shape[0]
    hs = np.empty((S + 1, H))
    probs = np.empty((S, V))
    dhraws = np.empty((S, H))
    grads = np.empty(P)
    last_loss = np.nan
    for step in range(n_steps):
        if position + S + 1 >= N:
            position = 0
            hprev[:] = 0.0
        loss = _forward_backward(Wxh, Whh, Why, bh, by, data, position, S, hprev, hs, probs, dhraws, grads)
        last_loss = loss
        if not math.isfinite(loss):
            return position, smooth_loss, last_loss, step, STATUS_DIVERGED
        smooth_loss = smooth_loss * (1.0 - SMOOTHING) + loss * SMOOTHING
        for k in range(P):
            g = grads[k]
            # comparisons, not min/max, so a NaN gradient stays NaN and is caught below
            if g > GRADIENT_CLIP:
                g = GRADIENT_CLIP
            elif g < -GRADIENT_CLIP:
                g = -GRADIENT_CLIP
            m = memory[k] + g * g
            memory[k] = m
            params[k] -= lr * g / math.sqrt(m + ADAGRAD_EPS)
        for i in range(H):
            hprev[i] = hs[S, i]
        position += S
    for k in range(P):
        if not math.isfinite(params[k]):
            return position, smooth_loss, last_loss, n_steps, STATUS_DIVERGED
    return position, smooth_loss, last_loss, n_steps, STATUS_OK
