/* The compute kernels of ext/_rnn_cython.pyx: forward pass, BPTT and Adagrad of one training
 * step, in float64 (`_f64`) and float32 (`_f32`).
 *
 * Why these live in C rather than in the .pyx:
 *
 * - Runtime CPU dispatch. The build uses portable flags (no -march), which on x86-64 means
 *   SSE2 only: 2 doubles per instruction and no FMA instruction. Where the compiler supports
 *   it (probed by setup.py, which then defines FASTRNN_TARGET_CLONES), each entry point
 *   (RNN_KERNEL) is also compiled for x86-64-v3 (AVX2 + FMA) and the loader picks the clone for
 *   the CPU it runs on (GCC/clang `target_clones`). A Cython function cannot carry that
 *   attribute. The helpers are always_inline, so they are compiled into each clone. The two
 *   clones compute the same bits (see Numerics below).
 * - Register blocking. The matrix loops are written with GCC/clang vector extensions, several
 *   accumulators at once sharing loads; the compiler's own vectorisation of them is poor
 *   (single accumulator chains, or shuffles). Other compilers get the plain scalar loops.
 * - Vectorisable tanh and exp (rnn_tanh, rnn_exp_nonpos): glibc's are a call per element
 *   (a libm tanh per element is a large share of a step at H = 100). These are the formulas of
 *   fastrnn._numba_kernel (`_tanh`, `_exp_nonpos`): range reduction by ln 2 and a Taylor
 *   polynomial of expm1, within 3 / 1 ulp of libm in float64, branch-free, NaN in NaN out;
 *   2**k is built from the bits of k (k is an exact integer, turned into bits by adding
 *   1.5 * 2**52, which AVX2 can do where it cannot convert to int64). The float32 variants
 *   use float32 constants and a degree-7 polynomial (error < 2e-8 relative before rounding).
 *   In float64, softmax falls back to libm's exp for a step where some logit is more than 708
 *   below the max, since 2**k would not be a normal number there (as numba does); in float32,
 *   where that happens 87 below the max and often in training, exp of such a logit is
 *   flushed to 0 instead (absolute error < 1.2e-38, the float32 subnormal range).
 *
 * Structure of a step (the tricks of fastrnn._numba_kernel, all measured to pay):
 * - Only the Whh recurrence is sequential. The outputs y_t = Why h_t + by are formed for all t
 *   after it (four time steps per pass over a row of Why); likewise dh_t = Why^T dy_t for all t
 *   before the backward sweep (a small matrix product, 4 time steps x 2 vectors per pass).
 * - dWhh and dWhy are matrix products formed after the sweep (2 rows x 4 vectors in
 *   registers over all t), written, not accumulated, so nothing is zeroed.
 * - The gradients of the contiguous block [Whh | Why | bh | by] go to one buffer of the same
 *   layout and take one Adagrad pass. Wxh's gradient is zero except in the columns of the
 *   characters in the window: only those columns are updated (rnn_wxh_adagrad_sparse), which
 *   is bit-exact when lr is finite and >= 0 and every mem + eps > 0 (the caller checks).
 *
 * Numerics: no -ffast-math (it lets the compiler assume no NaNs, which the divergence check
 * relies on); the gradient clip uses comparisons so NaN stays NaN. Every summation order is
 * written in the source: the lanes of the vector type (RNN_VBYTES bytes, the same in both
 * clones), each lane's accumulator, the fixed tree of HSUM, then the tail. And so is every
 * fused multiply-add: the build passes -ffp-contract=off, so the compiler fuses nothing by
 * itself, and the source writes FMA / VFMA wherever a product is added (the accumulations,
 * the Horner steps and range reductions of tanh and exp, 1 - h*h, mem + g*g: the places
 * fastrnn._numba_kernel fuses; only the half-vector tails of rnn_dot4 / rnn_dot1 add rounded
 * products); the AVX2 clone computes each with one vfmadd, the baseline clone with libm's
 * correctly rounded fma (slower: a call per lane). So the AVX2 clone and
 * the baseline clone give the same bits, on any x86-64 CPU (tests/test_cython_clones.py builds
 * the baseline code alone, FASTRNN_BASELINE_ONLY, and compares), given the same C library
 * (log; exp in a float64 softmax step with a logit 708 below the max). Nothing is left to the
 * compiler's choice, so another GCC or clang should give the same bits too; that is not
 * tested. Not the same: builds without clones (16-byte vectors: other lane sums), MSVC's (no
 * vectors, plain multiply and add: its path is unchanged) and the numba backend (other sums
 * and blockings). Results never depend on the thread count, so chunked and unchunked training
 * agree bit for bit. In the float32 kernels every constant is float32 (no promotion to
 * double) except the loss, a scalar per character, which is accumulated in double.
 *
 * Templating: this header includes itself twice with RNN_T (the element type) and RNN_SUF
 * (the name suffix) set, once per precision.
 */
#ifndef RNN_TEMPLATE_PASS

#ifndef FASTRNN_RNN_SIMD_H
#define FASTRNN_RNN_SIMD_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The constants of fastrnn.model. */
#define RNN_GRADIENT_CLIP 5.0
#define RNN_ADAGRAD_EPS 1e-8
#define RNN_SMOOTHING 0.001

#if defined(_OPENMP)
#define FASTRNN_OPENMP 1
#else
#define FASTRNN_OPENMP 0
#endif

#ifndef FASTRNN_CYTHON_VERSION
#define FASTRNN_CYTHON_VERSION "unknown"
#endif
#ifndef FASTRNN_COMPILE_ARGS
#define FASTRNN_COMPILE_ARGS "unknown"
#endif

#if defined(_MSC_VER)
#define RNN_RESTRICT __restrict
#define RNN_INLINE static __forceinline
#else
#define RNN_RESTRICT restrict
#define RNN_INLINE static inline __attribute__((always_inline))
#endif

/* FASTRNN_BASELINE_ONLY compiles only the code of the baseline clone of a dispatching build
 * (the same 32-byte vectors, without target_clones), so that any x86-64 machine can check that
 * it gives the bits of the AVX2 clone (tests/test_cython_clones.py). */
#if defined(FASTRNN_BASELINE_ONLY) && FASTRNN_BASELINE_ONLY
#define RNN_KERNEL static
#define FASTRNN_DISPATCH "baseline only, with the 32-byte vectors of the dispatching build (FASTRNN_BASELINE_ONLY)"
#define FASTRNN_SIMD_DISPATCH 0
#define RNN_WIDE_VECTORS 1
#elif defined(FASTRNN_TARGET_CLONES) && FASTRNN_TARGET_CLONES
#define RNN_KERNEL __attribute__((target_clones("arch=x86-64-v3", "default"))) static
#define FASTRNN_DISPATCH "x86-64-v3 (AVX2+FMA) / baseline, chosen at load time"
#define FASTRNN_SIMD_DISPATCH 1
#define RNN_WIDE_VECTORS 1
#else
#define RNN_KERNEL static
#define FASTRNN_DISPATCH "baseline only"
#define FASTRNN_SIMD_DISPATCH 0
#define RNN_WIDE_VECTORS 0
#endif

#if defined(__GNUC__) || defined(__clang__)
/* RNN_VBYTES bytes per vector: 32 (one AVX2 register: 4 doubles, 8 floats) when the AVX2 clone
 * exists; else 16, one SSE2/NEON register (wider generic vectors on a 128-bit ISA spill to the
 * stack). The baseline clone of a dispatching build gets the same 32-byte vectors, split in two
 * by the compiler: slower, only on pre-2013 x86-64 CPUs, but the same lanes and so the same
 * summation orders as the AVX2 clone. */
#define RNN_VECTORS 1
#if RNN_WIDE_VECTORS
#define RNN_VBYTES 32
#else
#define RNN_VBYTES 16
#endif
#else
#define RNN_VECTORS 0
#define RNN_VBYTES 16
#endif

/* Fused multiply-adds are written in the source (FMA, VFMA below) and the build passes
 * -ffp-contract=off, so the compiler fuses nothing else. GCC and clang turn __builtin_fma into
 * one vfmadd instruction where the target has FMA (the AVX2 clone; a packed one for a vector,
 * whose lanes the SLP vectoriser combines) and into a call of libm's correctly rounded fma
 * where it has not (the baseline clone): the same result, bit for bit.
 * A build without clones has one code path, so nothing to agree with: it fuses where its
 * target has an FMA instruction (__FP_FAST_FMA: ARM64, or -march with FMA) and otherwise keeps
 * the plain multiply and add rather than a libm call per multiply-add (x86-64 without
 * dispatch, e.g. FASTRNN_DISABLE_DISPATCH=1 or a compiler without target_clones), as MSVC
 * does (/fp:precise; its path is unchanged). */
#if defined(_MSC_VER) && !defined(__clang__)
#define RNN_FUSED 0
#elif RNN_WIDE_VECTORS || defined(__FP_FAST_FMA)
#define RNN_FUSED 1
#else
#define RNN_FUSED 0
#endif

#define RNN_CAT_(a, b) a##b
#define RNN_CAT(a, b) RNN_CAT_(a, b)
#define RNN_FN(name) RNN_CAT(name, RNN_SUF)

/* float64 pass */
#define RNN_TEMPLATE_PASS 1
#define RNN_T double
#define RNN_UINT uint64_t
#define RNN_INT int64_t
#define RNN_SUF _f64
#define RNN_C(x) x
#define RNN_LANES (RNN_VBYTES / 8)
#define RNN_MANT_BITS 52
#define RNN_EXP_BIAS 1023
#define RNN_ROUND_MAGIC 6755399441055744.0 /* 1.5 * 2**52 */
#define RNN_EXP_MIN (-708.0)
#define RNN_FLOOR floor
#define RNN_FABS fabs
#define RNN_COPYSIGN copysign
#define RNN_SQRT sqrt
#define RNN_EXP exp
#define RNN_FMA_FN __builtin_fma
#include "_rnn_simd.h"
#undef RNN_T
#undef RNN_UINT
#undef RNN_INT
#undef RNN_SUF
#undef RNN_C
#undef RNN_LANES
#undef RNN_MANT_BITS
#undef RNN_EXP_BIAS
#undef RNN_ROUND_MAGIC
#undef RNN_EXP_MIN
#undef RNN_FLOOR
#undef RNN_FABS
#undef RNN_COPYSIGN
#undef RNN_SQRT
#undef RNN_EXP
#undef RNN_FMA_FN

/* float32 pass: the float functions of C99, so nothing is computed in double */
#define RNN_T float
#define RNN_UINT uint32_t
#define RNN_INT int32_t
#define RNN_SUF _f32
#define RNN_C(x) x##f
#define RNN_LANES (RNN_VBYTES / 4)
#define RNN_MANT_BITS 23
#define RNN_EXP_BIAS 127
#define RNN_ROUND_MAGIC 12582912.0f /* 1.5 * 2**23 */
#define RNN_EXP_MIN (-87.0f)
#define RNN_FLOOR floorf
#define RNN_FABS fabsf
#define RNN_COPYSIGN copysignf
#define RNN_SQRT sqrtf
#define RNN_EXP expf
#define RNN_FMA_FN __builtin_fmaf
#define RNN_SINGLE 1
#include "_rnn_simd.h"
#undef RNN_SINGLE
#undef RNN_TEMPLATE_PASS

#endif /* FASTRNN_RNN_SIMD_H */

#else /* RNN_TEMPLATE_PASS: the kernels for element type RNN_T ------------------------- */

#define T RNN_T
#define C RNN_C
#define VEC RNN_FN(rnn_vec)
#define VECU RNN_FN(rnn_vecu)
/* FMA(a, b, c) = a * b + c rounded once (see RNN_FUSED) */
#if RNN_FUSED
#define FMA(a, b, c) RNN_FMA_FN((a), (b), (c))
#else
#define FMA(a, b, c) ((a) * (b) + (c))
#endif

#if RNN_VECTORS
typedef T VEC __attribute__((vector_size(RNN_VBYTES)));
typedef T VECU __attribute__((vector_size(RNN_VBYTES), aligned(sizeof(T)), may_alias));
#define VECI RNN_FN(rnn_veci)
typedef RNN_INT VECI __attribute__((vector_size(RNN_VBYTES))); /* shuffle masks */
#define L ((Py_ssize_t)RNN_LANES)
/* Half vectors (one SSE register) for the tails of reductions of 32-byte vectors. */
#if RNN_VBYTES == 32
#define VECH RNN_FN(rnn_vech)
typedef T VECH __attribute__((vector_size(16)));
typedef T RNN_FN(rnn_vechu) __attribute__((vector_size(16), aligned(sizeof(T)), may_alias));
#define LH ((Py_ssize_t)(RNN_LANES / 2))
#define LDH(p) (*(const RNN_FN(rnn_vechu) *)(p))
#if RNN_LANES == 4
#define HSUMH(a) ((a)[0] + (a)[1])
#else
#define HSUMH(a) (((a)[0] + (a)[1]) + ((a)[2] + (a)[3]))
#endif
#endif
#define LD(p) (*(const VECU *)(p))
#define ST(p, v) (*(VECU *)(p) = (v))
#define SPLAT(x) ((VEC){0} + (T)(x))
/* HSUM(a): the lanes summed in pairs, ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)), formed
 * with whole-vector shuffles and adds (the same bits as adding the lanes in that order, since
 * a + b == b + a), then read out. Reading the lanes of a VFMA result directly would let GCC
 * recompute them with scalar FMAs after the loop. */
#if defined(__clang__)
#define RNN_SHUF(a, ...) __builtin_shufflevector((a), (a), __VA_ARGS__)
#else
#define RNN_SHUF(a, ...) __builtin_shuffle((a), (VECI){__VA_ARGS__})
#endif
#if RNN_LANES == 2
#define HSUM(a) __extension__({ const VEC hs_p_ = (a) + RNN_SHUF((a), 1, 0); hs_p_[0]; })
#elif RNN_LANES == 4
#define HSUM(a) __extension__({ const VEC hs_p_ = (a) + RNN_SHUF((a), 1, 0, 3, 2); hs_p_[0] + hs_p_[2]; })
#elif RNN_LANES == 8
#define HSUM(a)                                                                                   \
    __extension__({                                                                               \
        const VEC hs_p_ = (a) + RNN_SHUF((a), 1, 0, 3, 2, 5, 4, 7, 6);                            \
        const VEC hs_q_ = hs_p_ + RNN_SHUF(hs_p_, 2, 3, 0, 1, 6, 7, 4, 5);                        \
        hs_q_[0] + hs_q_[4];                                                                      \
    })
#else
#error "unsupported vector width"
#endif
/* VFMA(a, b, c) = FMA lane by lane: one packed vfmadd in the AVX2 clone (GCC's SLP vectoriser
 * combines the lanes; checked in the disassembly), RNN_LANES calls of libm's fma in the baseline
 * clone. A statement expression rather than a function: a function taking 32-byte vectors draws
 * GCC's ABI note in code compiled without AVX. */
#define VFMA(a, b, c)                                                                             \
    __extension__({                                                                               \
        const VEC vfma_a_ = (a), vfma_b_ = (b), vfma_c_ = (c);                                    \
        VEC vfma_r_;                                                                              \
        for (int vfma_k_ = 0; vfma_k_ < RNN_LANES; vfma_k_++)                                     \
            vfma_r_[vfma_k_] = FMA(vfma_a_[vfma_k_], vfma_b_[vfma_k_], vfma_c_[vfma_k_]);         \
        vfma_r_;                                                                                  \
    })
#endif

/* ---- elementwise functions ------------------------------------------------------------ */

RNN_INLINE T RNN_FN(rnn_from_bits)(RNN_UINT u) { T x; memcpy(&x, &u, sizeof x); return x; }
RNN_INLINE RNN_UINT RNN_FN(rnn_to_bits)(T x) { RNN_UINT u; memcpy(&u, &x, sizeof u); return u; }

/* 2**k for an integer-valued kf with 1 - bias <= kf <= bias (the bits of kf + 1.5*2**m hold
 * kf in the low mantissa bits, and the shift drops everything above the exponent field). */
RNN_INLINE T RNN_FN(rnn_pow2)(T kf)
{
    const RNN_UINT u = RNN_FN(rnn_to_bits)(kf + RNN_ROUND_MAGIC);
    return RNN_FN(rnn_from_bits)((RNN_UINT)((u + RNN_EXP_BIAS) << RNN_MANT_BITS));
}

#ifndef RNN_SINGLE
#define RNN_INV_LN2 1.4426950408889634
#define RNN_LN2_HI 6.93147180369123816490e-01 /* k * hi exact for |k| < 2**11 */
#define RNN_LN2_LO 1.90821492927058770002e-10
/* expm1(r) for |r| <= ln(2)/2 to within an ulp: Taylor series to r**14 (error < 1e-17). */
RNN_INLINE double rnn_expm1_reduced_f64(double r)
{
    double q = 1.0 / 87178291200.0;
    q = FMA(r, q, 1.0 / 6227020800.0);
    q = FMA(r, q, 1.0 / 479001600.0);
    q = FMA(r, q, 1.0 / 39916800.0);
    q = FMA(r, q, 1.0 / 3628800.0);
    q = FMA(r, q, 1.0 / 362880.0);
    q = FMA(r, q, 1.0 / 40320.0);
    q = FMA(r, q, 1.0 / 5040.0);
    q = FMA(r, q, 1.0 / 720.0);
    q = FMA(r, q, 1.0 / 120.0);
    q = FMA(r, q, 1.0 / 24.0);
    q = FMA(r, q, 1.0 / 6.0);
    q = FMA(r, q, 0.5);
    return FMA(r * r, q, r);
}
#else
#define RNN_INV_LN2 1.44269504f
#define RNN_LN2_HI 0.693145751953125f /* k * hi exact for |k| < 2**9 */
#define RNN_LN2_LO 1.428606765330187e-06f
/* expm1(r) for |r| <= ln(2)/2: Taylor series to r**7 (truncation < 2e-8 relative). */
RNN_INLINE float rnn_expm1_reduced_f32(float r)
{
    float q = 1.0f / 5040.0f;
    q = FMA(r, q, 1.0f / 720.0f);
    q = FMA(r, q, 1.0f / 120.0f);
    q = FMA(r, q, 1.0f / 24.0f);
    q = FMA(r, q, 1.0f / 6.0f);
    q = FMA(r, q, 0.5f);
    return FMA(r * r, q, r);
}
#endif

/* exp(x) for RNN_EXP_MIN <= x <= 0, NaN for NaN; branch-free (fastrnn._numba_kernel._exp_nonpos). */
RNN_INLINE T RNN_FN(rnn_exp_nonpos)(T x)
{
    const T kf = RNN_FLOOR(FMA(x, RNN_INV_LN2, C(0.5)));
    const T r = FMA(-kf, RNN_LN2_LO, FMA(-kf, RNN_LN2_HI, x));
    const T s = RNN_FN(rnn_pow2)(kf);
    return FMA(s, RNN_FN(rnn_expm1_reduced)(r), s);
}

/* tanh(x), NaN for NaN; branch-free (fastrnn._numba_kernel._tanh):
 * tanh|x| = e / (e + 2) with e = expm1(2|x|) = 2**k (expm1(r) + 1) - 1, 2|x| = k ln2 + r. */
RNN_INLINE T RNN_FN(rnn_tanh)(T x)
{
    T y = C(2.0) * RNN_FABS(x);
    y = y > C(40.0) ? C(40.0) : y; /* tanh is 1 to working precision; NaN stays NaN */
    const T kf = RNN_FLOOR(FMA(y, RNN_INV_LN2, C(0.5)));
    const T r = FMA(-kf, RNN_LN2_LO, FMA(-kf, RNN_LN2_HI, y));
    const T s = RNN_FN(rnn_pow2)(kf);
    const T e = FMA(s, RNN_FN(rnn_expm1_reduced)(r), s - C(1.0));
    return RNN_COPYSIGN(e / (e + C(2.0)), x);
}

#undef RNN_INV_LN2
#undef RNN_LN2_HI
#undef RNN_LN2_LO

/* ---- dense building blocks (always inlined into the entry points) ------------------------- */

#if RNN_VECTORS
/* s[k] = sum_j a[j] * b_k[j], k = 0..3: four dot products sharing each load of a, with four
 * independent accumulator chains (a matrix-vector product over four rows, or one row of Why
 * against four time steps' hidden states) */
RNN_INLINE void RNN_FN(rnn_dot4)(const T *RNN_RESTRICT a, const T *RNN_RESTRICT b0, const T *RNN_RESTRICT b1,
                                 const T *RNN_RESTRICT b2, const T *RNN_RESTRICT b3, Py_ssize_t n,
                                 T *RNN_RESTRICT s)
{
    const Py_ssize_t jv = n - n % L;
    VEC a0 = SPLAT(0), a1 = a0, a2 = a0, a3 = a0;
    for (Py_ssize_t j = 0; j < jv; j += L) {
        const VEC av = LD(a + j);
        a0 = VFMA(LD(b0 + j), av, a0);
        a1 = VFMA(LD(b1 + j), av, a1);
        a2 = VFMA(LD(b2 + j), av, a2);
        a3 = VFMA(LD(b3 + j), av, a3);
    }
    T s0 = HSUM(a0), s1 = HSUM(a1), s2 = HSUM(a2), s3 = HSUM(a3);
    Py_ssize_t j = jv;
#ifdef LH
    if (j + LH <= n) { /* products rounded, then summed in pairs (no FMA) */
        const VECH av = LDH(a + j);
        const VECH c0 = LDH(b0 + j) * av, c1 = LDH(b1 + j) * av, c2 = LDH(b2 + j) * av, c3 = LDH(b3 + j) * av;
        s0 += HSUMH(c0);
        s1 += HSUMH(c1);
        s2 += HSUMH(c2);
        s3 += HSUMH(c3);
        j += LH;
    }
#endif
    for (; j < n; j++) {
        s0 = FMA(b0[j], a[j], s0);
        s1 = FMA(b1[j], a[j], s1);
        s2 = FMA(b2[j], a[j], s2);
        s3 = FMA(b3[j], a[j], s3);
    }
    s[0] = s0;
    s[1] = s1;
    s[2] = s2;
    s[3] = s3;
}

/* sum_j a[j] * b[j] in the order of each sum of rnn_dot4 (so a row or time step left over by
 * the blocks of four gets the bits it would get inside one), on one accumulator chain */
RNN_INLINE T RNN_FN(rnn_dot1)(const T *RNN_RESTRICT a, const T *RNN_RESTRICT b, Py_ssize_t n)
{
    const Py_ssize_t jv = n - n % L;
    VEC a0 = SPLAT(0);
    for (Py_ssize_t j = 0; j < jv; j += L)
        a0 = VFMA(LD(b + j), LD(a + j), a0);
    T s0 = HSUM(a0);
    Py_ssize_t j = jv;
#ifdef LH
    if (j + LH <= n) {
        const VECH c0 = LDH(b + j) * LDH(a + j);
        s0 += HSUMH(c0);
        j += LH;
    }
#endif
    for (; j < n; j++)
        s0 = FMA(b[j], a[j], s0);
    return s0;
}
#endif

/* out[i] = sum_j W[i, j] * x[j]   (W is rows x cols, row-major) */
RNN_INLINE void RNN_FN(rnn_gemv)(const T *RNN_RESTRICT W, const T *RNN_RESTRICT x,
                                 Py_ssize_t rows, Py_ssize_t cols, T *RNN_RESTRICT out)
{
    Py_ssize_t i = 0;
#if RNN_VECTORS
    for (; i + 4 <= rows; i += 4) {
        const T *w0 = W + i * cols;
        RNN_FN(rnn_dot4)(x, w0, w0 + cols, w0 + 2 * cols, w0 + 3 * cols, cols, out + i);
    }
#endif
    for (; i < rows; i++) {
        const T *RNN_RESTRICT w = W + i * cols;
#if RNN_VECTORS
        out[i] = RNN_FN(rnn_dot1)(x, w, cols);
#else
        T acc = 0;
        for (Py_ssize_t j = 0; j < cols; j++)
            acc = FMA(w[j], x[j], acc);
        out[i] = acc;
#endif
    }
}

/* out[j] = sum_i g[i] * W[i, j]   (out = W^T g) */
RNN_INLINE void RNN_FN(rnn_gemv_t)(const T *RNN_RESTRICT W, const T *RNN_RESTRICT g,
                                   Py_ssize_t rows, Py_ssize_t cols, T *RNN_RESTRICT out)
{
    Py_ssize_t j = 0;
#if RNN_VECTORS
    /* four vectors of columns at a time, even and odd rows in separate accumulators (8 chains) */
    for (; j + 4 * L <= cols; j += 4 * L) {
        VEC a0 = SPLAT(0), a1 = a0, a2 = a0, a3 = a0;
        VEC b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        Py_ssize_t i = 0;
        for (; i + 2 <= rows; i += 2) {
            const VEC ga = SPLAT(g[i]), gb = SPLAT(g[i + 1]);
            const T *wa = W + i * cols + j, *wb = wa + cols;
            a0 = VFMA(ga, LD(wa), a0);
            a1 = VFMA(ga, LD(wa + L), a1);
            a2 = VFMA(ga, LD(wa + 2 * L), a2);
            a3 = VFMA(ga, LD(wa + 3 * L), a3);
            b0 = VFMA(gb, LD(wb), b0);
            b1 = VFMA(gb, LD(wb + L), b1);
            b2 = VFMA(gb, LD(wb + 2 * L), b2);
            b3 = VFMA(gb, LD(wb + 3 * L), b3);
        }
        if (i < rows) {
            const VEC ga = SPLAT(g[i]);
            const T *wa = W + i * cols + j;
            a0 = VFMA(ga, LD(wa), a0);
            a1 = VFMA(ga, LD(wa + L), a1);
            a2 = VFMA(ga, LD(wa + 2 * L), a2);
            a3 = VFMA(ga, LD(wa + 3 * L), a3);
        }
        ST(out + j, a0 + b0);
        ST(out + j + L, a1 + b1);
        ST(out + j + 2 * L, a2 + b2);
        ST(out + j + 3 * L, a3 + b3);
    }
    /* one vector at a time; the last one ends at cols, overlapping the previous: columns
     * written twice keep the second value (a fixed order for each H, so still deterministic) */
    for (Py_ssize_t j1; j < cols && cols >= L; j = j1 + L) {
        j1 = j + L <= cols ? j : cols - L;
        VEC a0 = SPLAT(0);
        for (Py_ssize_t i = 0; i < rows; i++)
            a0 = VFMA(SPLAT(g[i]), LD(W + i * cols + j1), a0);
        ST(out + j1, a0);
    }
#endif
    for (Py_ssize_t k = j; k < cols; k++)
        out[k] = 0;
    if (j < cols) {
        for (Py_ssize_t i = 0; i < rows; i++) {
            const T gi = g[i];
            const T *RNN_RESTRICT w = W + i * cols;
            for (Py_ssize_t k = j; k < cols; k++)
                out[k] = FMA(gi, w[k], out[k]);
        }
    }
}

/* D[i, j] = sum_t G[t * ldg + i] * X[t * cols + j]   for t = 0 .. n - 1 in order, n >= 1
 * (D = G^T X: D is rows x cols; G holds n rows of length >= rows, stride ldg; X is n x cols).
 * Each block of D is accumulated in registers over all t, then stored (not added). */
RNN_INLINE void RNN_FN(rnn_gemm_tn)(T *RNN_RESTRICT D, const T *RNN_RESTRICT G, Py_ssize_t ldg,
                                    const T *RNN_RESTRICT X, Py_ssize_t n, Py_ssize_t rows, Py_ssize_t cols)
{
    Py_ssize_t i = 0;
#if RNN_VECTORS
    /* two rows x four vectors of columns at a time: 8 accumulators sharing each load of X */
    for (; i + 2 <= rows; i += 2) {
        T *da = D + i * cols, *db = da + cols;
        Py_ssize_t j = 0;
        for (; j + 4 * L <= cols; j += 4 * L) {
            VEC a0 = SPLAT(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (Py_ssize_t t = 0; t < n; t++) {
                const VEC ga = SPLAT(G[t * ldg + i]), gb = SPLAT(G[t * ldg + i + 1]);
                const T *x = X + t * cols + j;
                const VEC x0 = LD(x), x1 = LD(x + L), x2 = LD(x + 2 * L), x3 = LD(x + 3 * L);
                a0 = VFMA(ga, x0, a0);
                a1 = VFMA(ga, x1, a1);
                a2 = VFMA(ga, x2, a2);
                a3 = VFMA(ga, x3, a3);
                b0 = VFMA(gb, x0, b0);
                b1 = VFMA(gb, x1, b1);
                b2 = VFMA(gb, x2, b2);
                b3 = VFMA(gb, x3, b3);
            }
            ST(da + j, a0);
            ST(da + j + L, a1);
            ST(da + j + 2 * L, a2);
            ST(da + j + 3 * L, a3);
            ST(db + j, b0);
            ST(db + j + L, b1);
            ST(db + j + 2 * L, b2);
            ST(db + j + 3 * L, b3);
        }
        for (Py_ssize_t j1; j < cols && cols >= L; j = j1 + L) { /* the last vector overlaps */
            j1 = j + L <= cols ? j : cols - L;
            VEC a0 = SPLAT(0), b0 = a0;
            for (Py_ssize_t t = 0; t < n; t++) {
                const VEC x0 = LD(X + t * cols + j1);
                a0 = VFMA(SPLAT(G[t * ldg + i]), x0, a0);
                b0 = VFMA(SPLAT(G[t * ldg + i + 1]), x0, b0);
            }
            ST(da + j1, a0);
            ST(db + j1, b0);
        }
        for (; j < cols; j++) {
            T a = 0, b = 0;
            for (Py_ssize_t t = 0; t < n; t++) {
                a = FMA(G[t * ldg + i], X[t * cols + j], a);
                b = FMA(G[t * ldg + i + 1], X[t * cols + j], b);
            }
            da[j] = a;
            db[j] = b;
        }
    }
#endif
    for (; i < rows; i++) {
        T *RNN_RESTRICT d = D + i * cols;
        for (Py_ssize_t j = 0; j < cols; j++)
            d[j] = 0;
        for (Py_ssize_t t = 0; t < n; t++) {
            const T g = G[t * ldg + i];
            const T *RNN_RESTRICT x = X + t * cols;
            for (Py_ssize_t j = 0; j < cols; j++)
                d[j] = FMA(g, x[j], d[j]);
        }
    }
}

/* out[j] = sum over t = n-1 down to 0 of A[t * cols + j]  (n >= 1; the reference's order) */
RNN_INLINE void RNN_FN(rnn_column_sum)(const T *RNN_RESTRICT A, Py_ssize_t n, Py_ssize_t cols,
                                       T *RNN_RESTRICT out)
{
    memcpy(out, A + (n - 1) * cols, cols * sizeof(T));
    for (Py_ssize_t t = n - 2; t >= 0; t--) {
        const T *RNN_RESTRICT a = A + t * cols;
        for (Py_ssize_t j = 0; j < cols; j++)
            out[j] += a[j];
    }
}

/* Clip each gradient to [-5, 5] and take one Adagrad step:
 * mem += g*g; p -= lr * g / sqrt(mem + 1e-8). The clip uses comparisons, not fmin/fmax, so a
 * NaN gradient stays NaN (and makes the parameter NaN, which the caller detects). It vectorises
 * (compare + blend) under -fno-trapping-math, which setup.py passes. */
RNN_INLINE void RNN_FN(rnn_adagrad_inline)(T *RNN_RESTRICT params, T *RNN_RESTRICT memory,
                                           const T *RNN_RESTRICT grads, Py_ssize_t n, T lr)
{
    const T clip = (T)RNN_GRADIENT_CLIP, eps = (T)RNN_ADAGRAD_EPS;
    for (Py_ssize_t k = 0; k < n; k++) {
        T g = grads[k];
        g = g > clip ? clip : g;
        g = g < -clip ? -clip : g;
        const T m = FMA(g, g, memory[k]);
        memory[k] = m;
        params[k] -= lr * g / RNN_SQRT(m + eps);
    }
}

/* ---- entry points (one clone per target) ---------------------------------------------------- */

/* Forward pass over the window xs[0..S] from hprev: returns the summed cross-entropy loss
 * (log-sum-exp form, finite even where the target's probability underflows to 0); fills
 * hs ((S + 1) x H, hs[0] = hprev) and probs (S x V, the softmax outputs). */
RNN_KERNEL double RNN_FN(rnn_forward)(const T *RNN_RESTRICT params, Py_ssize_t H, Py_ssize_t V,
                                      Py_ssize_t S, const Py_ssize_t *RNN_RESTRICT xs,
                                      const T *RNN_RESTRICT hprev, T *RNN_RESTRICT hs,
                                      T *RNN_RESTRICT probs)
{
    const T *Wxh = params, *Whh = Wxh + H * V, *Why = Whh + H * H, *bh = Why + V * H, *by = bh + H;
    memcpy(hs, hprev, H * sizeof(T));
    /* the recurrence: only Whh h feeds the next step */
    for (Py_ssize_t t = 0; t < S; t++) {
        const Py_ssize_t x = xs[t];
        T *RNN_RESTRICT h = hs + (t + 1) * H;
        RNN_FN(rnn_gemv)(Whh, hs + t * H, H, H, h);
        for (Py_ssize_t i = 0; i < H; i++)
            h[i] = (Wxh[i * V + x] + h[i]) + bh[i];
        for (Py_ssize_t i = 0; i < H; i++)
            h[i] = RNN_FN(rnn_tanh)(h[i]);
    }
    /* outputs y_t = Why h_t + by for all t, four time steps per pass over a row of Why */
    const Py_ssize_t S4 = S - S % 4;
    for (Py_ssize_t v = 0; v < V; v++) {
        const T *RNN_RESTRICT w = Why + v * H;
        const T b = by[v];
        Py_ssize_t t = 0;
#if RNN_VECTORS
        for (; t < S4; t += 4) {
            const T *h0 = hs + (t + 1) * H;
            T y[4];
            RNN_FN(rnn_dot4)(w, h0, h0 + H, h0 + 2 * H, h0 + 3 * H, H, y);
            probs[t * V + v] = y[0] + b;
            probs[(t + 1) * V + v] = y[1] + b;
            probs[(t + 2) * V + v] = y[2] + b;
            probs[(t + 3) * V + v] = y[3] + b;
        }
#endif
        for (; t < S; t++) {
            const T *RNN_RESTRICT h = hs + (t + 1) * H;
#if RNN_VECTORS
            probs[t * V + v] = RNN_FN(rnn_dot1)(w, h, H) + b;
#else
            T acc = 0;
            for (Py_ssize_t j = 0; j < H; j++)
                acc = FMA(w[j], h[j], acc);
            probs[t * V + v] = acc + b;
#endif
        }
    }
    /* softmax and loss, one time step at a time */
    double loss = 0.0;
    for (Py_ssize_t t = 0; t < S; t++) {
        T *RNN_RESTRICT p = probs + t * V;
        T y_max = -INFINITY, y_min = INFINITY;
        for (Py_ssize_t v = 0; v < V; v++) {
            y_max = p[v] > y_max ? p[v] : y_max;
            y_min = p[v] < y_min ? p[v] : y_min;
        }
        const T y_target = p[xs[t + 1]];
        T total = 0;
#ifdef RNN_SINGLE
        /* float32: exp(d) for d < -87 is below the normal range (< 1.2e-38); it is flushed
         * to 0 in the vector loop instead of falling back to libm (d is clamped first so that
         * 2**k stays normal; NaN stays NaN) */
        (void)y_min;
        if (0) {
#else
        if (y_min - y_max < RNN_EXP_MIN) {
#endif
            /* some probability below the normal range (or a -inf logit): libm for this step */
            for (Py_ssize_t v = 0; v < V; v++) {
                const T e = RNN_EXP(p[v] - y_max);
                p[v] = e;
                total += e;
            }
        } else {
#ifdef RNN_SINGLE
            for (Py_ssize_t v = 0; v < V; v++) {
                const T d = p[v] - y_max;
                const T e = RNN_FN(rnn_exp_nonpos)(d < RNN_EXP_MIN ? RNN_EXP_MIN : d);
                p[v] = d < RNN_EXP_MIN ? C(0.0) : e;
            }
#else
            for (Py_ssize_t v = 0; v < V; v++)
                p[v] = RNN_FN(rnn_exp_nonpos)(p[v] - y_max);
#endif
            Py_ssize_t v = 0;
#if RNN_VECTORS
            VEC a0 = SPLAT(0);
            for (; v + L <= V; v += L)
                a0 += LD(p + v);
            total = HSUM(a0);
#endif
            for (; v < V; v++)
                total += p[v];
        }
        loss -= (double)(y_target - y_max) - log((double)total);
        const T inv_total = C(1.0) / total;
        for (Py_ssize_t v = 0; v < V; v++)
            p[v] *= inv_total;
    }
    return loss;
}

/* BPTT after rnn_forward: turns probs into dy, fills dhs (S x H) with dhraw_t = d loss / d
 * (pre-activation of h_t), and writes the gradients of [Whh | Why | bh | by] into G (that
 * layout). dhnext is H of scratch. */
RNN_KERNEL void RNN_FN(rnn_backward)(const T *RNN_RESTRICT params, Py_ssize_t H, Py_ssize_t V,
                                     Py_ssize_t S, const Py_ssize_t *RNN_RESTRICT xs,
                                     const T *RNN_RESTRICT hs, T *RNN_RESTRICT probs,
                                     T *RNN_RESTRICT dhs, T *RNN_RESTRICT dhnext, T *RNN_RESTRICT G)
{
    const T *Whh = params + H * V, *Why = Whh + H * H;
    T *dWhh = G, *dWhy = dWhh + H * H, *dbh = dWhy + V * H, *dby = dbh + H;
    for (Py_ssize_t t = 0; t < S; t++)
        probs[t * V + xs[t + 1]] -= C(1.0);
    /* dhs_t = Why^T dy_t for all t before the sweep (it does not depend on the recurrence):
     * DH = DY Why, 4 time steps x 2 vectors of columns in registers over all v */
    {
        Py_ssize_t t = 0;
#if RNN_VECTORS
        for (; t + 4 <= S; t += 4) {
            const T *d0 = probs + t * V, *d1 = d0 + V, *d2 = d1 + V, *d3 = d2 + V;
            T *o0 = dhs + t * H, *o1 = o0 + H, *o2 = o1 + H, *o3 = o2 + H;
            Py_ssize_t j = 0;
            for (; j + 2 * L <= H; j += 2 * L) {
                VEC a0 = SPLAT(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
                for (Py_ssize_t v = 0; v < V; v++) {
                    const T *w = Why + v * H + j;
                    const VEC w0 = LD(w), w1 = LD(w + L);
                    const VEC e0 = SPLAT(d0[v]), e1 = SPLAT(d1[v]), e2 = SPLAT(d2[v]), e3 = SPLAT(d3[v]);
                    a0 = VFMA(e0, w0, a0);
                    b0 = VFMA(e0, w1, b0);
                    a1 = VFMA(e1, w0, a1);
                    b1 = VFMA(e1, w1, b1);
                    a2 = VFMA(e2, w0, a2);
                    b2 = VFMA(e2, w1, b2);
                    a3 = VFMA(e3, w0, a3);
                    b3 = VFMA(e3, w1, b3);
                }
                ST(o0 + j, a0);
                ST(o0 + j + L, b0);
                ST(o1 + j, a1);
                ST(o1 + j + L, b1);
                ST(o2 + j, a2);
                ST(o2 + j + L, b2);
                ST(o3 + j, a3);
                ST(o3 + j + L, b3);
            }
            for (Py_ssize_t j1; j < H && H >= L; j = j1 + L) { /* the last vector overlaps */
                j1 = j + L <= H ? j : H - L;
                VEC a0 = SPLAT(0), a1 = a0, a2 = a0, a3 = a0;
                for (Py_ssize_t v = 0; v < V; v++) {
                    const VEC w0 = LD(Why + v * H + j1);
                    a0 = VFMA(SPLAT(d0[v]), w0, a0);
                    a1 = VFMA(SPLAT(d1[v]), w0, a1);
                    a2 = VFMA(SPLAT(d2[v]), w0, a2);
                    a3 = VFMA(SPLAT(d3[v]), w0, a3);
                }
                ST(o0 + j1, a0);
                ST(o1 + j1, a1);
                ST(o2 + j1, a2);
                ST(o3 + j1, a3);
            }
            for (; j < H; j++) {
                T a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                for (Py_ssize_t v = 0; v < V; v++) {
                    const T w0 = Why[v * H + j];
                    a0 = FMA(d0[v], w0, a0);
                    a1 = FMA(d1[v], w0, a1);
                    a2 = FMA(d2[v], w0, a2);
                    a3 = FMA(d3[v], w0, a3);
                }
                o0[j] = a0;
                o1[j] = a1;
                o2[j] = a2;
                o3[j] = a3;
            }
        }
#endif
        for (; t < S; t++)
            RNN_FN(rnn_gemv_t)(Why, probs + t * V, V, H, dhs + t * H);
    }
    /* the sweep: dhraw_t = (1 - h_t^2) (Why^T dy_t + Whh^T dhraw_{t+1}) */
    for (Py_ssize_t j = 0; j < H; j++)
        dhnext[j] = 0;
    for (Py_ssize_t t = S - 1; t >= 0; t--) {
        const T *RNN_RESTRICT h = hs + (t + 1) * H;
        T *RNN_RESTRICT d = dhs + t * H;
        for (Py_ssize_t j = 0; j < H; j++)
            d[j] = FMA(-h[j], h[j], C(1.0)) * (d[j] + dhnext[j]);
        if (t > 0) /* dhnext of the first character would be unused */
            RNN_FN(rnn_gemv_t)(Whh, d, H, H, dhnext);
    }
    /* weight gradients as matrix products after the sweep */
    RNN_FN(rnn_gemm_tn)(dWhh, dhs, H, hs, S, H, H);
    RNN_FN(rnn_gemm_tn)(dWhy, probs, V, hs + H, S, V, H);
    RNN_FN(rnn_column_sum)(dhs, S, H, dbh);
    RNN_FN(rnn_column_sum)(probs, S, V, dby);
}

/* dWxh[:, xs[t]] += dhraw_t for t = S-1 down to 0 (dWxh is H x V, zeroed by the caller) */
RNN_KERNEL void RNN_FN(rnn_wxh_grad)(T *RNN_RESTRICT dWxh, const T *RNN_RESTRICT dhs,
                                     const Py_ssize_t *RNN_RESTRICT xs, Py_ssize_t H, Py_ssize_t V,
                                     Py_ssize_t S)
{
    for (Py_ssize_t t = S - 1; t >= 0; t--) {
        const Py_ssize_t x = xs[t];
        const T *RNN_RESTRICT d = dhs + t * H;
        for (Py_ssize_t i = 0; i < H; i++)
            dWxh[i * V + x] += d[i];
    }
}

/* Clipped Adagrad over n contiguous parameters. */
RNN_KERNEL void RNN_FN(rnn_adagrad)(T *RNN_RESTRICT params, T *RNN_RESTRICT memory,
                                    const T *RNN_RESTRICT grads, Py_ssize_t n, T lr)
{
    RNN_FN(rnn_adagrad_inline)(params, memory, grads, n, lr);
}

/* Whether skipping a zero gradient is an exact no-op for every Wxh parameter:
 * p - lr * 0 / sqrt(m + eps) == p needs lr finite and >= 0 and m + eps > 0 (not NaN). */
RNN_KERNEL int RNN_FN(rnn_sparse_ok)(const T *RNN_RESTRICT memory, Py_ssize_t n, T lr)
{
    if (!(lr >= 0 && lr < INFINITY))
        return 0;
    int ok = 1;
    for (Py_ssize_t k = 0; k < n; k++)
        ok &= memory[k] + (T)RNN_ADAGRAD_EPS > 0;
    return ok;
}

/* Clipped Adagrad of Wxh (H x V) with gradient column c = sum of dhraw_t over the t with
 * xs[t] == c (t = S-1 down to 0, as rnn_wxh_grad sums them), for the characters present only:
 * the other columns have gradient exactly 0 (see rnn_sparse_ok). Each column is gathered into
 * gc/pc/mc (H each) so the update vectorises; seen (V bytes) must be all 0 and is left so. */
RNN_KERNEL void RNN_FN(rnn_wxh_adagrad_sparse)(T *RNN_RESTRICT Wxh, T *RNN_RESTRICT mWxh,
                                               const T *RNN_RESTRICT dhs,
                                               const Py_ssize_t *RNN_RESTRICT xs, Py_ssize_t H,
                                               Py_ssize_t V, Py_ssize_t S, T lr, T *RNN_RESTRICT gc,
                                               T *RNN_RESTRICT pc, T *RNN_RESTRICT mc,
                                               unsigned char *RNN_RESTRICT seen)
{
    for (Py_ssize_t t = S - 1; t >= 0; t--) {
        const Py_ssize_t c = xs[t];
        if (seen[c])
            continue;
        seen[c] = 1;
        memcpy(gc, dhs + t * H, H * sizeof(T));
        for (Py_ssize_t u = t - 1; u >= 0; u--) {
            if (xs[u] == c) {
                const T *RNN_RESTRICT d = dhs + u * H;
                for (Py_ssize_t i = 0; i < H; i++)
                    gc[i] += d[i];
            }
        }
        for (Py_ssize_t i = 0; i < H; i++) {
            pc[i] = Wxh[i * V + c];
            mc[i] = mWxh[i * V + c];
        }
        RNN_FN(rnn_adagrad_inline)(pc, mc, gc, H, lr);
        for (Py_ssize_t i = 0; i < H; i++) {
            Wxh[i * V + c] = pc[i];
            mWxh[i * V + c] = mc[i];
        }
    }
    for (Py_ssize_t t = 0; t < S; t++)
        seen[xs[t]] = 0;
}

/* Whether all n values are finite. */
RNN_KERNEL int RNN_FN(rnn_all_finite)(const T *RNN_RESTRICT a, Py_ssize_t n)
{
    int ok = 1;
    for (Py_ssize_t k = 0; k < n; k++)
        ok &= isfinite(a[k]) != 0;
    return ok;
}

#undef T
#undef C
#undef VEC
#undef VECU
#undef FMA
#if RNN_VECTORS
#undef VECI
#undef RNN_SHUF
#undef VFMA
#undef L
#undef LD
#undef ST
#undef SPLAT
#undef HSUM
#ifdef LH
#undef VECH
#undef LH
#undef LDH
#undef HSUMH
#endif
#endif

#endif /* RNN_TEMPLATE_PASS */
