"""This machine's single-thread ceilings, the inputs of the roofline bound (:mod:`fastrnn.bench.roofline`).

:func:`measure_ceilings`: GEMM flop/s of numpy's BLAS (DGEMM, SGEMM; one thread);
the read bandwidth of each cache level, with an array that lives in it (sizes from
``/sys/devices/system/cpu/cpu0/cache``, else ``os.sysconf``; :func:`cache_sizes`) and of main
memory; and the seconds per element of the kernels' vectorised Adagrad update (clip,
accumulate, sqrt, divide) on arrays in L1, in float64 and float32.

Each is timed with a small compiled loop, so that it measures the hardware, not call overhead.
"""

from __future__ import annotations

import statistics
import time
from typing import Sequence

from .roofline import ROOFLINE_DTYPES, Ceilings, level_names

#: Cache levels are read from here (``index*/{level,type,size}``); tests point it at a fake tree.
SYSFS_CACHE = "/sys/devices/system/cpu/cpu0/cache"
_SYSCONF_CACHES = ((1, "SC_LEVEL1_DCACHE_SIZE"), (2, "SC_LEVEL2_CACHE_SIZE"), (3, "SC_LEVEL3_CACHE_SIZE"),
                   (4, "SC_LEVEL4_CACHE_SIZE"))


def _parse_size(text: str) -> int:
    """Bytes from sysfs's notation: ``32K``, ``512K``, ``32768K``, ``2M``, ``1G`` or plain digits."""
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text[:-1] if scale != 1 else text
    if not digits.isdigit():
        raise ValueError(f"cache size {text!r} is not a number with an optional K, M or G suffix")
    return int(digits) * scale


def cache_sizes(root: str = SYSFS_CACHE) -> list[tuple[int, int]]:
    """``[(level, bytes), ...]`` of the data caches one core sees, innermost first.

    From sysfs (instruction caches left out, one entry per level); where sysfs has none, from
    ``os.sysconf``; an empty list if neither knows (the model then puts everything in memory).
    """
    import glob
    import os

    levels: dict[int, int] = {}
    for index in sorted(glob.glob(os.path.join(root, "index*"))):
        try:
            with open(os.path.join(index, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(index, "level")) as f:
                level = int(f.read())
            with open(os.path.join(index, "size")) as f:
                size = _parse_size(f.read())
        except (OSError, ValueError):
            continue
        if kind != "Instruction" and size > 0:
            levels[level] = max(size, levels.get(level, 0))
    if not levels:
        for level, name in _SYSCONF_CACHES:
            try:
                size = os.sysconf(name)
            except (ValueError, OSError):
                continue
            if size and size > 0:
                levels[level] = size
    return sorted(levels.items())


def _read_kernel():
    from numba import njit

    @njit(cache=True, nogil=True, fastmath=True)
    def read_sum(a, reps):
        # Four quarters summed side by side: each becomes its own chain of vector accumulators,
        # enough independent adds to keep both load ports busy (one running sum reached about
        # two thirds of L1's bandwidth). The sums carry across passes, so no pass is hoisted.
        m = a.shape[0] // 4
        a0, a1, a2, a3 = a[:m], a[m:2 * m], a[2 * m:3 * m], a[3 * m:4 * m]
        s0 = s1 = s2 = s3 = 0.0
        for _ in range(reps):
            for i in range(m):
                s0 += a0[i]
                s1 += a1[i]
                s2 += a2[i]
                s3 += a3[i]
        return s0 + s1 + s2 + s3

    return read_sum


def _adagrad_kernel():
    from numba import njit

    from ..backends._numba_kernel import adagrad as kernels_adagrad

    @njit(cache=True, nogil=True)
    def adagrad(params, memory, g, lr, reps):
        # the kernels' own update, repeated in place (one call would be dominated by its dispatch)
        for _ in range(reps):
            kernels_adagrad(params, memory, g, lr)

    return adagrad


def _best_seconds(fn, min_seconds: float, rounds: int) -> float:
    """Median over ``rounds`` of one call's seconds, each round calling ``fn`` for min_seconds."""
    fn()
    times = []
    for _ in range(rounds):
        calls, started = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds:
                break
        times.append(elapsed / calls)
    return statistics.median(times)


_GEMM_SCRIPT = """
import json, statistics, sys, time
import numpy as np
n, min_seconds, rounds = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
out = {}
for dtype in ("float64", "float32"):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype)
    np.matmul(a, b, out=c)
    times = []
    for _ in range(rounds):
        calls, started = 0, time.perf_counter()
        while True:
            np.matmul(a, b, out=c)
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds:
                break
        times.append(elapsed / calls)
    out[dtype] = 2.0 * n ** 3 / statistics.median(times)
print(json.dumps(out))
"""


def gemm_rates(n: int = 512, min_seconds: float = 0.05, rounds: int = 5) -> dict:
    """Single-thread DGEMM and SGEMM flop/s of numpy's BLAS on n x n matrices.

    With threadpoolctl, BLAS is limited to one thread here; without it, in a child process
    whose OPENBLAS/OMP/MKL thread counts are set to 1 before numpy loads (other variables, such
    as OPENBLAS_CORETYPE, pass through unchanged).
    """
    import json
    import os
    import subprocess
    import sys

    args = [str(n), str(min_seconds), str(rounds)]
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        done = subprocess.run([sys.executable, "-c", _GEMM_SCRIPT, *args], env=env, capture_output=True,
                              text=True, check=True)
        return json.loads(done.stdout)
    import contextlib
    import io

    with threadpool_limits(limits=1, user_api="blas"):
        saved, buffer = sys.argv, io.StringIO()
        sys.argv = ["gemm", *args]
        try:
            with contextlib.redirect_stdout(buffer):
                exec(_GEMM_SCRIPT, {})
        finally:
            sys.argv = saved
    return json.loads(buffer.getvalue())


def read_bandwidth(nbytes: int, min_seconds: float = 0.05, rounds: int = 5) -> float:
    """Bytes/s of a compiled vectorised sum over ``nbytes`` of float64, read again and again."""
    import numpy as np

    read_sum = _read_kernel()
    a = np.random.default_rng(0).random(max(64, nbytes // 32 * 4))  # a multiple of 4 elements
    reps = max(1, int(1 << 20) // a.size)  # about 8 MB per call: call overhead vanishes
    return reps * a.nbytes / _best_seconds(lambda: read_sum(a, reps), min_seconds, rounds)


def adagrad_seconds(dtype: str, elements: int = 1024, min_seconds: float = 0.05, rounds: int = 5) -> float:
    """Seconds per element of the kernels' clipped Adagrad update, on arrays that stay in L1."""
    import numpy as np

    from ..network.model import GRADIENT_CLIP

    kernel = _adagrad_kernel()
    kind = np.dtype(dtype).type
    rng = np.random.default_rng(0)
    # gradients across the clip range, so both clip branches are taken as in training
    g = (rng.standard_normal(elements) * GRADIENT_CLIP).astype(dtype)
    params, memory = rng.standard_normal(elements).astype(dtype), np.full(elements, 0.1, dtype)
    lr = kind(0.1)  # in the precision of params, as the kernels pass it
    reps = max(1, (1 << 17) // elements)
    return _best_seconds(lambda: kernel(params, memory, g, lr, reps), min_seconds, rounds) / (reps * elements)


def _probe_bytes(caches: Sequence[tuple[int, int]], i: int) -> int:
    """Array size that lives in level i: half of L1; the geometric mean of the level and the one
    inside it (far from both edges); for memory, four times the last cache (at least 64 MB)."""
    if i == len(caches):
        return max(4 * caches[-1][1], 64 << 20) if caches else 64 << 20
    if i == 0:
        return caches[0][1] // 2
    return int((caches[i - 1][1] * caches[i][1]) ** 0.5)


def measure_ceilings(caches: Sequence[tuple[int, int]] | None = None, gemm_n: int = 512,
                     min_seconds: float = 0.05, rounds: int = 5, memory_bytes: int | None = None) -> Ceilings:
    """Measure this machine's single-thread ceilings (medians of ``rounds`` timings of at least
    ``min_seconds`` each). ``caches`` defaults to :func:`cache_sizes`; ``memory_bytes`` overrides
    the size of the main-memory probe (tests make everything small)."""
    caches = cache_sizes() if caches is None else list(caches)
    bandwidth = {}
    for i, name in enumerate(level_names(caches)):
        nbytes = memory_bytes if (name == "memory" and memory_bytes) else _probe_bytes(caches, i)
        bandwidth[name] = read_bandwidth(nbytes, min_seconds, rounds)
    return Ceilings(gemm_flops=gemm_rates(gemm_n, min_seconds, rounds),
                    adagrad_seconds={d: adagrad_seconds(d, min_seconds=min_seconds, rounds=rounds)
                                     for d in ROOFLINE_DTYPES},
                    caches=caches, bandwidth=bandwidth)
