# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The Cython training kernel: min-char-rnn's step loop compiled, GIL released, OpenMP across runs.

The semantics are those of ``fastrnn._reference`` (and the same arithmetic as
``fastrnn._numba_kernel``): forward pass with a max-shifted softmax and a log-sum-exp loss,
full BPTT, elementwise clipping to [-5, 5] (comparisons, so a NaN gradient stays NaN),
Adagrad, the smoothed loss, and min-char-rnn's data-pointer rule.

Layout: the parameters are one flat buffer
``[ Wxh (H*V) | Whh (H*H) | Why (V*H) | bh (H) | by (V) ]`` (see :mod:`fastrnn.model`), of
float64 or float32: every kernel is generic over the two (Cython's fused type ``floating``,
calling the ``_f64`` / ``_f32`` C kernels of ext/_rnn_simd.h). In float32 everything is
computed in float32 (the learning rate is rounded once per call) except the loss, a scalar
per character, which is accumulated in double, as is the smoothed loss.

The text arrives as a 1-D numpy array of unsigned or signed integers of any width; the kernel
reads it through a byte pointer and an element kind, loading one window of ``S + 1`` ids per
step (and checking each lies in ``[0, V)``), so no copy of the corpus is ever made.

The arithmetic of a step is in C (ext/_rnn_simd.h, with runtime AVX2 dispatch; see there for
how it is organised); the ``nogil`` cdef functions here run the step loop (data windows,
Adagrad, divergence) and the ``def`` functions at the end are thin wrappers that check
shapes, release the GIL and call them.
"""

from cython.parallel cimport prange
from libc.math cimport isfinite, INFINITY, NAN
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from cython cimport floating

import numpy as np

cdef extern from "_rnn_simd.h" nogil:
    double rnn_forward_f64(const double* params, Py_ssize_t H, Py_ssize_t V, Py_ssize_t S,
                           const Py_ssize_t* xs, const double* hprev, double* hs, double* probs)
    double rnn_forward_f32(const float* params, Py_ssize_t H, Py_ssize_t V, Py_ssize_t S,
                           const Py_ssize_t* xs, const float* hprev, float* hs, float* probs)
    void rnn_backward_f64(const double* params, Py_ssize_t H, Py_ssize_t V, Py_ssize_t S,
                          const Py_ssize_t* xs, const double* hs, double* probs, double* dhs,
                          double* dhnext, double* G)
    void rnn_backward_f32(const float* params, Py_ssize_t H, Py_ssize_t V, Py_ssize_t S,
                          const Py_ssize_t* xs, const float* hs, float* probs, float* dhs,
                          float* dhnext, float* G)
    void rnn_wxh_grad_f64(double* dWxh, const double* dhs, const Py_ssize_t* xs, Py_ssize_t H,
                          Py_ssize_t V, Py_ssize_t S)
    void rnn_wxh_grad_f32(float* dWxh, const float* dhs, const Py_ssize_t* xs, Py_ssize_t H,
                          Py_ssize_t V, Py_ssize_t S)
    void rnn_adagrad_f64(double* params, double* memory, const double* grads, Py_ssize_t n, double lr)
    void rnn_adagrad_f32(float* params, float* memory, const float* grads, Py_ssize_t n, float lr)
    int rnn_sparse_ok_f64(const double* memory, Py_ssize_t n, double lr)
    int rnn_sparse_ok_f32(const float* memory, Py_ssize_t n, float lr)
    void rnn_wxh_adagrad_sparse_f64(double* Wxh, double* mWxh, const double* dhs, const Py_ssize_t* xs,
                                    Py_ssize_t H, Py_ssize_t V, Py_ssize_t S, double lr,
                                    double* gc, double* pc, double* mc, unsigned char* seen)
    void rnn_wxh_adagrad_sparse_f32(float* Wxh, float* mWxh, const float* dhs, const Py_ssize_t* xs,
                                    Py_ssize_t H, Py_ssize_t V, Py_ssize_t S, float lr,
                                    float* gc, float* pc, float* mc, unsigned char* seen)
    int rnn_all_finite_f64(const double* a, Py_ssize_t n)
    int rnn_all_finite_f32(const float* a, Py_ssize_t n)
    const char* FASTRNN_DISPATCH
    int FASTRNN_SIMD_DISPATCH
    int FASTRNN_OPENMP
    const char* FASTRNN_CYTHON_VERSION
    const char* FASTRNN_COMPILE_ARGS
    double GRADIENT_CLIP "RNN_GRADIENT_CLIP"
    double ADAGRAD_EPS "RNN_ADAGRAD_EPS"
    double SMOOTHING "RNN_SMOOTHING"

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fastrnn_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int fastrnn_max_threads(void) { return 1; }
    #endif
    """
    int fastrnn_max_threads() nogil

# The constants of fastrnn.model, compiled in as C constants (ext/_rnn_simd.h); exported so
# the tests can check they agree.
CONSTANTS = dict(GRADIENT_CLIP=GRADIENT_CLIP, ADAGRAD_EPS=ADAGRAD_EPS, SMOOTHING=SMOOTHING)

# Statuses: those of fastrnn.model, plus internal errors the wrappers turn into exceptions.
cdef enum:
    STATUS_OK = 0
    STATUS_DIVERGED = 1
    ERR_BAD_ID = -1        # a character id outside [0, V)
    ERR_NO_MEMORY = -2     # malloc failed

#: Cython version this module was generated with, and whether it was compiled with OpenMP.
CYTHON_VERSION = FASTRNN_CYTHON_VERSION.decode("ascii")
#: Which instruction sets the kernels (ext/_rnn_simd.h) were compiled for.
SIMD_DISPATCH = FASTRNN_DISPATCH.decode("ascii")
#: The compiler flags setup.py chose for this build (besides the compiler's and Python's own).
COMPILE_ARGS = FASTRNN_COMPILE_ARGS.decode("ascii")
#: The parameter dtypes the kernels train in.
DTYPES = ("float64", "float32")


def openmp_enabled():
    """Whether this build was compiled with OpenMP (else ``train_batch`` runs on one thread)."""
    return bool(FASTRNN_OPENMP)


def simd_dispatch_enabled():
    """Whether the kernels also have an AVX2+FMA clone picked at load time."""
    return bool(FASTRNN_SIMD_DISPATCH)


def openmp_max_threads():
    """OpenMP's default thread count (1 without OpenMP)."""
    return fastrnn_max_threads()


# ---------------------------------------------------------------------------------------
# Workspace

ctypedef struct Work:
    void* hs          # (S + 1, H): hs[0] = hprev, hs[t + 1] = hidden state after char t
    void* probs       # (S, V): softmax outputs, turned into dy by the backward pass
    void* dhs         # (S, H): gradient wrt the pre-activation of each hidden state
    void* grads       # (P,): raw gradients, flat layout (the Wxh part only when it is dense)
    void* dhnext      # (H,)
    void* gc          # (H,) x 3: one Wxh column's gradient, weights and memory
    void* pc
    void* mc
    unsigned char* seen  # (V,): characters whose Wxh column is done, all 0 between steps
    Py_ssize_t* xs    # (S + 1,): the window of character ids
    void* block       # the one allocation backing the arrays above


cdef inline Py_ssize_t _n_params(Py_ssize_t H, Py_ssize_t V) noexcept nogil:
    return H * V + H * H + V * H + H + V


cdef int _work_alloc(Work* w, Py_ssize_t H, Py_ssize_t V, Py_ssize_t S, size_t item) noexcept nogil:
    """Workspace for elements of ``item`` bytes (8: float64, 4: float32)."""
    # every array starts on a multiple of 64 bytes
    cdef size_t[9] sizes
    cdef size_t total = 0, k
    sizes[0] = (S + 1) * H * item
    sizes[1] = S * V * item
    sizes[2] = S * H * item
    sizes[3] = _n_params(H, V) * item
    sizes[4] = H * item
    sizes[5] = H * item
    sizes[6] = H * item
    sizes[7] = H * item
    sizes[8] = V
    for k in range(9):
        total += (sizes[k] + 63) // 64 * 64
    cdef char* d = <char*> malloc(total + 64)
    w.block = d
    w.xs = <Py_ssize_t*> malloc((S + 1) * sizeof(Py_ssize_t))
    if d == NULL or w.xs == NULL:
        free(d)
        free(w.xs)
        w.block = NULL
        w.xs = NULL
        return ERR_NO_MEMORY
    d = d + (64 - (<size_t> d) % 64) % 64
    cdef void** slots[9]
    slots[0] = &w.hs
    slots[1] = &w.probs
    slots[2] = &w.dhs
    slots[3] = &w.grads
    slots[4] = &w.dhnext
    slots[5] = &w.gc
    slots[6] = &w.pc
    slots[7] = &w.mc
    slots[8] = <void**> &w.seen
    for k in range(9):
        slots[k][0] = d
        d += (sizes[k] + 63) // 64 * 64
    memset(w.seen, 0, V)
    return STATUS_OK


cdef void _work_free(Work* w) noexcept nogil:
    free(w.block)
    free(w.xs)
    w.block = NULL
    w.xs = NULL


# ---------------------------------------------------------------------------------------
# Reading the text

cdef inline long long _load_id(const uint8_t* data, int kind, Py_ssize_t k) noexcept nogil:
    # kind: itemsize in bytes, negative for signed integer types
    if kind == 1:
        return (<const uint8_t*> data)[k]
    elif kind == 2:
        return (<const uint16_t*> data)[k]
    elif kind == 4:
        return (<const uint32_t*> data)[k]
    elif kind == 8:
        return <long long> (<const uint64_t*> data)[k]
    elif kind == -1:
        return (<const int8_t*> data)[k]
    elif kind == -2:
        return (<const int16_t*> data)[k]
    elif kind == -4:
        return (<const int32_t*> data)[k]
    else:
        return (<const int64_t*> data)[k]


cdef int _load_window(const uint8_t* data, int kind, Py_ssize_t start, Py_ssize_t S, Py_ssize_t V,
                      Py_ssize_t* xs) noexcept nogil:
    """ids of data[start:start + S + 1] into xs; ERR_BAD_ID if one lies outside [0, V)."""
    cdef Py_ssize_t t
    cdef long long c
    for t in range(S + 1):
        c = _load_id(data, kind, start + t)
        if c < 0 or c >= V:
            return ERR_BAD_ID
        xs[t] = <Py_ssize_t> c
    return STATUS_OK


# ---------------------------------------------------------------------------------------
# The kernel (generic over float64 / float32: ``floating`` is double or float)

cdef double _forward_backward(const floating* params, Py_ssize_t H, Py_ssize_t V, Py_ssize_t S,
                              const Py_ssize_t* xs, const floating* hprev, Work* w) noexcept nogil:
    """Loss of the window ``xs`` from ``hprev``; fills ``w.hs``, ``w.dhs`` (dhraw_t) and the
    gradients of [Whh | Why | bh | by] in ``w.grads[H * V:]`` (the Wxh part is left alone)."""
    cdef floating* hs = <floating*> w.hs
    cdef floating* probs = <floating*> w.probs
    cdef floating* G = (<floating*> w.grads) + H * V
    cdef double loss
    if floating is double:
        loss = rnn_forward_f64(params, H, V, S, xs, hprev, hs, probs)
        rnn_backward_f64(params, H, V, S, xs, hs, probs, <double*> w.dhs, <double*> w.dhnext, G)
    else:
        loss = rnn_forward_f32(params, H, V, S, xs, hprev, hs, probs)
        rnn_backward_f32(params, H, V, S, xs, hs, probs, <float*> w.dhs, <float*> w.dhnext, G)
    return loss


cdef int _train_run(const uint8_t* data, int kind, Py_ssize_t N, Py_ssize_t H, Py_ssize_t V,
                    Py_ssize_t S, double lr_in, Py_ssize_t n_steps, floating* params, floating* memory,
                    floating* hprev, Py_ssize_t* position, double* smooth_loss, double* last_loss,
                    Py_ssize_t* steps_done, Work* w) noexcept nogil:
    """Advance one run by up to ``n_steps`` updates in place; returns its status.

    ``position``, ``smooth_loss`` are read and written; ``last_loss`` and ``steps_done``
    are written. Needs ``N >= S + 2`` and ``0 <= position``. The learning rate is rounded to
    the working precision once, here.
    """
    cdef Py_ssize_t P = _n_params(H, V)
    cdef Py_ssize_t nWxh = H * V
    cdef floating lr = <floating> lr_in
    cdef Py_ssize_t pos = position[0]
    cdef double smooth = smooth_loss[0]
    cdef double loss = NAN
    cdef Py_ssize_t step
    cdef int status = STATUS_OK
    cdef int sparse
    cdef floating* grads = <floating*> w.grads
    cdef floating* dhs = <floating*> w.dhs
    # Skipping the Wxh columns of characters not in the window (gradient exactly 0) is
    # bit-exact when p - lr*0/sqrt(m + eps) == p, i.e. lr finite and >= 0 and m + eps > 0
    # (memory only grows, or turns NaN together with its weight, during the run).
    if floating is double:
        sparse = rnn_sparse_ok_f64(memory, nWxh, lr)
    else:
        sparse = rnn_sparse_ok_f32(memory, nWxh, lr)
    last_loss[0] = NAN
    steps_done[0] = 0
    for step in range(n_steps):
        if pos + S + 1 >= N:
            pos = 0
            memset(hprev, 0, H * sizeof(floating))
        status = _load_window(data, kind, pos, S, V, w.xs)
        if status != STATUS_OK:
            break
        loss = _forward_backward(params, H, V, S, w.xs, hprev, w)
        last_loss[0] = loss
        if not isfinite(loss):
            status = STATUS_DIVERGED
            break
        smooth = smooth * (1.0 - SMOOTHING) + loss * SMOOTHING
        # clip to [-5, 5], then Adagrad: [Whh | Why | bh | by] in one pass, then Wxh
        if floating is double:
            rnn_adagrad_f64(params + nWxh, memory + nWxh, grads + nWxh, P - nWxh, lr)
            if sparse:
                rnn_wxh_adagrad_sparse_f64(params, memory, dhs, w.xs, H, V, S, lr, <double*> w.gc,
                                           <double*> w.pc, <double*> w.mc, w.seen)
            else:
                memset(grads, 0, nWxh * sizeof(double))
                rnn_wxh_grad_f64(grads, dhs, w.xs, H, V, S)
                rnn_adagrad_f64(params, memory, grads, nWxh, lr)
        else:
            rnn_adagrad_f32(params + nWxh, memory + nWxh, grads + nWxh, P - nWxh, lr)
            if sparse:
                rnn_wxh_adagrad_sparse_f32(params, memory, dhs, w.xs, H, V, S, lr, <float*> w.gc,
                                           <float*> w.pc, <float*> w.mc, w.seen)
            else:
                memset(grads, 0, nWxh * sizeof(float))
                rnn_wxh_grad_f32(grads, dhs, w.xs, H, V, S)
                rnn_adagrad_f32(params, memory, grads, nWxh, lr)
        memcpy(hprev, (<floating*> w.hs) + S * H, H * sizeof(floating))
        pos += S
        steps_done[0] = step + 1
    position[0] = pos
    smooth_loss[0] = smooth
    if status != STATUS_OK:
        return status
    if floating is double:
        if not rnn_all_finite_f64(params, P):
            return STATUS_DIVERGED
    else:
        if not rnn_all_finite_f32(params, P):
            return STATUS_DIVERGED
    return STATUS_OK


cdef int64_t _batch_run(const uint8_t* data, int kind, Py_ssize_t N, Py_ssize_t H, Py_ssize_t V,
                        Py_ssize_t S, double lr, Py_ssize_t n_steps, floating* params, floating* memory,
                        floating* hprev, int64_t* position, double* smooth_loss, double* last_loss,
                        int64_t* steps_done) noexcept nogil:
    """One run of ``train_batch``, with its own workspace (every local here is per thread)."""
    cdef Work w
    cdef Py_ssize_t pos = <Py_ssize_t> position[0]
    cdef Py_ssize_t done = 0
    cdef double smooth = smooth_loss[0]
    cdef double last = NAN
    cdef int status = STATUS_OK
    if n_steps > 0:
        status = _work_alloc(&w, H, V, S, sizeof(floating))
        if status == STATUS_OK:
            status = _train_run(data, kind, N, H, V, S, lr, n_steps, params, memory, hprev,
                                &pos, &smooth, &last, &done, &w)
            _work_free(&w)
    position[0] = pos
    smooth_loss[0] = smooth
    last_loss[0] = last
    steps_done[0] = done
    return status


# ---------------------------------------------------------------------------------------
# Python wrappers

cdef tuple _text(data):
    """(bytes view, element kind, length) of a 1-D integer array, without copying it."""
    arr = np.asarray(data)
    if arr.ndim != 1:
        raise ValueError(f"data must be a 1-D array of character ids, got shape {arr.shape}")
    if arr.dtype.kind not in "ui":
        raise TypeError(f"data must hold integer character ids, got dtype {arr.dtype}")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    arr = np.ascontiguousarray(arr)
    kind = arr.dtype.itemsize if arr.dtype.kind == "u" else -arr.dtype.itemsize
    return arr.view(np.uint8), kind, arr.shape[0]


cdef void _check_sizes(Py_ssize_t H, Py_ssize_t V, Py_ssize_t S, Py_ssize_t N) except *:
    if H < 1 or V < 1 or S < 1:
        raise ValueError(f"hidden size, vocabulary size and sequence length must be >= 1, got H={H}, V={V}, S={S}")
    if N < S + 2:
        raise ValueError(f"data has {N} characters; seq_length {S} needs at least {S + 2}")


cdef void _raise_status(int status) except *:
    if status == ERR_BAD_ID:
        raise ValueError("data holds a character id outside [0, vocab_size)")
    if status == ERR_NO_MEMORY:
        raise MemoryError("cannot allocate the training workspace")


def loss_and_gradients(const floating[::1] params, Py_ssize_t H, Py_ssize_t V, data, Py_ssize_t start,
                       Py_ssize_t S, const floating[::1] hprev):
    """One window's loss, raw (unclipped) gradients in the flat layout, and last hidden state.

    ``params`` and ``hprev`` are both float64 or both float32; the gradients and the hidden
    state come back in that dtype, the loss as a Python float.
    """
    cdef const uint8_t[::1] text
    cdef int kind
    cdef Py_ssize_t N
    text, kind, N = _text(data)
    if H < 1 or V < 1 or S < 1:
        raise ValueError(f"H, V and S must be >= 1, got H={H}, V={V}, S={S}")
    if params.shape[0] != _n_params(H, V):
        raise ValueError(f"params has {params.shape[0]} entries; H={H}, V={V} needs {_n_params(H, V)}")
    if hprev.shape[0] != H:
        raise ValueError(f"hprev has {hprev.shape[0]} entries, expected H={H}")
    if start < 0 or start + S + 1 > N:
        raise ValueError(f"window [{start}, {start + S + 1}) lies outside data of length {N}")
    dtype = np.float64 if floating is double else np.float32
    grads = np.zeros(_n_params(H, V), dtype=dtype)
    h_last = np.empty(H, dtype=dtype)
    cdef floating[::1] g = grads
    cdef floating[::1] hl = h_last
    cdef Work w
    cdef double loss = NAN
    cdef int status
    with nogil:
        status = _work_alloc(&w, H, V, S, sizeof(floating))
        if status == STATUS_OK:
            status = _load_window(&text[0], kind, start, S, V, w.xs)
            if status == STATUS_OK:
                w.grads = &g[0]  # the kernel writes [Whh | Why | bh | by] straight into g
                loss = _forward_backward(&params[0], H, V, S, w.xs, &hprev[0], &w)
                if floating is double:
                    rnn_wxh_grad_f64(&g[0], <double*> w.dhs, w.xs, H, V, S)
                else:
                    rnn_wxh_grad_f32(&g[0], <float*> w.dhs, w.xs, H, V, S)
                memcpy(&hl[0], (<floating*> w.hs) + S * H, H * sizeof(floating))
            _work_free(&w)
    _raise_status(status)
    return float(loss), grads, h_last


def train_steps(data, Py_ssize_t H, Py_ssize_t V, Py_ssize_t S, double lr, Py_ssize_t n_steps,
                floating[::1] params, floating[::1] memory, floating[::1] hprev, Py_ssize_t position,
                double smooth_loss):
    """Advance one run by up to ``n_steps`` Adagrad updates in place.

    Returns ``(position, smooth_loss, last_loss, steps_done, status)`` (status STATUS_BAD_ID,
    -1, when a window holds an id outside [0, V): the run stopped before reading it); ``params``, ``memory``
    and ``hprev`` (all float64 or all float32) are updated in place (the contract of
    ``fastrnn._numba_kernel.train_steps``).
    """
    cdef const uint8_t[::1] text
    cdef int kind
    cdef Py_ssize_t N
    text, kind, N = _text(data)
    _check_sizes(H, V, S, N)
    cdef Py_ssize_t P = _n_params(H, V)
    if params.shape[0] != P or memory.shape[0] != P:
        raise ValueError(f"params and memory need {P} entries for H={H}, V={V}; got {params.shape[0]} and {memory.shape[0]}")
    if hprev.shape[0] != H:
        raise ValueError(f"hprev has {hprev.shape[0]} entries, expected H={H}")
    if position < 0:
        raise ValueError(f"position must be >= 0, got {position}")
    cdef double last_loss = NAN
    cdef Py_ssize_t done = 0
    cdef int status = STATUS_OK
    cdef Work w
    if n_steps <= 0:
        return position, smooth_loss, last_loss, 0, STATUS_OK
    with nogil:
        status = _work_alloc(&w, H, V, S, sizeof(floating))
        if status == STATUS_OK:
            status = _train_run(&text[0], kind, N, H, V, S, lr, n_steps, &params[0], &memory[0],
                                &hprev[0], &position, &smooth_loss, &last_loss, &done, &w)
            _work_free(&w)
    if status != ERR_BAD_ID:  # a bad id is returned, with what was trained before it, as numba does
        _raise_status(status)
    return position, smooth_loss, last_loss, done, status


def train_batch(data, const int64_t[::1] H, const int64_t[::1] V, const int64_t[::1] S,
                const double[::1] lr, const int64_t[::1] n_steps,
                floating[::1] params, floating[::1] memory, const int64_t[::1] param_offsets,
                floating[::1] hprev, const int64_t[::1] hprev_offsets,
                int64_t[::1] position, double[::1] smooth_loss,
                double[::1] last_loss, int64_t[::1] steps_done, int64_t[::1] status,
                int threads=1):
    """Train R independent runs, in parallel across runs with OpenMP.

    Run r has hidden size ``H[r]``, vocabulary ``V[r]``, sequence length ``S[r]``, learning
    rate ``lr[r]`` and takes ``n_steps[r]`` updates; its parameters are
    the first ``_n_params(H[r], V[r])`` of ``params[param_offsets[r]:param_offsets[r + 1]]``
    (likewise ``memory``; the rest is padding) and its hidden state the first ``H[r]`` of
    ``hprev[hprev_offsets[r]:hprev_offsets[r + 1]]``, all updated in place; ``params``,
    ``memory`` and ``hprev`` are all float64 or all float32 (one precision per batch).
    ``position`` and ``smooth_loss`` are read and written; ``last_loss``, ``steps_done`` and
    ``status`` are written. Each run is computed start to finish by one thread, so results are
    bit-identical whatever ``threads`` is.
    """
    cdef const uint8_t[::1] text
    cdef int kind
    cdef Py_ssize_t N
    text, kind, N = _text(data)
    cdef Py_ssize_t R = H.shape[0]
    cdef Py_ssize_t r
    for name, arr in (("V", V), ("S", S), ("lr", lr), ("n_steps", n_steps), ("position", position),
                      ("smooth_loss", smooth_loss), ("last_loss", last_loss),
                      ("steps_done", steps_done), ("status", status)):
        if arr.shape[0] != R:
            raise ValueError(f"{name} has {arr.shape[0]} entries, H has {R}")
    if param_offsets.shape[0] != R + 1 or hprev_offsets.shape[0] != R + 1:
        raise ValueError(f"param_offsets and hprev_offsets need {R + 1} entries")
    if params.shape[0] != memory.shape[0]:
        raise ValueError("params and memory must have the same length")
    for r in range(R):
        _check_sizes(H[r], V[r], S[r], N)
        # a run may be followed by padding (each run on its own cache lines), not overlap the next
        if param_offsets[r] < 0 or param_offsets[r + 1] > params.shape[0] \
                or param_offsets[r + 1] - param_offsets[r] < _n_params(H[r], V[r]):
            raise ValueError(f"run {r}: param_offsets leave fewer than the {_n_params(H[r], V[r])} "
                             f"parameters of H={H[r]}, V={V[r]}")
        if hprev_offsets[r] < 0 or hprev_offsets[r + 1] > hprev.shape[0] \
                or hprev_offsets[r + 1] - hprev_offsets[r] < H[r]:
            raise ValueError(f"run {r}: hprev_offsets leave fewer than H={H[r]} entries")
        if position[r] < 0:
            raise ValueError(f"run {r}: position must be >= 0, got {position[r]}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if R == 0:
        return
    cdef const uint8_t* text_ptr = &text[0]
    cdef floating* params_ptr = &params[0] if params.shape[0] > 0 else NULL
    cdef floating* memory_ptr = &memory[0] if memory.shape[0] > 0 else NULL
    cdef floating* hprev_ptr = &hprev[0] if hprev.shape[0] > 0 else NULL
    with nogil:
        for r in prange(R, schedule="dynamic", chunksize=1, num_threads=threads):
            status[r] = _batch_run(text_ptr, kind, N, H[r], V[r], S[r], lr[r], n_steps[r],
                                   params_ptr + param_offsets[r], memory_ptr + param_offsets[r],
                                   hprev_ptr + hprev_offsets[r], &position[r], &smooth_loss[r],
                                   &last_loss[r], &steps_done[r])
    for r in range(R):
        if status[r] != ERR_BAD_ID:  # returned in status[r], as numba does
            _raise_status(<int> status[r])


# ---------------------------------------------------------------------------------------
# Scoring: the forward pass alone, over a long text

#: Time steps per call of the forward kernel when scoring (fastrnn._numba_kernel.SCORE_BLOCK):
#: outputs are formed for a block after its recurrence; the workspace does not grow with n.
cdef enum:
    SCORE_BLOCK = 64
SCORE_BLOCK_STEPS = SCORE_BLOCK


cdef int _score_run(const uint8_t* data, int kind, Py_ssize_t n, Py_ssize_t H, Py_ssize_t V,
                    const floating* params, double* loss_out) noexcept nogil:
    """Summed cross-entropy of reading ``data[:n]`` (n >= 2) continuously from a zero hidden
    state, into ``loss_out``; returns a status (ERR_BAD_ID, ERR_NO_MEMORY or STATUS_OK).

    Blocks of up to SCORE_BLOCK steps go through the training forward pass (rnn_forward), each
    from the last hidden state of the one before. Stops at the first block whose loss is not
    finite and reports that loss. Everything it writes is its own allocation or ``loss_out``.
    """
    cdef size_t item = sizeof(floating)
    cdef floating* hs = <floating*> malloc((SCORE_BLOCK + 1) * H * item)
    cdef floating* probs = <floating*> malloc(SCORE_BLOCK * V * item)
    cdef floating* hprev = <floating*> malloc(H * item)
    cdef Py_ssize_t* xs = <Py_ssize_t*> malloc((SCORE_BLOCK + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t start = 0, S
    cdef double total = 0.0, loss
    cdef int status = STATUS_OK
    if hs == NULL or probs == NULL or hprev == NULL or xs == NULL:
        status = ERR_NO_MEMORY
    else:
        memset(hprev, 0, H * item)
        while start < n - 1:
            S = n - 1 - start
            if S > SCORE_BLOCK:
                S = SCORE_BLOCK
            status = _load_window(data, kind, start, S, V, xs)
            if status != STATUS_OK:
                break
            if floating is double:
                loss = rnn_forward_f64(params, H, V, S, xs, hprev, hs, probs)
            else:
                loss = rnn_forward_f32(params, H, V, S, xs, hprev, hs, probs)
            total += loss
            if not isfinite(loss):
                total = loss
                break
            memcpy(hprev, hs + S * H, H * item)
            start += S
    free(hs)
    free(probs)
    free(hprev)
    free(xs)
    loss_out[0] = total
    return status


cdef void _check_score_sizes(Py_ssize_t H, Py_ssize_t V, Py_ssize_t P, Py_ssize_t n, Py_ssize_t N) except *:
    if H < 1 or V < 1:
        raise ValueError(f"H and V must be >= 1, got H={H}, V={V}")
    if P != _n_params(H, V):
        raise ValueError(f"params has {P} entries; H={H}, V={V} needs {_n_params(H, V)}")
    if n < 2 or n > N:
        raise ValueError(f"n must lie in [2, {N}] (the length of data), got {n}")


def heldout_loss(const floating[::1] params, Py_ssize_t H, Py_ssize_t V, data, Py_ssize_t n):
    """Summed cross-entropy (float64) of reading ``data[:n]`` from a zero hidden state with
    ``params`` (float64 or float32, computed in that precision); NaN or inf when it is not finite."""
    cdef const uint8_t[::1] text
    cdef int kind
    cdef Py_ssize_t N
    text, kind, N = _text(data)
    _check_score_sizes(H, V, params.shape[0], n, N)
    cdef double loss = NAN
    cdef int status
    with nogil:
        status = _score_run(&text[0], kind, n, H, V, &params[0], &loss)
    _raise_status(status)
    return loss


def heldout_loss_batch(data, Py_ssize_t n, const int64_t[::1] H, const int64_t[::1] V,
                       const floating[::1] params, const int64_t[::1] param_offsets,
                       double[::1] losses, int threads=1):
    """:func:`heldout_loss` of R networks at once, in parallel across networks with OpenMP.

    Network r has hidden size ``H[r]``, vocabulary ``V[r]`` and parameters
    ``params[param_offsets[r]:param_offsets[r + 1]]`` (all float64 or all float32); its loss
    goes to ``losses[r]``. Each network is scored by one thread, writing only ``losses[r]``
    and its own workspace, so the results do not depend on ``threads``.
    """
    cdef const uint8_t[::1] text
    cdef int kind
    cdef Py_ssize_t N
    text, kind, N = _text(data)
    cdef Py_ssize_t R = H.shape[0]
    cdef Py_ssize_t r
    if V.shape[0] != R or losses.shape[0] != R or param_offsets.shape[0] != R + 1:
        raise ValueError(f"V and losses need {R} entries and param_offsets {R + 1}, like H")
    for r in range(R):
        if param_offsets[r] < 0 or param_offsets[r + 1] > params.shape[0]:
            raise ValueError(f"network {r}: param_offsets lie outside params")
        _check_score_sizes(H[r], V[r], param_offsets[r + 1] - param_offsets[r], n, N)
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if R == 0:
        return
    cdef const uint8_t* text_ptr = &text[0]
    cdef const floating* params_ptr = &params[0]
    cdef int[::1] status = np.zeros(R, dtype=np.intc)
    with nogil:
        for r in prange(R, schedule="dynamic", chunksize=1, num_threads=threads):
            status[r] = _score_run(text_ptr, kind, n, H[r], V[r], params_ptr + param_offsets[r], &losses[r])
    for r in range(R):
        _raise_status(status[r])
