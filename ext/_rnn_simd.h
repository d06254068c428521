/* Vector primitives for ext/_rnn_cython.pyx: the dense matrix-vector work of one training step.
 *
 * Why these live in C rather than in the .pyx:
 *
 * - Runtime CPU dispatch. The build uses portable flags (no -march), which on x86-64 means
 *   SSE2 only: 2 doubles per instruction and no fused multiply-add, about 2.5x slower than
 *   the Numba kernel (which LLVM compiles for the host CPU). Where the compiler supports it
 *   (probed by setup.py, which then defines FASTRNN_TARGET_CLONES), each primitive is also
 *   compiled for x86-64-v3 (AVX2 + FMA) and the loader picks the best clone for the CPU it
 *   runs on (GCC/clang `target_clones`). A Cython function cannot carry that attribute.
 * - Register blocking. The matrix-vector loops are written with GCC/clang vector extensions,
 *   several accumulators at once, sharing loads; the compiler's own vectorisation of them is
 *   poor (single accumulator chains, or shuffles). Other compilers get the plain loops.
 * - Reductions. The plain dot product needs `#pragma omp simd reduction(+:acc)` to vectorise: a compiler
 *   may not reorder a sum on its own (-ffast-math would allow it globally, but it also lets
 *   the compiler assume no NaNs, which the divergence check relies on). The pragma is
 *   honoured under -fopenmp or -fopenmp-simd and ignored otherwise (scalar: slower, equally
 *   correct).
 *
 * Every primitive is called a few times per character, never per element, so the cost of
 * the dispatch (an indirect call) is negligible. Summation orders are fixed at compile time
 * for each clone: results never depend on the thread count, and the CPU picks the same clone
 * every call, so chunked and unchunked training agree bit for bit.
 */
#ifndef FASTRNN_RNN_SIMD_H
#define FASTRNN_RNN_SIMD_H

#include <math.h>
#include <stddef.h>

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

#if defined(_MSC_VER)
#define RNN_RESTRICT __restrict
#define RNN_SIMD_REDUCTION
#else
#define RNN_RESTRICT restrict
#define RNN_PRAGMA(x) _Pragma(#x)
#define RNN_SIMD_REDUCTION RNN_PRAGMA(omp simd reduction(+:acc))
#endif

#if defined(FASTRNN_TARGET_CLONES) && FASTRNN_TARGET_CLONES
#define RNN_KERNEL __attribute__((target_clones("arch=x86-64-v3", "default"))) static
#define FASTRNN_DISPATCH "x86-64-v3 (AVX2+FMA) / baseline, chosen at load time"
#else
#define RNN_KERNEL static
#define FASTRNN_DISPATCH "baseline only"
#endif

#if defined(__GNUC__) || defined(__clang__)
/* GCC/clang vector extensions, written out explicitly because the compiler's own
 * vectorisation of these loops (register blocking across rows, reductions) is poor.
 * RNN_W doubles per vector: 4 (one AVX2 register) when the AVX2 clone exists; else 2, one
 * SSE2/NEON register (wider generic vectors on a 128-bit ISA spill to the stack: 4x slower).
 * The baseline clone of a dispatching build also gets 4-wide vectors, split in two by the
 * compiler: slower, only on pre-2013 x86-64 CPUs. */
#define RNN_VECTORS 1
#if defined(FASTRNN_TARGET_CLONES) && FASTRNN_TARGET_CLONES
#define RNN_W 4
typedef double rnn_vec __attribute__((vector_size(32)));
typedef double rnn_vecu __attribute__((vector_size(32), aligned(8), may_alias));
#define RNN_SPLAT(x) ((rnn_vec){(x), (x), (x), (x)})
#define RNN_HSUM(a) (((a)[0] + (a)[1]) + ((a)[2] + (a)[3]))
#else
#define RNN_W 2
typedef double rnn_vec __attribute__((vector_size(16)));
typedef double rnn_vecu __attribute__((vector_size(16), aligned(8), may_alias));
#define RNN_SPLAT(x) ((rnn_vec){(x), (x)})
#define RNN_HSUM(a) ((a)[0] + (a)[1])
#endif
#define RNN_LD(p) (*(const rnn_vecu *)(p))
#define RNN_ST(p, v) (*(rnn_vecu *)(p) = (v))
#else
#define RNN_VECTORS 0
#endif

/* out[i] = sum_j W[i, j] * x[j]   (W is rows x cols, row-major) */
RNN_KERNEL void rnn_gemv(const double *RNN_RESTRICT W, const double *RNN_RESTRICT x,
                         Py_ssize_t rows, Py_ssize_t cols, double *RNN_RESTRICT out)
{
    Py_ssize_t i = 0;
#if RNN_VECTORS
    /* four rows at a time: four independent accumulators sharing each load of x */
    const Py_ssize_t jv = cols - cols % RNN_W;
    for (; i + 4 <= rows; i += 4) {
        const double *w0 = W + i * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;
        rnn_vec a0 = RNN_SPLAT(0.0), a1 = a0, a2 = a0, a3 = a0;
        for (Py_ssize_t j = 0; j < jv; j += RNN_W) {
            const rnn_vec xv = RNN_LD(x + j);
            a0 += RNN_LD(w0 + j) * xv;
            a1 += RNN_LD(w1 + j) * xv;
            a2 += RNN_LD(w2 + j) * xv;
            a3 += RNN_LD(w3 + j) * xv;
        }
        double s0 = RNN_HSUM(a0), s1 = RNN_HSUM(a1), s2 = RNN_HSUM(a2), s3 = RNN_HSUM(a3);
        for (Py_ssize_t j = jv; j < cols; j++) {
            s0 += w0[j] * x[j];
            s1 += w1[j] * x[j];
            s2 += w2[j] * x[j];
            s3 += w3[j] * x[j];
        }
        out[i] = s0;
        out[i + 1] = s1;
        out[i + 2] = s2;
        out[i + 3] = s3;
    }
#endif
    for (; i < rows; i++) {
        const double *RNN_RESTRICT w = W + i * cols;
        double acc = 0.0;
        RNN_SIMD_REDUCTION
        for (Py_ssize_t j = 0; j < cols; j++)
            acc += w[j] * x[j];
        out[i] = acc;
    }
}

/* out[j] += sum_i g[i] * W[i, j]   (out += W^T g) */
RNN_KERNEL void rnn_gemv_t_acc(const double *RNN_RESTRICT W, const double *RNN_RESTRICT g,
                               Py_ssize_t rows, Py_ssize_t cols, double *RNN_RESTRICT out)
{
    Py_ssize_t j = 0;
#if RNN_VECTORS
    /* four vectors of columns at a time, even and odd rows in separate accumulators (8 chains) */
    for (; j + 4 * RNN_W <= cols; j += 4 * RNN_W) {
        rnn_vec a0 = RNN_LD(out + j), a1 = RNN_LD(out + j + RNN_W), a2 = RNN_LD(out + j + 2 * RNN_W), a3 = RNN_LD(out + j + 3 * RNN_W);
        rnn_vec b0 = RNN_SPLAT(0.0), b1 = b0, b2 = b0, b3 = b0;
        Py_ssize_t i = 0;
        for (; i + 2 <= rows; i += 2) {
            const rnn_vec ga = RNN_SPLAT(g[i]), gb = RNN_SPLAT(g[i + 1]);
            const double *wa = W + i * cols + j, *wb = wa + cols;
            a0 += ga * RNN_LD(wa);
            a1 += ga * RNN_LD(wa + RNN_W);
            a2 += ga * RNN_LD(wa + 2 * RNN_W);
            a3 += ga * RNN_LD(wa + 3 * RNN_W);
            b0 += gb * RNN_LD(wb);
            b1 += gb * RNN_LD(wb + RNN_W);
            b2 += gb * RNN_LD(wb + 2 * RNN_W);
            b3 += gb * RNN_LD(wb + 3 * RNN_W);
        }
        if (i < rows) {
            const rnn_vec ga = RNN_SPLAT(g[i]);
            const double *wa = W + i * cols + j;
            a0 += ga * RNN_LD(wa);
            a1 += ga * RNN_LD(wa + RNN_W);
            a2 += ga * RNN_LD(wa + 2 * RNN_W);
            a3 += ga * RNN_LD(wa + 3 * RNN_W);
        }
        RNN_ST(out + j, a0 + b0);
        RNN_ST(out + j + RNN_W, a1 + b1);
        RNN_ST(out + j + 2 * RNN_W, a2 + b2);
        RNN_ST(out + j + 3 * RNN_W, a3 + b3);
    }
    for (; j + RNN_W <= cols; j += RNN_W) {
        rnn_vec a0 = RNN_LD(out + j);
        for (Py_ssize_t i = 0; i < rows; i++)
            a0 += RNN_SPLAT(g[i]) * RNN_LD(W + i * cols + j);
        RNN_ST(out + j, a0);
    }
#endif
    if (j < cols) {
        for (Py_ssize_t i = 0; i < rows; i++) {
            const double gi = g[i];
            const double *RNN_RESTRICT w = W + i * cols;
            for (Py_ssize_t k = j; k < cols; k++)
                out[k] += gi * w[k];
        }
    }
}

/* D[i, j] += sum_t G[t * ldg + i] * X[t * cols + j]   for t = 0 .. n - 1 in order
 * (D += G^T X: D is rows x cols; G holds n rows of length >= rows, stride ldg; X is n x cols).
 * Each block of D is accumulated in registers over all t before it is stored, and every
 * element is summed in the order t = 0, 1, ... whichever path computes it. */
RNN_KERNEL void rnn_ger_acc(double *RNN_RESTRICT D, const double *RNN_RESTRICT G, Py_ssize_t ldg,
                            const double *RNN_RESTRICT X, Py_ssize_t n, Py_ssize_t rows, Py_ssize_t cols)
{
    Py_ssize_t i = 0;
#if RNN_VECTORS
    /* two rows x four vectors of columns at a time: 8 accumulators sharing each load of X */
    for (; i + 2 <= rows; i += 2) {
        double *da = D + i * cols, *db = da + cols;
        Py_ssize_t j = 0;
        for (; j + 4 * RNN_W <= cols; j += 4 * RNN_W) {
            rnn_vec a0 = RNN_LD(da + j), a1 = RNN_LD(da + j + RNN_W), a2 = RNN_LD(da + j + 2 * RNN_W), a3 = RNN_LD(da + j + 3 * RNN_W);
            rnn_vec b0 = RNN_LD(db + j), b1 = RNN_LD(db + j + RNN_W), b2 = RNN_LD(db + j + 2 * RNN_W), b3 = RNN_LD(db + j + 3 * RNN_W);
            for (Py_ssize_t t = 0; t < n; t++) {
                const rnn_vec ga = RNN_SPLAT(G[t * ldg + i]), gb = RNN_SPLAT(G[t * ldg + i + 1]);
                const double *x = X + t * cols + j;
                const rnn_vec x0 = RNN_LD(x), x1 = RNN_LD(x + RNN_W), x2 = RNN_LD(x + 2 * RNN_W), x3 = RNN_LD(x + 3 * RNN_W);
                a0 += ga * x0;
                a1 += ga * x1;
                a2 += ga * x2;
                a3 += ga * x3;
                b0 += gb * x0;
                b1 += gb * x1;
                b2 += gb * x2;
                b3 += gb * x3;
            }
            RNN_ST(da + j, a0);
            RNN_ST(da + j + RNN_W, a1);
            RNN_ST(da + j + 2 * RNN_W, a2);
            RNN_ST(da + j + 3 * RNN_W, a3);
            RNN_ST(db + j, b0);
            RNN_ST(db + j + RNN_W, b1);
            RNN_ST(db + j + 2 * RNN_W, b2);
            RNN_ST(db + j + 3 * RNN_W, b3);
        }
        for (; j + RNN_W <= cols; j += RNN_W) {
            rnn_vec a0 = RNN_LD(da + j), b0 = RNN_LD(db + j);
            for (Py_ssize_t t = 0; t < n; t++) {
                const rnn_vec x0 = RNN_LD(X + t * cols + j);
                a0 += RNN_SPLAT(G[t * ldg + i]) * x0;
                b0 += RNN_SPLAT(G[t * ldg + i + 1]) * x0;
            }
            RNN_ST(da + j, a0);
            RNN_ST(db + j, b0);
        }
        for (; j < cols; j++) {
            double a = da[j], b = db[j];
            for (Py_ssize_t t = 0; t < n; t++) {
                a += G[t * ldg + i] * X[t * cols + j];
                b += G[t * ldg + i + 1] * X[t * cols + j];
            }
            da[j] = a;
            db[j] = b;
        }
    }
#endif
    for (; i < rows; i++) {
        double *RNN_RESTRICT d = D + i * cols;
        for (Py_ssize_t t = 0; t < n; t++) {
            const double g = G[t * ldg + i];
            const double *RNN_RESTRICT x = X + t * cols;
            for (Py_ssize_t j = 0; j < cols; j++)
                d[j] += g * x[j];
        }
    }
}

/* Clip each gradient to [-5, 5] and take one Adagrad step:
 * mem += g*g; p -= lr * g / sqrt(mem + 1e-8). The clip uses comparisons, not fmin/fmax, so a
 * NaN gradient stays NaN (and makes the parameter NaN, which the caller detects). It vectorises
 * (compare + blend) under -fno-trapping-math, which setup.py passes. */
RNN_KERNEL void rnn_adagrad(double *RNN_RESTRICT params, double *RNN_RESTRICT memory,
                            const double *RNN_RESTRICT grads, Py_ssize_t n, double lr)
{
    for (Py_ssize_t k = 0; k < n; k++) {
        double g = grads[k];
        g = g > RNN_GRADIENT_CLIP ? RNN_GRADIENT_CLIP : g;
        g = g < -RNN_GRADIENT_CLIP ? -RNN_GRADIENT_CLIP : g;
        const double m = memory[k] + g * g;
        memory[k] = m;
        params[k] -= lr * g / sqrt(m + RNN_ADAGRAD_EPS);
    }
}

#endif
