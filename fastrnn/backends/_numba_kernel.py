"""The Numba training kernel: min-char-rnn's step loop compiled, GIL released.

Why it is written this way (each trick was measured to pay; the figures are in README's
benchmarks and ``fastrnn bench``, not here, where they would go stale):

- ``error_model="numpy"``: the default Python error model checks every division for zero and
  blocks SIMD in the Adagrad loop.
- **The same bits on every CPU.** No fastmath flags: LLVM may neither reorder a sum
  (``reassoc``, which let it split dot products into as many partial sums as the host's vectors
  hold, so AVX2 and AVX-512 machines disagreed) nor fuse a multiply-add by itself
  (``contract``, which depends on the target having FMA). Every order is written here instead:
  dot products and sums in :func:`_dot`'s order (8 lane partial sums of a fixed-width vector
  type, :mod:`._lanes`, then a fixed tree, then the tail); every other loop is elementwise or
  accumulates each output in a fixed order, so vectorising it (at any width) changes nothing;
  every multiply-add is an explicit fused one (``fma``; libm's correctly rounded ``fma`` on a
  CPU without the instruction). ``tests/test_same_bits.py`` compiles the kernel for SSE4.2,
  AVX2 and the host and checks the bits against ``tests/fingerprints.json``. Full
  ``fastmath=True`` would also allow assuming no NaNs, which the divergence check relies on.
- tanh and exp are computed inline (:func:`_tanh`, :func:`_exp_nonpos`: range reduction by
  ln 2 and a degree-14 Taylor polynomial, within 3 and 1 ulp of libm) so their loops
  vectorise: a call of glibc's tanh per element was a large share of a step at H = 100.
  Softmax falls back to libm's exp for a step where some logit is more than 708 below the max.
  2**k comes from float bit tricks, not an int64 conversion (:func:`_f64_pow2` says why).
- Only the Whh recurrence is sequential. The outputs y_t = Why h_t + by are formed for all t
  after it (four time steps per pass over a row of Why; below H = 64 against a transposed copy
  of Why, as in float32), and likewise Why^T dy_t before the backward sweep. Matrix-vector
  loops process four rows per pass (one load of the vector serves four rows).
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
- The whole step loop runs inside one call: every call pays a fixed cost per array argument.

- Precision follows ``params``: float64 (the paper's numerics; results unchanged by the float32
  work) or float32, a separate Numba specialisation in which all array arithmetic is float32
  (constants via :func:`_typed`, float32 tanh/exp with a degree-7 polynomial and an int32 bit
  trick, a probability below the normal range flushed to 0 (:func:`_flushes_tiny_probabilities`),
  ``lr`` rounded once). Only scalars stay float64: the per-step
  loss is summed in float64 from float32 terms (S additions a step) and the smooth loss is
  float64, as in :class:`fastrnn.network.model.TrainState`. At H = 100 the forward's row-dot products
  are dominated by horizontal reductions and j tails, which do not get cheaper in float32, so
  the float32 specialisation computes the Whh recurrence 8 rows per pass (a float32 lane
  vector is one AVX2 register: :func:`_dots8`) and the logits reduction-free against a per-call
  transposed copy of Why (:func:`_outputs_transposed`).

The state layout is the one in :mod:`fastrnn.network.model`.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from ..network.model import ADAGRAD_EPS, BAD_ID_MESSAGE, GRADIENT_CLIP, SMOOTHING, STATUS_BAD_ID, STATUS_DIVERGED, STATUS_OK
from ._lanes import fma, lane_count, lanes_add, lanes_sum, load_lanes, zero_lanes

# No fastmath flags: without ``reassoc`` LLVM keeps every sum in the order written, and without
# ``contract`` it fuses no multiply-add by itself (the kernel's are explicit, :mod:`._lanes`).
_JIT = dict(cache=True, nogil=True, error_model="numpy")


# ---------------------------------------------------------------------------------------------
# Precision. Every kernel is generic over the float type of ``params`` (float64 or float32);
# Numba compiles one specialisation per type. A Python float literal is float64 in Numba and
# promotes float32 arithmetic to float64 (an accumulator ``a = 0.0`` would make the whole dot
# product float64), so the kernels take their constants from :func:`_typed` and the math
# helpers below dispatch on the argument type.


def _typed(like, value):
    """``value`` as the float type of ``like`` (an array or a float scalar); jit-only."""
    raise NotImplementedError("jit-only helper")


def _float_type(like):
    ty = like.dtype if isinstance(like, types.Array) else like
    if ty == types.float64:
        return np.float64
    if ty == types.float32:
        return np.float32
    return None


@overload(_typed, inline="always")
def _typed_overload(like, value):
    nptype = _float_type(like)
    if nptype is None:
        return None

    def impl(like, value):
        return nptype(value)

    return impl


@intrinsic
def _f64_from_bits(typingctx, bits):
    """Reinterpret an int64 as the float64 with the same bits (vectorises, unlike ldexp)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen


@intrinsic
def _f64_bits(typingctx, x):
    """The int64 with the same bits as the float64 ``x`` (vectorises)."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return sig, codegen


@njit(inline="always", **_JIT)
def _f64_pow2(kf):
    """2**kf for a float64 holding an integer in [-1022, 1023].

    Adding 1.5 * 2**52 puts kf in the low bits of the sum's mantissa, so the exponent field is
    formed with 64-bit integer adds and shifts, which AVX2 has; converting kf with int64(kf)
    needs AVX-512's vcvtpd2qq to vectorise, and without it the tanh and exp loops ran scalar.
    """
    return _f64_from_bits((_f64_bits(kf + _ROUND_MAGIC) - _ROUND_MAGIC_BITS + 1023) << 52)


@intrinsic
def _f32_pow2(typingctx, kf):
    """2**kf for a float32 holding an integer in [-126, 127]: the bits (int32(kf) + 127) << 23.

    Done in int32 in one intrinsic (Numba would widen int32 arithmetic to int64) so that a loop
    over it vectorises in float32/int32 lanes.
    """
    if kf != types.float32:
        return None
    sig = types.float32(types.float32)

    def codegen(context, builder, signature, args):
        i32 = llvm_ir.IntType(32)
        k = builder.fptosi(args[0], i32)
        bits = builder.shl(builder.add(k, llvm_ir.Constant(i32, 127)), llvm_ir.Constant(i32, 23))
        return builder.bitcast(bits, llvm_ir.FloatType())

    return sig, codegen


# float64: range reduction by ln 2, degree-14 Taylor polynomial
_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so k * _LN2_HI is exact for |k| < 2**11
_LN2_LO = 1.90821492927058770002e-10
_EXP_MIN = -708.0  # below this 2**k would not be a normal number: fall back to libm
_ROUND_MAGIC = 6755399441055744.0  # 1.5 * 2**52: ulp 1, so integers below 2**51 sit in its low bits
_ROUND_MAGIC_BITS = np.int64(np.float64(_ROUND_MAGIC).view(np.int64))

# float32: the same reduction with float32 constants, degree-7 Taylor polynomial
_F = np.float32
_INV_LN2_F = _F(_INV_LN2)
_LN2_HI_F = _F(0.693145751953125)  # 0x3f317200: k * _LN2_HI_F is exact for |k| < 2**9
_LN2_LO_F = _F(1.4286067653e-06)  # ln 2 - _LN2_HI_F
_EXP_MIN_F = _F(-87.0)  # 2**k is a normal float32 down to k = -126, i.e. x >= -87.3
_HALF_F = _F(0.5)
_ONE_F = _F(1.0)
_TWO_F = _F(2.0)
_TANH_CLAMP_F = _F(20.0)  # 2|x| beyond which tanh is 1.0 to single precision (from 2|x| = 18)
_C3_F, _C4_F, _C5_F, _C6_F, _C7_F = (_F(1.0 / math.factorial(n)) for n in range(3, 8))


@njit(inline="always", **_JIT)
def _expm1_reduced(r):
    """expm1(r) for |r| <= ln(2)/2 to within an ulp: Taylor series to r**14 (error < 1e-17)."""
    q = 1.0 / 87178291200.0
    q = fma(r, q, 1.0 / 6227020800.0)
    q = fma(r, q, 1.0 / 479001600.0)
    q = fma(r, q, 1.0 / 39916800.0)
    q = fma(r, q, 1.0 / 3628800.0)
    q = fma(r, q, 1.0 / 362880.0)
    q = fma(r, q, 1.0 / 40320.0)
    q = fma(r, q, 1.0 / 5040.0)
    q = fma(r, q, 1.0 / 720.0)
    q = fma(r, q, 1.0 / 120.0)
    q = fma(r, q, 1.0 / 24.0)
    q = fma(r, q, 1.0 / 6.0)
    q = fma(r, q, 0.5)
    return fma(r * r, q, r)


@njit(inline="always", **_JIT)
def _exp_nonpos_f64(x):
    """exp(x) for _EXP_MIN <= x <= 0 (within 1 ulp of libm), NaN for NaN; branch-free."""
    kf = np.floor(fma(x, _INV_LN2, 0.5))  # a float: math.floor returns an int64 (see _f64_pow2)
    r = fma(-kf, _LN2_LO, fma(-kf, _LN2_HI, x))
    s = _f64_pow2(kf)
    return fma(s, _expm1_reduced(r), s)


@njit(inline="always", **_JIT)
def _tanh_f64(x):
    """tanh(x) within 3 ulp of libm, NaN for NaN; branch-free so loops over it vectorise.

    tanh|x| = e / (e + 2) with e = expm1(2|x|) = 2**k (expm1(r) + 1) - 1, 2|x| = k ln2 + r.
    """
    y = 2.0 * abs(x)
    if y > 40.0:  # tanh is 1.0 to double precision; a comparison so NaN stays NaN
        y = 40.0
    kf = np.floor(fma(y, _INV_LN2, 0.5))
    r = fma(-kf, _LN2_LO, fma(-kf, _LN2_HI, y))
    s = _f64_pow2(kf)
    e = fma(s, _expm1_reduced(r), s - 1.0)
    return math.copysign(e / (e + 2.0), x)


@njit(inline="always", **_JIT)
def _expm1_reduced_f32(r):
    """expm1(r) for |r| <= ln(2)/2, float32: Taylor series to r**7 (truncation < 2e-8 relative)."""
    q = _C7_F
    q = fma(r, q, _C6_F)
    q = fma(r, q, _C5_F)
    q = fma(r, q, _C4_F)
    q = fma(r, q, _C3_F)
    q = fma(r, q, _HALF_F)
    return fma(r * r, q, r)


@njit(inline="always", **_JIT)
def _exp_nonpos_f32(x):
    """exp(x) in float32 for _EXP_MIN_F <= x <= 0, NaN for NaN; branch-free."""
    kf = np.floor(fma(x, _INV_LN2_F, _HALF_F))
    r = fma(-kf, _LN2_LO_F, fma(-kf, _LN2_HI_F, x))
    s = _f32_pow2(kf)
    return fma(s, _expm1_reduced_f32(r), s)


@njit(inline="always", **_JIT)
def _tanh_f32(x):
    """tanh(x) in float32 (same scheme as :func:`_tanh_f64`), NaN for NaN; branch-free."""
    y = _TWO_F * abs(x)
    if y > _TANH_CLAMP_F:
        y = _TANH_CLAMP_F
    kf = np.floor(fma(y, _INV_LN2_F, _HALF_F))
    r = fma(-kf, _LN2_LO_F, fma(-kf, _LN2_HI_F, y))
    s = _f32_pow2(kf)
    e = fma(s, _expm1_reduced_f32(r), s - _ONE_F)
    return math.copysign(e / (e + _TWO_F), x)


def _tanh(x):
    """tanh in the precision of ``x``; jit-only."""
    raise NotImplementedError("jit-only helper")


def _exp_nonpos(x):
    """exp(x) for x <= 0 down to :func:`_exp_min`, in the precision of ``x``; jit-only."""
    raise NotImplementedError("jit-only helper")


def _exp_min(like):
    """The smallest argument :func:`_exp_nonpos` takes, in the float type of ``like``; jit-only."""
    raise NotImplementedError("jit-only helper")


@overload(_tanh, inline="always")
def _tanh_overload(x):
    if x == types.float64:
        return lambda x: _tanh_f64(x)
    if x == types.float32:
        return lambda x: _tanh_f32(x)
    return None


@overload(_exp_nonpos, inline="always")
def _exp_nonpos_overload(x):
    if x == types.float64:
        return lambda x: _exp_nonpos_f64(x)
    if x == types.float32:
        return lambda x: _exp_nonpos_f32(x)
    return None


def _flushes_tiny_probabilities(like):
    """Whether a probability below the normal range is 0 (float32) or libm's exp (float64); jit-only.

    In float32 a saturated network puts logits about 87 below the max, where exp is subnormal, at
    every step: each product with a subnormal then costs a microcode assist, and training ran 2-3x
    slower. Flushing those probabilities (absolute error < 1.2e-38) keeps them out, as the Cython
    kernel does. Float64, the paper's numerics, keeps libm's value (708 below the max, rarely met).
    """
    raise NotImplementedError("jit-only helper")


@overload(_flushes_tiny_probabilities, inline="always")
def _flushes_tiny_probabilities_overload(like):
    nptype = _float_type(like)
    if nptype is None:
        return None
    flush = nptype is np.float32
    return lambda like: flush


@overload(_exp_min, inline="always")
def _exp_min_overload(like):
    nptype = _float_type(like)
    if nptype is None:
        return None
    bound = nptype(_EXP_MIN if nptype is np.float64 else _EXP_MIN_F)
    return lambda like: bound


@njit(inline="always", **_JIT)
def _dot(x, y, n):
    """sum over j < n of x[j] y[j] in an order fixed here, not by the CPU (see :mod:`._lanes`).

    ``x`` and ``y`` are contiguous rows. Eight partial sums: element j of the first n - n % 8
    goes to lane j % 8; the lanes are added by :func:`._lanes.lanes_sum`'s tree, and the last
    n % 8 elements one by one after that.
    """
    L = lane_count(x)
    nL = n - n % L
    a = zero_lanes(x)
    for j in range(0, nL, L):
        a = fma(load_lanes(x, j), load_lanes(y, j), a)
    total = lanes_sum(a)
    for j in range(nL, n):
        total = fma(x[j], y[j], total)
    return total


@njit(inline="always", **_JIT)
def _dots4(x, y0, y1, y2, y3, n):
    """:func:`_dot` of ``x`` with four rows at once (each load of ``x`` serves four), in the
    same order as :func:`_dot`, so either gives the same bits."""
    L = lane_count(x)
    nL = n - n % L
    a0 = zero_lanes(x)
    a1 = zero_lanes(x)
    a2 = zero_lanes(x)
    a3 = zero_lanes(x)
    for j in range(0, nL, L):
        xv = load_lanes(x, j)
        a0 = fma(xv, load_lanes(y0, j), a0)
        a1 = fma(xv, load_lanes(y1, j), a1)
        a2 = fma(xv, load_lanes(y2, j), a2)
        a3 = fma(xv, load_lanes(y3, j), a3)
    s0 = lanes_sum(a0)
    s1 = lanes_sum(a1)
    s2 = lanes_sum(a2)
    s3 = lanes_sum(a3)
    for j in range(nL, n):
        xj = x[j]
        s0 = fma(xj, y0[j], s0)
        s1 = fma(xj, y1[j], s1)
        s2 = fma(xj, y2[j], s2)
        s3 = fma(xj, y3[j], s3)
    return s0, s1, s2, s3


@njit(inline="always", **_JIT)
def _dots8(x, y0, y1, y2, y3, y4, y5, y6, y7, n):
    """:func:`_dot` of ``x`` with eight rows at once, in :func:`_dot`'s order: in float32 a lane
    vector is one AVX2 register, and four would leave the FMA units waiting on their latency."""
    L = lane_count(x)
    nL = n - n % L
    a0 = zero_lanes(x)
    a1 = zero_lanes(x)
    a2 = zero_lanes(x)
    a3 = zero_lanes(x)
    a4 = zero_lanes(x)
    a5 = zero_lanes(x)
    a6 = zero_lanes(x)
    a7 = zero_lanes(x)
    for j in range(0, nL, L):
        xv = load_lanes(x, j)
        a0 = fma(xv, load_lanes(y0, j), a0)
        a1 = fma(xv, load_lanes(y1, j), a1)
        a2 = fma(xv, load_lanes(y2, j), a2)
        a3 = fma(xv, load_lanes(y3, j), a3)
        a4 = fma(xv, load_lanes(y4, j), a4)
        a5 = fma(xv, load_lanes(y5, j), a5)
        a6 = fma(xv, load_lanes(y6, j), a6)
        a7 = fma(xv, load_lanes(y7, j), a7)
    s0 = lanes_sum(a0)
    s1 = lanes_sum(a1)
    s2 = lanes_sum(a2)
    s3 = lanes_sum(a3)
    s4 = lanes_sum(a4)
    s5 = lanes_sum(a5)
    s6 = lanes_sum(a6)
    s7 = lanes_sum(a7)
    for j in range(nL, n):
        xj = x[j]
        s0 = fma(xj, y0[j], s0)
        s1 = fma(xj, y1[j], s1)
        s2 = fma(xj, y2[j], s2)
        s3 = fma(xj, y3[j], s3)
        s4 = fma(xj, y4[j], s4)
        s5 = fma(xj, y5[j], s5)
        s6 = fma(xj, y6[j], s6)
        s7 = fma(xj, y7[j], s7)
    return s0, s1, s2, s3, s4, s5, s6, s7


@njit(inline="always", **_JIT)
def _recurrence_rows4(Wxh, Whh, bh, hs, t, x, first):
    """Rows ``first:`` of hs[t + 1] = Wxh[:, x] + Whh hs[t] + bh (before tanh): 4 rows of Whh
    share each load of hs[t], then the remaining rows one by one."""
    H = Whh.shape[0]
    H4 = H - (H - first) % 4
    h = hs[t]
    for i in range(first, H4, 4):
        a = _dots4(h, Whh[i], Whh[i + 1], Whh[i + 2], Whh[i + 3], H)
        for k in range(4):
            hs[t + 1, i + k] = (Wxh[i + k, x] + a[k]) + bh[i + k]
    for i in range(H4, H):
        hs[t + 1, i] = (Wxh[i, x] + _dot(h, Whh[i], H)) + bh[i]


@njit(inline="always", **_JIT)
def _recurrence_f64(Wxh, Whh, bh, hs, t, x):
    """hs[t + 1] before tanh, 4 rows per pass."""
    _recurrence_rows4(Wxh, Whh, bh, hs, t, x, 0)


@njit(inline="always", **_JIT)
def _recurrence_f32(Wxh, Whh, bh, hs, t, x):
    """hs[t + 1] before tanh, 8 rows per pass (see :func:`_dots8`), then 4. Every element has
    :func:`_dot`'s order, so the grouping of rows does not change a bit."""
    H = Whh.shape[0]
    H8 = H - H % 8
    h = hs[t]
    for i in range(0, H8, 8):
        a = _dots8(h, Whh[i], Whh[i + 1], Whh[i + 2], Whh[i + 3], Whh[i + 4], Whh[i + 5], Whh[i + 6], Whh[i + 7], H)
        for k in range(8):
            hs[t + 1, i + k] = (Wxh[i + k, x] + a[k]) + bh[i + k]
    _recurrence_rows4(Wxh, Whh, bh, hs, t, x, H8)


def _recurrence(Wxh, Whh, bh, hs, t, x):
    """hs[t + 1] before tanh, by the kernel for the precision of ``hs``; jit-only."""
    raise NotImplementedError("jit-only helper")


@overload(_recurrence, inline="always")
def _recurrence_overload(Wxh, Whh, bh, hs, t, x):
    if hs.dtype == types.float64:
        return lambda Wxh, Whh, bh, hs, t, x: _recurrence_f64(Wxh, Whh, bh, hs, t, x)
    if hs.dtype == types.float32:
        return lambda Wxh, Whh, bh, hs, t, x: _recurrence_f32(Wxh, Whh, bh, hs, t, x)
    return None


@njit(inline="always", **_JIT)
def _outputs_transposed(Why, by, hs, S, probs):
    """The logits of all S steps, reduction-free: probs[t, :] += hs[t + 1, j] * Why^T[j, :], in
    order of j (each element's sum has one order, whatever the vector width).

    Why is transposed into a scratch (H, V) buffer first (V*H copies against S*V*H FMAs): in
    float32 the per-(t, v) horizontal reductions and j tails of the row-dot form cost as much
    as its FMAs at H = 100. Two time steps and four columns of Why per pass.
    """
    H = Why.shape[1]
    V = Why.shape[0]
    H4 = H - H % 4
    S2 = S - S % 2
    WT = np.empty((H, V), Why.dtype)
    for v in range(V):
        for j in range(H):
            WT[j, v] = Why[v, j]
    for t in range(S):
        for v in range(V):
            probs[t, v] = by[v]
    for t in range(0, S2, 2):
        u = t + 1
        for j in range(0, H4, 4):
            h0 = hs[u, j]
            h1 = hs[u, j + 1]
            h2 = hs[u, j + 2]
            h3 = hs[u, j + 3]
            g0 = hs[u + 1, j]
            g1 = hs[u + 1, j + 1]
            g2 = hs[u + 1, j + 2]
            g3 = hs[u + 1, j + 3]
            for v in range(V):
                w0 = WT[j, v]
                w1 = WT[j + 1, v]
                w2 = WT[j + 2, v]
                w3 = WT[j + 3, v]
                probs[t, v] = fma(h3, w3, fma(h2, w2, fma(h1, w1, fma(h0, w0, probs[t, v]))))
                probs[u, v] = fma(g3, w3, fma(g2, w2, fma(g1, w1, fma(g0, w0, probs[u, v]))))
        for j in range(H4, H):
            h0 = hs[u, j]
            g0 = hs[u + 1, j]
            for v in range(V):
                probs[t, v] = fma(h0, WT[j, v], probs[t, v])
                probs[u, v] = fma(g0, WT[j, v], probs[u, v])
    for t in range(S2, S):
        u = t + 1
        for j in range(H):
            h0 = hs[u, j]
            for v in range(V):
                probs[t, v] = fma(h0, WT[j, v], probs[t, v])


#: Below this hidden size the float64 logits are formed like the float32 ones
#: (:func:`_outputs_transposed`): dot products of so few elements are mostly tails and lane sums.
_OUTPUTS_DOT_MIN_HIDDEN = 64


@njit(inline="always", **_JIT)
def _outputs_f64(Why, by, hs, S, probs):
    """probs[t] = Why hs[t + 1] + by (logits) for all t: 4 time steps per pass over a Why row
    (from :data:`_OUTPUTS_DOT_MIN_HIDDEN` on; a rule on H alone, so every CPU takes the same)."""
    H = Why.shape[1]
    V = Why.shape[0]
    if H < _OUTPUTS_DOT_MIN_HIDDEN:
        _outputs_transposed(Why, by, hs, S, probs)
        return
    S4 = S - S % 4
    for v in range(V):
        w = Why[v]
        b = by[v]
        for t in range(0, S4, 4):
            a0, a1, a2, a3 = _dots4(w, hs[t + 1], hs[t + 2], hs[t + 3], hs[t + 4], H)
            probs[t, v] = a0 + b
            probs[t + 1, v] = a1 + b
            probs[t + 2, v] = a2 + b
            probs[t + 3, v] = a3 + b
        for t in range(S4, S):
            probs[t, v] = _dot(w, hs[t + 1], H) + b


def _outputs(Why, by, hs, S, probs):
    """The logits of all S steps, by the kernel for the precision of ``hs``; jit-only."""
    raise NotImplementedError("jit-only helper")


@overload(_outputs, inline="always")
def _outputs_overload(Why, by, hs, S, probs):
    if hs.dtype == types.float64:
        return lambda Why, by, hs, S, probs: _outputs_f64(Why, by, hs, S, probs)
    if hs.dtype == types.float32:
        return lambda Why, by, hs, S, probs: _outputs_transposed(Why, by, hs, S, probs)
    return None


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
    _hidden_states(Wxh, Whh, bh, data, start, S, hprev, hs)
    return _softmax_loss(Why, by, data, start, S, hs, probs, ex)


@njit(inline="always", **_JIT)
def _hidden_states(Wxh, Whh, bh, data, start, S, hprev, hs):
    """The recurrence (only Whh h feeds the next step): hs[0] = hprev, hs[t + 1] = h_t."""
    H = Whh.shape[0]
    for i in range(H):
        hs[0, i] = hprev[i]
    for t in range(S):
        x = data[start + t]
        _recurrence(Wxh, Whh, bh, hs, t, x)
        for i in range(H):
            hs[t + 1, i] = _tanh(hs[t + 1, i])


@njit(inline="always", **_JIT)
def _sum(x, n):
    """x[0] + ... + x[n - 1] with :func:`_dot`'s lanes, tree and tail."""
    L = lane_count(x)
    nL = n - n % L
    a = zero_lanes(x)
    for j in range(0, nL, L):
        a = lanes_add(a, load_lanes(x, j))
    total = lanes_sum(a)
    for j in range(nL, n):
        total += x[j]
    return total


@njit(inline="always", **_JIT)
def _softmax_loss(Why, by, data, start, S, hs, probs, ex):
    """Outputs y_t = Why h_t + by for all t at once, their softmax into ``probs``, and the loss."""
    V = Why.shape[0]
    zero = _typed(hs, 0.0)
    one = _typed(hs, 1.0)
    exp_min = _exp_min(hs)
    _outputs(Why, by, hs, S, probs)
    loss = 0.0  # float64 in either precision: S terms a step, and the smooth loss is float64
    for t in range(S):
        target = data[start + t + 1]
        y_max = _typed(hs, -np.inf)
        for v in range(V):
            if probs[t, v] > y_max:
                y_max = probs[t, v]
        y_target = probs[t, target]
        tiny = False
        for v in range(V):
            d = probs[t, v] - y_max
            tiny |= d < exp_min
            ex[v] = _exp_nonpos(d)
        if tiny:  # some probability below 1e-307 (1e-38 in float32), or -inf logits: libm's exp
            flush = _flushes_tiny_probabilities(hs)
            for v in range(V):
                d = probs[t, v] - y_max
                ex[v] = zero if flush and d < exp_min else math.exp(d)
        total = _sum(ex, V)
        # log-softmax form: finite even where the target's probability underflows to 0
        loss -= np.float64((y_target - y_max) - math.log(total))
        inv_total = one / total
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
    zero = _typed(hs, 0.0)
    one = _typed(hs, 1.0)
    for t in range(S):
        probs[t, data[start + t + 1]] -= one
    # dh_t = Why^T dy_t for all t before the sweep (it does not depend on the recurrence);
    # two time steps and four rows of Why per pass
    S2 = S - S % 2
    for t in range(0, S2, 2):
        u = t + 1
        for j in range(H):
            dhs[t, j] = zero
            dhs[u, j] = zero
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
                dhs[t, j] = fma(d3, w3, fma(d2, w2, fma(d1, w1, fma(d0, w0, dhs[t, j]))))
                dhs[u, j] = fma(e3, w3, fma(e2, w2, fma(e1, w1, fma(e0, w0, dhs[u, j]))))
        for v in range(V4, V):
            d0 = probs[t, v]
            e0 = probs[u, v]
            for j in range(H):
                dhs[t, j] = fma(d0, Why[v, j], dhs[t, j])
                dhs[u, j] = fma(e0, Why[v, j], dhs[u, j])
    for t in range(S2, S):
        for j in range(H):
            dhs[t, j] = zero
        for v in range(0, V4, 4):
            d0 = probs[t, v]
            d1 = probs[t, v + 1]
            d2 = probs[t, v + 2]
            d3 = probs[t, v + 3]
            for j in range(H):
                dhs[t, j] = fma(d3, Why[v + 3, j], fma(d2, Why[v + 2, j], fma(d1, Why[v + 1, j], fma(d0, Why[v, j], dhs[t, j]))))
        for v in range(V4, V):
            d0 = probs[t, v]
            for j in range(H):
                dhs[t, j] = fma(d0, Why[v, j], dhs[t, j])
    for j in range(H):
        dhnext[j] = zero
    for t in range(S - 1, -1, -1):
        for j in range(H):
            h = hs[t + 1, j]
            dhs[t, j] = fma(-h, h, one) * (dhs[t, j] + dhnext[j])
        if t == 0:
            break
        for j in range(H):
            dhnext[j] = zero
        for i in range(0, H4, 4):
            g0 = dhs[t, i]
            g1 = dhs[t, i + 1]
            g2 = dhs[t, i + 2]
            g3 = dhs[t, i + 3]
            for j in range(H):
                dhnext[j] = fma(g3, Whh[i + 3, j], fma(g2, Whh[i + 2, j], fma(g1, Whh[i + 1, j], fma(g0, Whh[i, j], dhnext[j]))))
        for i in range(H4, H):
            g0 = dhs[t, i]
            for j in range(H):
                dhnext[j] = fma(g0, Whh[i, j], dhnext[j])


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
                out[c, j] = fma(g3, b3, fma(g2, b2, fma(g1, b1, g0 * b0)))
                out[d, j] = fma(f3, b3, fma(f2, b2, fma(f1, b1, f0 * b0)))
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
                    out[c, j] = fma(g3, b3, fma(g2, b2, fma(g1, b1, fma(g0, b0, out[c, j]))))
                    out[d, j] = fma(f3, b3, fma(f2, b2, fma(f1, b1, fma(f0, b0, out[d, j]))))
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
                out[c, j] = fma(g0, B[b, j], out[c, j])
                out[d, j] = fma(f0, B[b, j], out[d, j])
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
                out[c, j] = fma(g3, B[boff + 3, j], fma(g2, B[boff + 2, j], fma(g1, B[boff + 1, j], g0 * B[boff, j])))
            for t in range(4, S4, 4):
                g0 = A[t, c]
                g1 = A[t + 1, c]
                g2 = A[t + 2, c]
                g3 = A[t + 3, c]
                b = boff + t
                for j in range(n):
                    out[c, j] = fma(g3, B[b + 3, j], fma(g2, B[b + 2, j], fma(g1, B[b + 1, j], fma(g0, B[b, j], out[c, j]))))
            t0 = S4
        for t in range(t0, S):
            g0 = A[t, c]
            b = boff + t
            for j in range(n):
                out[c, j] = fma(g0, B[b, j], out[c, j])


@njit(**_JIT)
def _adagrad(params, memory, g, lr):
    """Clipped Adagrad update of ``params`` (a view) with gradient ``g``; ``lr`` of params' type."""
    clip = _typed(params, GRADIENT_CLIP)
    eps = _typed(params, ADAGRAD_EPS)  # 1e-8 is a normal float32
    for j in range(params.shape[0]):
        d = g[j]
        # comparisons, not min/max, so a NaN gradient stays NaN
        if d > clip:
            d = clip
        elif d < -clip:
            d = -clip
        m = fma(d, d, memory[j])
        memory[j] = m
        params[j] -= lr * d / math.sqrt(m + eps)


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


@njit(inline="always", **_JIT)
def _weight_gradients(dhs, hs, probs, S, gWhh, gWhy, gbh, gby):
    """Gradients of Whh, Why, bh and by from the sweep's dhraw (``dhs``) and dy (``probs``)."""
    _outer(dhs, hs, 0, S, gWhh)
    _outer(probs, hs, 1, S, gWhy)
    _column_sum(dhs, S, gbh)
    _column_sum(probs, S, gby)


@njit(inline="always", **_JIT)
def _wxh_update(Wxh, mWxh, dhs, data, start, S, rate, sparse, seen, gc, pc, mc, gV):
    """Adagrad on Wxh: only the columns of the sequence's characters when ``sparse`` (see
    :func:`train_steps`), else every column. ``seen`` is all False on entry and on return;
    ``gc``, ``pc``, ``mc`` (H) and ``gV`` (V) are scratch."""
    H, V = Wxh.shape
    if sparse:
        for t in range(S - 1, -1, -1):
            c = data[start + t]
            if seen[c]:
                continue
            seen[c] = True
            _wxh_column(dhs, data, start, S, t, c, gc)
            for i in range(H):
                pc[i] = Wxh[i, c]
                mc[i] = mWxh[i, c]
            _adagrad(pc, mc, gc, rate)
            for i in range(H):
                Wxh[i, c] = pc[i]
                mWxh[i, c] = mc[i]
        for t in range(S):
            seen[data[start + t]] = False
    else:
        zero = _typed(Wxh, 0.0)
        for i in range(H):
            for c in range(V):
                gV[c] = zero
            for t in range(S - 1, -1, -1):
                gV[data[start + t]] += dhs[t, i]
            _adagrad(Wxh[i], mWxh[i], gV, rate)


@njit(inline="always", **_JIT)
def _ids_in_range(data, start, n, V):
    """Whether data[start:start+n] are all character ids in [0, V)."""
    ok = True
    for k in range(start, start + n):
        c = data[k]
        ok &= (c >= 0) & (c < V)
    return ok


@njit(**_JIT)
def loss_and_gradients(params, H, V, data, start, S, hprev):
    """One step's loss, raw gradients (flat, like ``params``) and last hidden state."""
    if not _ids_in_range(data, start, S + 1, V):
        raise ValueError(BAD_ID_MESSAGE)
    Wxh, Whh, Why, bh, by = _views(params, H, V)
    hs = np.empty((S + 1, H), params.dtype)
    probs = np.empty((S, V), params.dtype)
    dhs = np.empty((S, H), params.dtype)
    dhnext = np.empty(H, params.dtype)
    grads = np.zeros_like(params)
    dWxh, dWhh, dWhy, dbh, dby = _views(grads, H, V)
    loss = _forward(Wxh, Whh, Why, bh, by, data, start, S, hprev, hs, probs, np.empty(V, params.dtype))
    _backward(Whh, Why, data, start, S, hs, probs, dhs, dhnext)
    _weight_gradients(dhs, hs, probs, S, dWhh, dWhy, dbh, dby)
    for t in range(S - 1, -1, -1):
        x = data[start + t]
        for i in range(H):
            dWxh[i, x] += dhs[t, i]
    return loss, grads, hs[S].copy()


@njit(**_JIT)
def train_steps(data, H, V, S, lr, n_steps, params, memory, hprev, position, smooth_loss):
    """Advance one run by up to ``n_steps`` Adagrad updates in place.

    Returns ``(position, smooth_loss, last_loss, steps_done, status)`` (status STATUS_BAD_ID,
    -1, when a window holds an id outside [0, V): the run stopped before reading it); ``hprev``, ``params``
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
    zero = _typed(params, 0.0)
    eps = _typed(params, ADAGRAD_EPS)
    rate = _typed(params, lr)  # rounded once to the precision of the weights
    sparse = rate >= zero and rate < _typed(params, np.inf)
    for k in range(nWxh):
        if not memory[k] + eps > zero:
            sparse = False
    last_loss = np.nan
    for step in range(n_steps):
        if position + S + 1 >= N:
            position = 0
            hprev[:] = zero
        if not _ids_in_range(data, position, S + 1, V):  # before the window is read: memory safety
            return position, smooth_loss, last_loss, step, STATUS_BAD_ID
        loss = _forward(Wxh, Whh, Why, bh, by, data, position, S, hprev, hs, probs, ex)
        last_loss = loss
        if not math.isfinite(loss):
            return position, smooth_loss, last_loss, step, STATUS_DIVERGED
        smooth_loss = smooth_loss * (1.0 - SMOOTHING) + loss * SMOOTHING
        _backward(Whh, Why, data, position, S, hs, probs, dhs, dhnext)
        # the sweep is done: gradients of Whh, Why, bh, by (contiguous) then one Adagrad pass
        _weight_gradients(dhs, hs, probs, S, gWhh, gWhy, gbh, gby)
        _adagrad(params[nWxh:], memory[nWxh:], G, rate)
        _wxh_update(Wxh, mWxh, dhs, data, position, S, rate, sparse, seen, gc, pc, mc, gV)
        for i in range(H):
            hprev[i] = hs[S, i]
        position += S
    for k in range(P):
        if not math.isfinite(params[k]):
            return position, smooth_loss, last_loss, n_steps, STATUS_DIVERGED
    return position, smooth_loss, last_loss, n_steps, STATUS_OK


#: Time steps the scoring kernel forms outputs for after each stretch of the recurrence: enough
#: to amortise a pass over Why, few enough that the hidden states of a block stay in cache.
SCORE_BLOCK = 64


@njit(**_JIT)
def heldout_loss(params, H, V, data, n):
    """Summed cross-entropy of reading ``data[:n]`` continuously from a zero hidden state.

    The forward pass of training (:func:`_forward`, so the same arithmetic and precision as
    ``params``) over blocks of up to :data:`SCORE_BLOCK` steps, each block starting from the
    last hidden state of the one before: memory does not grow with ``n``. The sum is float64;
    it stops at the first block whose loss is not finite and returns that loss (NaN or inf).
    The caller checks ``2 <= n <= len(data)``; an id outside [0, V) raises ValueError.
    """
    if not _ids_in_range(data, 0, n, V):
        raise ValueError(BAD_ID_MESSAGE)
    Wxh, Whh, Why, bh, by = _views(params, H, V)
    B = SCORE_BLOCK
    hs = np.empty((B + 1, H), params.dtype)
    probs = np.empty((B, V), params.dtype)
    ex = np.empty(V, params.dtype)
    hprev = np.zeros(H, params.dtype)
    total = 0.0
    start = 0
    while start < n - 1:
        S = min(B, n - 1 - start)
        loss = _forward(Wxh, Whh, Why, bh, by, data, start, S, hprev, hs, probs, ex)
        total += loss
        if not math.isfinite(loss):
            return loss
        for i in range(H):
            hprev[i] = hs[S, i]
        start += S
    return total


@njit(inline="always", **_JIT)
def _n_params(H, V):
    return H * V + H * H + V * H + H + V


@njit(**_JIT)
def train_batch(data, H, V, S, lr, steps, params, memory, param_offsets, hprev, hprev_offsets,
                position, smooth_loss, last_loss, steps_done, status):
    """:func:`train_steps` of every run ``k`` by ``steps[k]`` updates, one after the other.

    Run ``k``'s weights start at ``params[param_offsets[k]]`` (likewise ``memory``; ``hprev`` at
    ``hprev_offsets[k]``) and its scalars are at index ``k``. One call trains many runs
    for the price of one dispatch, and each run gets exactly :func:`train_steps`'s arithmetic.
    """
    for k in range(steps.shape[0]):
        if steps[k] <= 0:
            continue
        a, b = param_offsets[k], param_offsets[k] + _n_params(H[k], V[k])
        result = train_steps(data, H[k], V[k], S[k], lr[k], steps[k], params[a:b], memory[a:b],
                             hprev[hprev_offsets[k]:hprev_offsets[k] + H[k]], position[k], smooth_loss[k])
        position[k], smooth_loss[k], last_loss[k], steps_done[k], status[k] = result



@njit(parallel=True, **_JIT)
def train_batch_parallel(data, H, V, S, lr, steps, params, memory, param_offsets, hprev, hprev_offsets,
                         position, smooth_loss, last_loss, steps_done, status):
    """:func:`train_batch` of every run, the runs spread over Numba's threads (``prange``).

    Each run is trained start to finish by one thread, with :func:`train_steps`, and each
    iteration writes only run ``k``'s slices and entries, so the results do not depend on the
    number of threads. Numba's pool (OpenMP or TBB) keeps its threads spinning between calls,
    so a batch of small runs starts on every thread at once, unlike a Python thread pool.
    """
    for k in prange(steps.shape[0]):
        if steps[k] > 0:
            a, b = param_offsets[k], param_offsets[k] + _n_params(H[k], V[k])
            result = train_steps(data, H[k], V[k], S[k], lr[k], steps[k], params[a:b], memory[a:b],
                                 hprev[hprev_offsets[k]:hprev_offsets[k] + H[k]], position[k], smooth_loss[k])
            position[k], smooth_loss[k], last_loss[k], steps_done[k], status[k] = result


# -- public seam: the phases of a training step, for profiling ---------------------------------------
# ``fastrnn bench --phases`` (:mod:`fastrnn.bench.phases`) times each phase of :func:`train_steps`
# alone by calling the kernel's own functions through these names, never the private ones above,
# so the kernel may rename or restructure its internals as long as these keep their meaning. All
# are Numba functions, called from compiled code, with the signatures (and array layouts) that
# :func:`train_steps` uses; their docstrings are the private functions'.
#: The options every kernel function is compiled with (a harness that inlines the phases uses them
#: too, so that it computes what the kernel computes).
JIT_OPTIONS = dict(_JIT)
#: ``(params, H, V) -> (Wxh, Whh, Why, bh, by)``: views of a flat parameter vector.
views = _views
#: ``(like, value)``: the Python number ``value`` in the precision of the array ``like``.
typed = _typed
#: The forward pass of one window (:data:`hidden_states` then :data:`softmax_loss`): its loss.
forward = _forward
# The phases, in the order train_steps runs them in every step:
#: recurrence: the hidden states of the window (only Whh h feeds the next step).
hidden_states = _hidden_states
#: outputs and softmax: Why h_t + by for every t, their softmax and the window's loss.
softmax_loss = _softmax_loss
#: backward sweep: dy, Why^T dy and the BPTT recurrence through Whh^T.
backward = _backward
#: weight gradients: dWhh, dWhy, dbh and dby into the contiguous gradient buffer.
weight_gradients = _weight_gradients
#: Adagrad over [Whh | Why | bh | by] (one vectorised loop; also the update of each Wxh column).
adagrad = _adagrad
#: Adagrad on the Wxh columns of the window's characters (or all of Wxh when not ``sparse``).
wxh_update = _wxh_update
