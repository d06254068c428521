"""The Numba training kernel: min-char-rnn's step loop compiled, GIL released.

Why it is written this way (measured; timings on the 2-core AVX-512 dev machine):

- ``error_model="numpy"``: the default Python error model checks every division for zero and
  blocks SIMD in the Adagrad loop (about 4x slower).
- ``fastmath={"reassoc", "contract"}``: lets LLVM vectorise the dot-product reductions and
  fuse multiply-adds; full ``fastmath=True`` adds nothing and would allow assuming no NaNs,
  which the divergence check relies on.
- tanh and exp are computed inline (:func:`_tanh`, :func:`_exp_nonpos`: range reduction by
  ln 2 and a degree-14 Taylor polynomial, within 3 and 1 ulp of libm) so their loops
  vectorise: glibc's tanh costs about 15 ns a call, and was a quarter of the step at H=100.
  Softmax falls back to libm's exp for a step where some logit is more than 708 below the max.
- Only the Whh recurrence is sequential. The outputs y_t = Why h_t + by are formed for all t
  after it (four time steps per pass over a row of Why), and likewise Why^T dy_t before the
  backward sweep. Matrix-vector loops process four rows per pass (one load of the vector
  serves four rows).
- Weight gradients dWhh and dWhy are matrix products formed after the sweep, two output rows
  and four time steps per pass, written (not accumulated) so nothing is zeroed.
- ``train_steps`` writes the gradients of the contiguous block [Whh | Why | bh | by] into one
  buffer and runs one Adagrad loop over it; per-row loops cost a call and a scalar tail each.
- The Wxh gradient is zero except in the columns of the characters in the sequence: only those
  columns are updated (gathered into contiguous buffers so the update vectorises). Skipping a
  zero gradient is bit-exact, p - lr*0/sqrt(m + eps) == p and m + 0 == m, given lr finite and
  >= 0 and m + eps > 0, which is checked on entry (otherwise Wxh is updated densely).
- Loops index with plain loop variables (``a[i, j]``, or views made outside the loop): an index
  like ``off + j`` makes Numba emit a negative-index wraparound select that blocks SIMD.
- The whole step loop runs inside one call: a call costs about 0.3 us per array argument.

The state layout is the one in :mod:`fastrnn.model`.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from .model import ADAGRAD_EPS, GRADIENT_CLIP, SMOOTHING, STATUS_DIVERGED, STATUS_OK

_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})


@intrinsic
def _f64_from_bits(typingctx, bits):
    """Reinterpret an int64 as the float64 with the same bits (vectorises, unlike ldexp)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen


_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so k * _LN2_HI is exact for |k| < 2**11
_LN2_LO = 1.90821492927058770002e-10
_EXP_MIN = -708.0  # below this 2**k would not be a normal number: fall back to libm


@njit(inline="always", **_JIT)
def _expm1_reduced(r):
    """expm1(r) for |r| <= ln(2)/2 to within an ulp: Taylor series to r**14 (error < 1e-17)."""
    q = 1.0 / 87178291200.0
    q = 1.0 / 6227020800.0 + r * q
    q = 1.0 / 479001600.0 + r * q
    q = 1.0 / 39916800.0 + r * q
    q = 1.0 / 3628800.0 + r * q
    q = 1.0 / 362880.0 + r * q
    q = 1.0 / 40320.0 + r * q
    q = 1.0 / 5040.0 + r * q
    q = 1.0 / 720.0 + r * q
    q = 1.0 / 120.0 + r * q
    q = 1.0 / 24.0 + r * q
    q = 1.0 / 6.0 + r * q
    q = 0.5 + r * q
    return r + (r * r) * q


@njit(inline="always", **_JIT)
def _exp_nonpos(x):
    """exp(x) for _EXP_MIN <= x <= 0 (within 1 ulp of libm), NaN for NaN; branch-free."""
    kf = math.floor(x * _INV_LN2 + 0.5)
    r = (x - kf * _LN2_HI) - kf * _LN2_LO
    s = _f64_from_bits((np.int64(kf) + 1023) << 52)  # 2**k
    return s + s * _expm1_reduced(r)


@njit(inline="always", **_JIT)
def _tanh(x):
    """tanh(x) within 3 ulp of libm, NaN for NaN; branch-free so loops over it vectorise.

    tanh|x| = e / (e + 2) with e = expm1(2|x|) = 2**k (expm1(r) + 1) - 1, 2|x| = k ln2 + r.
    """
    y = 2.0 * abs(x)
    if y > 40.0:  # tanh is 1.0 to double precision; a comparison so NaN stays NaN
        y = 40.0
    kf = math.floor(y * _INV_LN2 + 0.5)
    r = (y - kf * _LN2_HI) - kf * _LN2_LO
    s = _f64_from_bits((np.int64(kf) + 1023) << 52)
    e = s * _expm1_reduced(r) + (s - 1.0)
    return math.copysign(e / (e + 2.0), x)


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
def _forward(Wxh, Whh, Why, bh, by, data, start, S, hprev, hs, probs, ex):
    """Loss of ``data[start:start+S+1]``; fills ``hs`` (hs[0] = hprev) and ``probs``."""
    H = Whh.shape[0]
    V = Why.shape[0]
    H4 = H - H % 4
    S4 = S - S % 4
    for i in range(H):
        hs[0, i] = hprev[i]
    # the recurrence: only Whh h feeds the next step; 4 rows of Whh share each load of h
    for t in range(S):
        x = data[start + t]
        for i in range(0, H4, 4):
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            a3 = 0.0
            for j in range(H):
                hj = hs[t, j]
                a0 += Whh[i, j] * hj
                a1 += Whh[i + 1, j] * hj
                a2 += Whh[i + 2, j] * hj
                a3 += Whh[i + 3, j] * hj
            hs[t + 1, i] = Wxh[i, x] + a0 + bh[i]
            hs[t + 1, i + 1] = Wxh[i + 1, x] + a1 + bh[i + 1]
            hs[t + 1, i + 2] = Wxh[i + 2, x] + a2 + bh[i + 2]
            hs[t + 1, i + 3] = Wxh[i + 3, x] + a3 + bh[i + 3]
        for i in range(H4, H):
            a0 = 0.0
            for j in range(H):
                a0 += Whh[i, j] * hs[t, j]
            hs[t + 1, i] = Wxh[i, x] + a0 + bh[i]
        for i in range(H):
            hs[t + 1, i] = _tanh(hs[t + 1, i])
    # outputs y_t = Why h_t + by for all t at once, 4 time steps per pass over a Why row
    for v in range(V):
        b = by[v]
        for t in range(0, S4, 4):
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            a3 = 0.0
            for j in range(H):
                w = Why[v, j]
                a0 += w * hs[t + 1, j]
                a1 += w * hs[t + 2, j]
                a2 += w * hs[t + 3, j]
                a3 += w * hs[t + 4, j]
            probs[t, v] = a0 + b
            probs[t + 1, v] = a1 + b
            probs[t + 2, v] = a2 + b
            probs[t + 3, v] = a3 + b
        for t in range(S4, S):
            a0 = 0.0
            for j in range(H):
                a0 += Why[v, j] * hs[t + 1, j]
            probs[t, v] = a0 + b
    loss = 0.0
    for t in range(S):
        target = data[start + t + 1]
        y_max = -np.inf
        for v in range(V):
            if probs[t, v] > y_max:
                y_max = probs[t, v]
        y_target = probs[t, target]
        total = 0.0
        tiny = False
        for v in range(V):
            d = probs[t, v] - y_max
            tiny |= d < _EXP_MIN
            e = _exp_nonpos(d)
            ex[v] = e
            total += e
        if tiny:  # some probability below 1e-307 (or -inf logits): libm's exp for this step
            total = 0.0
            for v in range(V):
                e = math.exp(probs[t, v] - y_max)
                ex[v] = e
                total += e
        # log-softmax form: finite even where the target's probability underflows to 0
        loss -= (y_target - y_max) - math.log(total)
        inv_total = 1.0 / total
        for v in range(V):
            probs[t, v] = ex[v] * inv_total
    return loss


@njit(**_JIT)
def _backward(Whh, Why, data, start, S, hs, probs, dhs, dhnext):
    """BPTT sweep: turns ``probs`` into dy and fills ``dhs`` with dhraw for every t."""
    H = Whh.shape[0]
    V = Why.shape[0]
    H4 = H - H % 4
    V4 = V - V % 4
    for t in range(S):
        probs[t, data[start + t + 1]] -= 1.0
    # dh_t = Why^T dy_t for all t before the sweep (it does not depend on the recurrence);
    # two time steps and four rows of Why per pass
    S2 = S - S % 2
    for t in range(0, S2, 2):
        u = t + 1
        for j in range(H):
            dhs[t, j] = 0.0
            dhs[u, j] = 0.0
        for v in range(0, V4, 4):
            d0 = probs[t, v]
            d1 = probs[t, v + 1]
            d2 = probs[t, v + 2]
            d3 = probs[t, v + 3]
            e0 = probs[u, v]
            e1 = probs[u, v + 1]
            e2 = probs[u, v + 2]
            e3 = probs[u, v + 3]
            for j in range(H):
                w0 = Why[v, j]
                w1 = Why[v + 1, j]
                w2 = Why[v + 2, j]
                w3 = Why[v + 3, j]
                dhs[t, j] += d0 * w0 + d1 * w1 + d2 * w2 + d3 * w3
                dhs[u, j] += e0 * w0 + e1 * w1 + e2 * w2 + e3 * w3
        for v in range(V4, V):
            d0 = probs[t, v]
            e0 = probs[u, v]
            for j in range(H):
                dhs[t, j] += d0 * Why[v, j]
                dhs[u, j] += e0 * Why[v, j]
    for t in range(S2, S):
        for j in range(H):
            dhs[t, j] = 0.0
        for v in range(0, V4, 4):
            d0 = probs[t, v]
            d1 = probs[t, v + 1]
            d2 = probs[t, v + 2]
            d3 = probs[t, v + 3]
            for j in range(H):
                dhs[t, j] += d0 * Why[v, j] + d1 * Why[v + 1, j] + d2 * Why[v + 2, j] + d3 * Why[v + 3, j]
        for v in range(V4, V):
            d0 = probs[t, v]
            for j in range(H):
                dhs[t, j] += d0 * Why[v, j]
    for j in range(H):
        dhnext[j] = 0.0
    for t in range(S - 1, -1, -1):
        for j in range(H):
            h = hs[t + 1, j]
            dhs[t, j] = (1.0 - h * h) * (dhs[t, j] + dhnext[j])
        if t == 0:
            break
        for j in range(H):
            dhnext[j] = 0.0
        for i in range(0, H4, 4):
            g0 = dhs[t, i]
            g1 = dhs[t, i + 1]
            g2 = dhs[t, i + 2]
            g3 = dhs[t, i + 3]
            for j in range(H):
                dhnext[j] += g0 * Whh[i, j] + g1 * Whh[i + 1, j] + g2 * Whh[i + 2, j] + g3 * Whh[i + 3, j]
        for i in range(H4, H):
            g0 = dhs[t, i]
            for j in range(H):
                dhnext[j] += g0 * Whh[i, j]


@njit(**_JIT)
def _outer(A, B, boff, S, out):
    """out[c, j] = sum_t A[t, c] * B[t + boff, j], i.e. A^T B[boff:boff+S].

    Two output rows and four time steps per pass: each loaded row of B serves two rows of
    ``out``, and each output row is loaded and stored S/4 times.
    """
    R = out.shape[0]
    n = out.shape[1]
    S4 = S - S % 4
    R2 = R - R % 2
    for c in range(0, R2, 2):
        d = c + 1
        t0 = 0
        if S4 > 0:
            g0 = A[0, c]
            g1 = A[1, c]
            g2 = A[2, c]
            g3 = A[3, c]
            f0 = A[0, d]
            f1 = A[1, d]
            f2 = A[2, d]
            f3 = A[3, d]
            for j in range(n):
                b0 = B[boff, j]
                b1 = B[boff + 1, j]
                b2 = B[boff + 2, j]
                b3 = B[boff + 3, j]
                out[c, j] = g0 * b0 + g1 * b1 + g2 * b2 + g3 * b3
                out[d, j] = f0 * b0 + f1 * b1 + f2 * b2 + f3 * b3
            for t in range(4, S4, 4):
                g0 = A[t, c]
                g1 = A[t + 1, c]
                g2 = A[t + 2, c]
                g3 = A[t + 3, c]
                f0 = A[t, d]
                f1 = A[t + 1, d]
                f2 = A[t + 2, d]
                f3 = A[t + 3, d]
                b = boff + t
                for j in range(n):
                    b0 = B[b, j]
                    b1 = B[b + 1, j]
                    b2 = B[b + 2, j]
                    b3 = B[b + 3, j]
                    out[c, j] += g0 * b0 + g1 * b1 + g2 * b2 + g3 * b3
                    out[d, j] += f0 * b0 + f1 * b1 + f2 * b2 + f3 * b3
            t0 = S4
        else:
            g0 = A[0, c]
            f0 = A[0, d]
            for j in range(n):
                out[c, j] = g0 * B[boff, j]
                out[d, j] = f0 * B[boff, j]
            t0 = 1
        for t in range(t0, S):
            g0 = A[t, c]
            f0 = A[t, d]
            b = boff + t
            for j in range(n):
                out[c, j] += g0 * B[b, j]
                out[d, j] += f0 * B[b, j]
    for c in range(R2, R):
        if S4 == 0:
            g0 = A[0, c]
            for j in range(n):
                out[c, j] = g0 * B[boff, j]
            t0 = 1
        else:
            g0 = A[0, c]
            g1 = A[1, c]
            g2 = A[2, c]
            g3 = A[3, c]
            for j in range(n):
                out[c, j] = g0 * B[boff, j] + g1 * B[boff + 1, j] + g2 * B[boff + 2, j] + g3 * B[boff + 3, j]
            for t in range(4, S4, 4):
                g0 = A[t, c]
                g1 = A[t + 1, c]
                g2 = A[t + 2, c]
                g3 = A[t + 3, c]
                b = boff + t
                for j in range(n):
                    out[c, j] += g0 * B[b, j] + g1 * B[b + 1, j] + g2 * B[b + 2, j] + g3 * B[b + 3, j]
            t0 = S4
        for t in range(t0, S):
            g0 = A[t, c]
            b = boff + t
            for j in range(n):
                out[c, j] += g0 * B[b, j]


@njit(**_JIT)
def _adagrad(params, memory, g, lr):
    """Clipped Adagrad update of ``params`` (a view) with gradient ``g``."""
    for j in range(params.shape[0]):
        d = g[j]
        # comparisons, not min/max, so a NaN gradient stays NaN
        if d > GRADIENT_CLIP:
            d = GRADIENT_CLIP
        elif d < -GRADIENT_CLIP:
            d = -GRADIENT_CLIP
        m = memory[j] + d * d
        memory[j] = m
        params[j] -= lr * d / math.sqrt(m + ADAGRAD_EPS)


@njit(**_JIT)
def _column_sum(A, S, out):
    """out[j] = sum over t (last first) of A[t, j]."""
    n = out.shape[0]
    for j in range(n):
        out[j] = A[S - 1, j]
    for t in range(S - 2, -1, -1):
        for j in range(n):
            out[j] += A[t, j]


@njit(**_JIT)
def _wxh_column(dhs, data, start, S, t_last, c, out):
    """out[i] = sum over t <= t_last with x_t == c (last first) of dhraw_t[i]."""
    H = out.shape[0]
    for i in range(H):
        out[i] = dhs[t_last, i]
    for t in range(t_last - 1, -1, -1):
        if data[start + t] == c:
            for i in range(H):
                out[i] += dhs[t, i]


@njit(**_JIT)
def loss_and_gradients(params, H, V, data, start, S, hprev):
    """One step's loss, raw gradients (flat, like ``params``) and last hidden state."""
    Wxh, Whh, Why, bh, by = _views(params, H, V)
    hs = np.empty((S + 1, H), params.dtype)
    probs = np.empty((S, V), params.dtype)
    dhs = np.empty((S, H), params.dtype)
    dhnext = np.empty(H, params.dtype)
    grads = np.zeros_like(params)
    dWxh, dWhh, dWhy, dbh, dby = _views(grads, H, V)
    loss = _forward(Wxh, Whh, Why, bh, by, data, start, S, hprev, hs, probs, np.empty(V, params.dtype))
    _backward(Whh, Why, data, start, S, hs, probs, dhs, dhnext)
    _outer(dhs, hs, 0, S, dWhh)
    _outer(probs, hs, 1, S, dWhy)
    _column_sum(dhs, S, dbh)
    _column_sum(probs, S, dby)
    for t in range(S - 1, -1, -1):
        x = data[start + t]
        for i in range(H):
            dWxh[i, x] += dhs[t, i]
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
    nWxh = H * V
    mWxh = memory[0:nWxh].reshape((H, V))
    hs = np.empty((S + 1, H), params.dtype)
    probs = np.empty((S, V), params.dtype)
    dhs = np.empty((S, H), params.dtype)
    dhnext = np.empty(H, params.dtype)
    ex = np.empty(V, params.dtype)
    # gradients of [Whh | Why | bh | by], contiguous in the layout: one Adagrad loop for all
    G = np.empty(P - nWxh, params.dtype)
    gWhh = G[0:H * H].reshape((H, H))
    gWhy = G[H * H:H * H + V * H].reshape((V, H))
    gbh = G[H * H + V * H:H * H + V * H + H]
    gby = G[H * H + V * H + H:]
    # one column of Wxh: gradient, weights and memory gathered contiguously
    gc = np.empty(H, params.dtype)
    pc = np.empty(H, params.dtype)
    mc = np.empty(H, params.dtype)
    gV = np.empty(V, params.dtype)
    seen = np.zeros(V, np.bool_)
    # Skipping the Wxh columns of characters not in the sequence (gradient exactly 0) is
    # bit-exact when p - lr*0/sqrt(m + eps) == p, i.e. lr finite and >= 0 and m + eps > 0
    # (memory only grows, or turns NaN together with its weight, during the run).
    sparse = lr >= 0.0 and lr < np.inf
    for k in range(nWxh):
        if not memory[k] + ADAGRAD_EPS > 0.0:
            sparse = False
    last_loss = np.nan
    for step in range(n_steps):
        if position + S + 1 >= N:
            position = 0
            hprev[:] = 0.0
        loss = _forward(Wxh, Whh, Why, bh, by, data, position, S, hprev, hs, probs, ex)
        last_loss = loss
        if not math.isfinite(loss):
            return position, smooth_loss, last_loss, step, STATUS_DIVERGED
        smooth_loss = smooth_loss * (1.0 - SMOOTHING) + loss * SMOOTHING
        _backward(Whh, Why, data, position, S, hs, probs, dhs, dhnext)
        # the sweep is done: gradients of Whh, Why, bh, by (contiguous) then one Adagrad pass
        _outer(dhs, hs, 0, S, gWhh)
        _outer(probs, hs, 1, S, gWhy)
        _column_sum(dhs, S, gbh)
        _column_sum(probs, S, gby)
        _adagrad(params[nWxh:], memory[nWxh:], G, lr)
        if sparse:
            for t in range(S - 1, -1, -1):
                c = data[position + t]
                if seen[c]:
                    continue
                seen[c] = True
                _wxh_column(dhs, data, position, S, t, c, gc)
                for i in range(H):
                    pc[i] = Wxh[i, c]
                    mc[i] = mWxh[i, c]
                _adagrad(pc, mc, gc, lr)
                for i in range(H):
                    Wxh[i, c] = pc[i]
                    mWxh[i, c] = mc[i]
            for t in range(S):
                seen[data[position + t]] = False
        else:
            for i in range(H):
                for c in range(V):
                    gV[c] = 0.0
                for t in range(S - 1, -1, -1):
                    gV[data[position + t]] += dhs[t, i]
                _adagrad(Wxh[i], mWxh[i], gV, lr)
        for i in range(H):
            hprev[i] = hs[S, i]
        position += S
    for k in range(P):
        if not math.isfinite(params[k]):
            return position, smooth_loss, last_loss, n_steps, STATUS_DIVERGED
    return position, smooth_loss, last_loss, n_steps, STATUS_OK
