"""Side-by-side speed measurements of the backends, for ``fastrnn bench`` and README's table.

The machine this runs on is shared and noisy, so every figure is a median over rounds in
which the contenders run in turn (A B A B ...), and ratios are the medians of the ratios
taken round by round: a slow patch of the machine then slows both sides of a ratio alike.

The roofline (``fastrnn bench --roofline``, :func:`roofline`)
------------------------------------------------------------
How close a kernel is to the hardware: a lower bound on the time of one training step, from
this machine's measured single-thread ceilings and a count of the step's work, and the share
of it each compiled kernel reaches (bound / measured time).

Ceilings (:func:`measure_ceilings`): GEMM flop/s of numpy's BLAS (DGEMM, SGEMM; one thread);
the read bandwidth of each cache level, with an array that lives in it (sizes from
``/sys/devices/system/cpu/cpu0/cache``, else ``os.sysconf``; :func:`cache_sizes`) and of main
memory; and the seconds per element of the kernels' vectorised Adagrad update (clip,
accumulate, sqrt, divide) on arrays in L1, in float64 and float32.

Work of one step at hidden size H, sequence length S, vocabulary V, w bytes per number
(:func:`step_model`):

- flops = 2H^2 (2S - 1) + 6SVH + 2SH^2: the 2S - 1 sequential Whh mat-vecs (S forward, S - 1
  backward; the one at t = 0 feeds nothing), Why h, Why^T dy and dWhy per character, and dWhh;
- Adagrad elements = H^2 + VH + H + V + cH: all of Whh, Why, bh, by and the Wxh columns of the
  c distinct characters of the sequence (the kernels skip the zero ones; c is measured on the
  corpus, at most S);
- bytes: the recurrence reads Whh (2S - 1) times, (2S - 1) H^2 w bytes, from the innermost level
  that holds H^2 w; the update moves 5w bytes per Adagrad element (read parameter, memory,
  gradient; write parameter, memory) and the GEMM-shaped products (3VH + H^2) w (read Why twice,
  write dWhy and dWhh), from the innermost level that holds the whole state, 3Pw bytes
  (parameters, memory and gradient; P parameters).

Bound (:func:`roofline_bound`): each resource alone needs its work over its ceiling (flops at
the GEMM rate; Adagrad elements at their rate; for each memory level, every byte from that level
or beyond, since it passes through it, at its read bandwidth); the step needs at least the
largest of these, and that resource is the one named as setting the bound. The model is
optimistic on purpose (perfect overlap, a cache holds its full size, mat-vecs at GEMM speed),
so a kernel cannot reach 100%.

Where the time goes (``fastrnn bench --phases``, :func:`step_phases`)
--------------------------------------------------------------------
The numba kernel's step split into its phases (:data:`PHASES`: recurrence, outputs and softmax,
backward sweep, weight gradients, Adagrad, Wxh columns), each timed alone and set against its
own share of the step's work (:func:`phase_models`; the shares add up to the step's model).
The sum of the phases' own bounds is a second, less optimistic bound: a kernel that runs every
phase at its ceiling but one after the other, as the step's data dependencies mostly force.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from .backends import Backend, BackendUnavailable, get_backend
from .corpus import Corpus
from .model import TrainState
from .objective import Objective

#: The (hidden size, sequence length) pairs the benchmarks cover.
CONFIGS = ((20, 5), (100, 25), (410, 25))
#: Aim for timings of at least this many seconds, so timer resolution and call overhead vanish.
MIN_SECONDS = 0.05


@dataclass
class RateRow:
    backend: str
    dtype: str
    hidden: int
    seq_length: int
    steps_per_second: float
    ratio_to_numpy: float | None
    ratio_to_float64: float | None


def _time_training(backend: Backend, corpus: Corpus, hidden: int, seq_length: int, steps: int, dtype: str) -> float:
    state = TrainState.fresh(hidden, seq_length, 0.1, corpus.vocab_size, seed=0, dtype=dtype)
    started = time.perf_counter()
    backend.train_steps(corpus.data, state, steps)
    return time.perf_counter() - started


def _calibrate(backend: Backend, corpus: Corpus, hidden: int, seq_length: int, dtype: str) -> int:
    """Steps that take about MIN_SECONDS (after a warm-up that also compiles)."""
    _time_training(backend, corpus, hidden, seq_length, 2, dtype)
    return _calibrated_count(lambda steps: _time_training(backend, corpus, hidden, seq_length, steps, dtype),
                             MIN_SECONDS, 1 << 16)


def _calibrated_count(seconds_of, target: float, limit: int) -> int:
    """How many repeats of some work take about ``target`` seconds; ``seconds_of(n)`` times n of
    them (grown 4x at a time until a timing is long enough to scale from, or ``limit``)."""
    count = 1
    while True:
        elapsed = seconds_of(count)
        if elapsed >= target / 4 or count >= limit:
            return max(1, int(count * target / max(elapsed, 1e-9)))
        count *= 4


def step_rates(corpus: Corpus, backends: Sequence[str], configs=CONFIGS, rounds: int = 5,
               dtypes: Sequence[str] = ("float64",)) -> list[RateRow]:
    """Training steps per second of each (backend, dtype) at each config, single thread, interleaved."""
    contenders = []
    for name in backends:
        try:
            backend = get_backend(name)
        except BackendUnavailable:
            continue
        contenders += [(backend, dtype) for dtype in dtypes if dtype in backend.dtypes]
    rows = []
    for hidden, seq_length in configs:
        steps = {(b.name, d): _calibrate(b, corpus, hidden, seq_length, d) for b, d in contenders}
        rates = {key: [] for key in steps}
        for _ in range(rounds):
            for b, d in contenders:
                key = (b.name, d)
                rates[key].append(steps[key] / _time_training(b, corpus, hidden, seq_length, steps[key], d))

        def ratio(key, baseline):
            if baseline not in rates or key == baseline:
                return None
            return statistics.median(r / n for r, n in zip(rates[key], rates[baseline]))

        for b, d in contenders:
            key = (b.name, d)
            rows.append(RateRow(b.name, d, hidden, seq_length, statistics.median(rates[key]),
                                ratio(key, ("numpy", "float64")) if key != ("numpy", "float64") else 1.0,
                                ratio(key, (b.name, "float64"))))
    return rows


def thread_speedup(corpus: Corpus, backend: str, hidden: int, seq_length: int, beta: int, alpha: int,
                   rounds: int = 5) -> tuple[float, float, float, float, float]:
    """(seconds with 1 thread, seconds with 2 threads, median speed-up, the ideal speed-up, the
    median share of it) of one evaluation of F.

    Each evaluation is on a new Objective so the memo serves nothing: ``beta`` trainings of
    ``alpha`` steps at one integer corner. The ideal speed-up is what this machine gives ``beta``
    independent compute tasks of the same total length (:class:`IdealTasks`), measured in the
    same rounds, so that both see the same neighbours on a shared machine; the share is the
    median over rounds of (speed-up / ideal speed-up) in that round.
    """
    point = (hidden, seq_length, 0.1)

    def evaluation(threads):
        F = Objective(corpus, alpha=alpha, beta=beta, threads=threads, backend=backend, kind="paper")
        started = time.perf_counter()
        F(point)
        return time.perf_counter() - started

    # compile, and start the thread pool (the first parallel launch), outside the timing
    for threads in (1, 2):
        Objective(corpus, alpha=2, beta=2, threads=threads, backend=backend, kind="paper")(point)
    ideal = IdealTasks(beta, evaluation(1) / beta)
    times: dict = {1: [], 2: [], "ideal 1": [], "ideal 2": []}
    for _ in range(rounds):
        for threads in (1, 2):
            times[threads].append(evaluation(threads))
            times[f"ideal {threads}"].append(ideal.seconds(threads))
    speedups = [a / b for a, b in zip(times[1], times[2])]
    ideal_speedups = [a / b for a, b in zip(times["ideal 1"], times["ideal 2"])]
    return (statistics.median(times[1]), statistics.median(times[2]), statistics.median(speedups),
            statistics.median(ideal_speedups), statistics.median(a / b for a, b in zip(speedups, ideal_speedups)))


class IdealTasks:
    """``tasks`` independent compute tasks of ``task_seconds`` each, in one parallel call: the
    speed-up that threads can give work of that grain on this machine (the ceiling for an
    evaluation's runs).

    Each task updates its own row, s = s * b + a, over 512 float64 elements (L1-resident, so it
    measures the cores, not shared memory bandwidth); rows are padded so no two tasks write to
    one cache line. The tasks are handed out one at a time, as the backends hand out runs.
    """

    N = 512
    PAD = 64

    def __init__(self, tasks: int, task_seconds: float):
        self._run = _ideal_tasks_kernel()
        rng = np.random.default_rng(0)
        shape = (tasks, self.N + self.PAD)
        self.s, self.a, self.b = np.zeros(shape), rng.random(shape), 0.5 * rng.random(shape)
        self.reps = 16
        self.seconds(1)  # compile
        target = tasks * max(task_seconds, 1e-4)
        while (elapsed := self.seconds(1)) < target / 4:  # long enough that the launch is a small part
            self.reps *= 4
        for _ in range(2):
            self.reps = max(1, round(self.reps * target / elapsed))
            elapsed = self.seconds(1)

    def seconds(self, threads: int) -> float:
        import numba

        threads = min(threads, numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(threads)
        with numba.parallel_chunksize(1):
            started = time.perf_counter()
            self._run(self.s, self.a, self.b, self.N, self.reps)
            return time.perf_counter() - started


# -- executors: the dask executor against the threads executor -------------------------------------
#: (hidden size, sequence length) of the executor comparison: a mid-sized and the smallest sane run.
EXECUTOR_CONFIGS = ((100, 25), (20, 5))


@dataclass
class ExecutorRow:
    hidden: int
    seq_length: int
    beta: int
    threads_seconds: float
    dask_seconds: float
    #: Median over rounds of (threads time / dask time): dask's throughput as a share of threads'.
    ratio: float


def _evaluation_seconds(corpus: Corpus, executor, hidden: int, seq_length: int, beta: int, alpha: int,
                        evaluations: int, salt: int) -> float:
    """Seconds per evaluation of F at one integer corner, on new Objectives (nothing from a memo).

    Each evaluation has its own learning rate, so no two batches are the same task for Dask either.
    """
    started = time.perf_counter()
    for k in range(evaluations):
        Objective(corpus, alpha=alpha, beta=beta, executor=executor)((hidden, seq_length, 0.1 + 1e-9 * (salt + k)))
    return (time.perf_counter() - started) / evaluations


def executor_comparison(corpus: Corpus, dask_executor, threads: int = 2, configs=EXECUTOR_CONFIGS, beta: int = 8,
                        alpha: int = 100, rounds: int = 7) -> list[ExecutorRow]:
    """Evaluations of F on ``dask_executor`` against the threads executor, in interleaved rounds.

    Each round times a few evaluations (at least ~0.2 s of work) on each executor in turn.
    """
    from .executors import ThreadExecutor

    on_threads = ThreadExecutor(threads)
    rows = []
    for hidden, seq_length in configs:
        for executor in (on_threads, dask_executor):  # compile, warm up, ship the text
            _evaluation_seconds(corpus, executor, hidden, seq_length, beta, alpha, 1, salt=10**6)
        once = _evaluation_seconds(corpus, on_threads, hidden, seq_length, beta, alpha, 1, salt=2 * 10**6)
        evaluations = max(1, min(50, int(0.2 / max(once, 1e-6))))
        times: dict[str, list[float]] = {"threads": [], "dask": []}
        for r in range(rounds):
            salt = 1000 * r
            times["threads"].append(_evaluation_seconds(corpus, on_threads, hidden, seq_length, beta, alpha,
                                                        evaluations, salt))
            times["dask"].append(_evaluation_seconds(corpus, dask_executor, hidden, seq_length, beta, alpha,
                                                     evaluations, salt + 500))
        rows.append(ExecutorRow(hidden, seq_length, beta, statistics.median(times["threads"]),
                                statistics.median(times["dask"]),
                                statistics.median(t / d for t, d in zip(times["threads"], times["dask"]))))
    return rows


def dask_task_overhead(corpus: Corpus, dask_executor, tasks: int = 64, rounds: int = 7) -> dict:
    """Fixed costs of the dask executor: a batch of one tiny run (the latency every batch pays),
    and ``tasks`` tiny tasks in one batch (per task, the scheduling cost that grouping amortises)."""
    from .backends import RunSpec, get_backend
    from .dask_executor import _train_group

    backend = get_backend("numba")
    key = dask_executor.ship(corpus.data)
    client = dask_executor.client
    latency, per_task = [], []
    for r in range(rounds):
        spec = RunSpec(20, 5, 0.1 + 1e-9 * r, corpus.vocab_size, 0, 1)
        started = time.perf_counter()
        dask_executor.run(backend, corpus.data, [spec])
        latency.append(time.perf_counter() - started)
        specs = [[RunSpec(20, 5, 0.1 + 1e-9 * r, corpus.vocab_size, seed, 1)] for seed in range(tasks)]
        started = time.perf_counter()
        client.gather(client.map(_train_group, ["numba"] * tasks, [key] * tasks, specs, pure=False))
        per_task.append((time.perf_counter() - started) / tasks)
    return dict(batch_latency=statistics.median(latency), per_task=statistics.median(per_task),
                workers=dask_executor.workers())


def tuning_step_profile(corpus: Corpus, executor, beta: int = 8, alpha: int = 100, steps: int = 5,
                        x0=(24.3, 6.6, 0.1)) -> dict:
    """Where the time of a gradient-descent step goes: training batches (``executor.run``) and the
    rest (planning corners, combining, the optimizer, run records), which no cluster shortens.

    Returns seconds per step (``step``), of it in training batches (``batch``, which includes the
    executor's fixed latency: see :func:`dask_task_overhead`) and outside them (``serial``), their
    share ``serial_share``, and the trainings per step (``runs_per_step``).
    """
    from .optimize import minimize

    F = Objective(corpus, alpha=alpha, beta=beta, executor=executor)
    inner = F.executor
    in_batches = [0.0]
    original = inner.run

    def timed_run(backend, data, specs):
        started = time.perf_counter()
        try:
            return original(backend, data, specs)
        finally:
            in_batches[0] += time.perf_counter() - started

    inner.run = timed_run
    try:
        minimize(F, x0=list(x0), method="gd", max_steps=1, step=0.1)  # warm up
        in_batches[0] = 0.0
        runs_before = F.counters.trainings_run
        started = time.perf_counter()
        minimize(F, x0=list(x0), method="gd", max_steps=steps, step=0.1, seed=1)
        total = time.perf_counter() - started
    finally:
        del inner.run
    runs = F.counters.trainings_run - runs_before
    return dict(step=total / steps, serial=(total - in_batches[0]) / steps, serial_share=1 - in_batches[0] / total,
                runs_per_step=runs / steps, batch=in_batches[0] / steps)


def dask_markdown(rows: Sequence[ExecutorRow], overhead: dict, threads: int) -> str:
    lines = [f"| H | S | beta | {threads} threads (s) | dask, {overhead['workers']} workers (s) | dask throughput / threads |",
             "|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row.hidden} | {row.seq_length} | {row.beta} | {row.threads_seconds:.4f} | "
                     f"{row.dask_seconds:.4f} | {row.ratio:.2f}x |")
    lines.append("")
    lines.append(f"Latency of a one-run batch: {overhead['batch_latency'] * 1e3:.1f} ms; "
                 f"scheduling cost per task in a batch of many: {overhead['per_task'] * 1e3:.2f} ms.")
    return "\n".join(lines)


# -- roofline: this machine's ceilings, a lower bound per training step, and the share reached ----
#: Cache levels are read from here (``index*/{level,type,size}``); tests point it at a fake tree.
SYSFS_CACHE = "/sys/devices/system/cpu/cpu0/cache"
#: What the bounds are taken for: every CONFIGS entry in both precisions, on the compiled kernels.
ROOFLINE_DTYPES = ("float64", "float32")
ROOFLINE_BACKENDS = ("numba", "cython")
_ITEMSIZE = {"float64": 8, "float32": 4}
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


def level_names(caches: Sequence[tuple[int, int]]) -> list[str]:
    """Names of the places data can live, innermost first: ``L1``, ``L2``, ... then ``memory``."""
    return [f"L{level}" for level, _ in caches] + ["memory"]


def home_level(nbytes: float, caches: Sequence[tuple[int, int]]) -> int:
    """Index (into :func:`level_names`) of the innermost level that holds ``nbytes``.

    Optimistic (a cache is taken to hold its full size of one array), as a lower bound must be.
    """
    for i, (_, size) in enumerate(caches):
        if nbytes <= size:
            return i
    return len(caches)


@dataclass(frozen=True)
class StepModel:
    """The work of one training step of min-char-rnn at (H, S, V) in one precision.

    See :func:`step_model` for the counts.
    """
    hidden: int
    seq_length: int
    vocab_size: int
    itemsize: int
    flops: float
    adagrad_elements: float
    whh_bytes: float
    recurrence_bytes: float
    state_bytes: float
    update_bytes: float


def step_model(hidden: int, seq_length: int, vocab_size: int, itemsize: int = 8,
               wxh_columns: float | None = None) -> StepModel:
    """Count the work of one training step (the model the roofline bound is taken from).

    With H hidden units, S characters per step, V characters in the vocabulary, w bytes a number:

    - **Flops** (multiply and add counted as two): S mat-vecs Whh h forward and S - 1 of Whh^T dh
      backward (the one at t = 0 feeds nothing), each 2H^2; the logits Why h, the back-projection
      Why^T dy and the weight gradient dWhy, each 2VH per character; the weight gradient dWhh,
      2H^2 per character. In all 6SVH + 4SH^2 - 2H^2. (tanh, softmax and the Wxh column adds
      are O(S(H + V)) and left out.)
    - **Adagrad elements** (clip, square-accumulate, sqrt, divide): every entry of Whh, Why, bh
      and by, and the Wxh columns of the characters in the sequence (the compiled kernels skip
      the others, whose gradient is zero): H^2 + VH + H + V + H c, with c the number of distinct
      characters per sequence (at most S; ``wxh_columns``, default S).
    - **Bytes.** The recurrence reads Whh once per sequential mat-vec, (2S - 1) H^2 w bytes, with a
      working set of Whh alone (H^2 w). The update reads parameters, Adagrad memory and gradient
      and writes parameters and memory, 5 w bytes per Adagrad element, and the GEMM-shaped
      products read Why twice and write dWhy and dWhh, (3VH + H^2) w; these come from wherever
      the whole state (parameters, memory, gradient: 3 P w, P the parameter count) lives between
      steps.
    """
    H, S, V, w = hidden, seq_length, vocab_size, itemsize
    c = S if wxh_columns is None else wxh_columns
    matvecs = 2 * S - 1
    flops = 2.0 * H * H * matvecs + 3 * 2.0 * V * H * S + 2.0 * H * H * S
    adagrad = float(H * H + V * H + H + V + H * c)
    parameters = H * V + H * H + V * H + H + V
    return StepModel(H, S, V, w, flops, adagrad, whh_bytes=float(H * H * w),
                     recurrence_bytes=float(matvecs * H * H * w), state_bytes=float(3 * parameters * w),
                     update_bytes=float(5 * adagrad * w + (3 * V * H + H * H) * w))


@dataclass
class Ceilings:
    """This machine's single-thread ceilings, as :func:`measure_ceilings` measured them."""
    #: GEMM flop/s through numpy's BLAS, per dtype name.
    gemm_flops: dict
    #: Seconds per vectorised Adagrad element (clip, sqrt, divide), per dtype name.
    adagrad_seconds: dict
    #: ``[(level, bytes), ...]`` as :func:`cache_sizes` gives them.
    caches: list
    #: Read bandwidth in bytes/s, per name of :func:`level_names` (``L1`` ... ``memory``).
    bandwidth: dict


def roofline_bound(model: StepModel, ceilings: Ceilings, dtype: str) -> tuple[float, str, dict]:
    """(seconds, resource, seconds per resource): the lower bound on one step and what sets it.

    Each resource alone needs at least its work over its ceiling; the step needs at least the
    largest of these (perfect overlap, the roofline convention). Resources: ``gemm`` (all flops at
    the BLAS GEMM rate), ``adagrad`` (the elements at the measured rate), and each memory level:
    every byte that comes from that level or beyond passes through it, at its read bandwidth.
    """
    names = level_names(ceilings.caches)
    per_level = [0.0] * len(names)
    per_level[home_level(model.whh_bytes, ceilings.caches)] += model.recurrence_bytes
    per_level[home_level(model.state_bytes, ceilings.caches)] += model.update_bytes
    times = {"gemm": model.flops / ceilings.gemm_flops[dtype],
             "adagrad": model.adagrad_elements * ceilings.adagrad_seconds[dtype]}
    for i, name in enumerate(names):
        through = sum(per_level[i:])
        if through:
            times[name] = through / ceilings.bandwidth[name]
    resource = max(times, key=times.get)
    return times[resource], resource, times


def mean_distinct(data, seq_length: int) -> float:
    """Mean number of distinct characters in the sequences training reads (0, S, 2S, ...)."""
    import numpy as np

    n = (len(data) - 1) // seq_length
    if n < 1:
        return float(min(seq_length, len(set(data.tolist()))))
    windows = np.sort(np.asarray(data[: n * seq_length]).reshape(n, seq_length), axis=1)
    return float(1 + (np.diff(windows, axis=1) != 0).sum(axis=1).mean())


def step_bound(corpus: Corpus, ceilings: Ceilings, hidden: int, seq_length: int, dtype: str) -> tuple[float, str, dict]:
    """:func:`roofline_bound` of one training step on ``corpus`` (c measured on it)."""
    model = step_model(hidden, seq_length, corpus.vocab_size, _ITEMSIZE[dtype],
                       wxh_columns=mean_distinct(corpus.data, seq_length))
    return roofline_bound(model, ceilings, dtype)


# -- where a step's time goes: the phases of the numba kernel, each against its own bound -----------
#: The phases of one training step of the numba kernel, in the order it runs them.
PHASES = ("recurrence", "outputs, softmax", "backward sweep", "weight gradients", "adagrad", "Wxh columns")


def phase_models(model: StepModel, wxh_columns: float) -> dict:
    """:func:`step_model`'s counts split by phase (they add up to ``model``), as StepModels.

    - recurrence: the S forward mat-vecs, 2SH^2 flops, S H^2 w bytes from Whh's level;
    - outputs, softmax: Why h for every t, 2SVH flops, Why read once (VH w);
    - backward sweep: Why^T dy for every t and the S - 1 mat-vecs Whh^T dh, 2SVH + 2(S - 1)H^2
      flops, Why read once and (S - 1) H^2 w bytes from Whh's level;
    - weight gradients: dWhh and dWhy, 2SH^2 + 2SVH flops, (H^2 + VH) w written;
    - adagrad: Whh, Why, bh and by, H^2 + VH + H + V elements, 5w bytes each;
    - Wxh columns: the c distinct characters' columns, Hc elements, 5w bytes each.
    (tanh, exp and the bias sums are O(S(H + V)) and left out, as in the step's model.)
    """
    H, S, V, w = model.hidden, model.seq_length, model.vocab_size, model.itemsize
    none = replace(model, flops=0.0, adagrad_elements=0.0, recurrence_bytes=0.0, update_bytes=0.0)
    dense = float(H * H + V * H + H + V)
    columns = H * float(wxh_columns)
    return {
        "recurrence": replace(none, flops=2.0 * S * H * H, recurrence_bytes=float(S * H * H * w)),
        "outputs, softmax": replace(none, flops=2.0 * S * V * H, update_bytes=float(V * H * w)),
        "backward sweep": replace(none, flops=2.0 * S * V * H + 2.0 * (S - 1) * H * H,
                                  recurrence_bytes=float((S - 1) * H * H * w), update_bytes=float(V * H * w)),
        "weight gradients": replace(none, flops=2.0 * S * H * H + 2.0 * S * V * H, update_bytes=float((H * H + V * H) * w)),
        "adagrad": replace(none, adagrad_elements=dense, update_bytes=5.0 * w * dense),
        "Wxh columns": replace(none, adagrad_elements=columns, update_bytes=5.0 * w * columns),
    }


@dataclass
class PhaseRow:
    """One phase (or the whole step) at one (config, dtype): measured seconds per step and its bound."""
    hidden: int
    seq_length: int
    dtype: str
    phase: str
    seconds: float
    bound_seconds: float | None
    bound_by: str | None

    def percent(self) -> float | None:
        return None if not self.bound_seconds else 100.0 * self.bound_seconds / self.seconds


def _phase_kernel():
    from numba import njit

    from .backends import _numba_kernel as K

    @njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
    def phase_loop(params, memory, H, V, S, data, phase, reps, hprev, hs, probs, ex, dhs, dhnext, G,
                   seen, gc, pc, mc, gV):
        # One phase of train_steps, ``reps`` times on the same window (the work does not depend on
        # the values); phase -1 runs the step's phases once, to give every buffer real contents.
        Wxh, Whh, Why, bh, by = K._views(params, H, V)
        nWxh = H * V
        mWxh = memory[0:nWxh].reshape((H, V))
        gWhh = G[0:H * H].reshape((H, H))
        gWhy = G[H * H:H * H + V * H].reshape((V, H))
        gbh = G[H * H + V * H:H * H + V * H + H]
        gby = G[H * H + V * H + H:]
        rate = K._typed(params, 1e-6)  # small: the weights hardly move over the repeats
        loss = 0.0
        if phase == -1:
            loss = K._forward(Wxh, Whh, Why, bh, by, data, 0, S, hprev, hs, probs, ex)
            K._backward(Whh, Why, data, 0, S, hs, probs, dhs, dhnext)
            K._weight_gradients(dhs, hs, probs, S, gWhh, gWhy, gbh, gby)
            return loss
        for _ in range(reps):
            if phase == 0:
                K._hidden_states(Wxh, Whh, bh, data, 0, S, hprev, hs)
            elif phase == 1:
                loss += K._softmax_loss(Why, by, data, 0, S, hs, probs, ex)
            elif phase == 2:
                K._backward(Whh, Why, data, 0, S, hs, probs, dhs, dhnext)
            elif phase == 3:
                K._weight_gradients(dhs, hs, probs, S, gWhh, gWhy, gbh, gby)
            elif phase == 4:
                K._adagrad(params[nWxh:], memory[nWxh:], G, rate)
            else:
                K._wxh_update(Wxh, mWxh, dhs, data, 0, S, rate, True, seen, gc, pc, mc, gV)
        return loss

    return phase_loop


def step_phases(corpus: Corpus, ceilings: Ceilings, hidden: int, seq_length: int, dtype: str,
                rounds: int = 5, min_seconds: float = MIN_SECONDS) -> list[PhaseRow]:
    """Seconds per step of each of :data:`PHASES` of the numba kernel, and of its whole step
    (``train_steps``), each against its own bound (:func:`phase_models`, :func:`roofline_bound`).

    Each phase is repeated on the first window, its data warm in cache from the repeat before;
    in a step the phases evict each other's data, and the step also pays the loop's bookkeeping,
    so the whole step usually takes longer than the sum of its phases (the *step - sum* row;
    it can come out negative on a noisy machine). Medians of ``rounds`` rounds that time the
    phases and the step in turn. The sum of the phases' own bounds is what a kernel that ran
    every phase at its ceiling, one after the other, would take.
    """
    backend = get_backend("numba")
    H, S, V = hidden, seq_length, corpus.vocab_size
    data = corpus.data
    if len(data) < S + 2:
        raise ValueError(f"the phase profile reads one window of seq_length + 1 = {S + 1} characters and "
                         f"training needs one more: the corpus has {len(data)}; use a longer text or a smaller S")
    state = TrainState.fresh(H, S, 0.1, V, seed=0, dtype=dtype)
    params, memory = state.params.copy(), state.memory.copy()
    ft = params.dtype
    buffers = (np.zeros(H, ft), np.zeros((S + 1, H), ft), np.zeros((S, V), ft), np.zeros(V, ft), np.zeros((S, H), ft),
               np.zeros(H, ft), np.zeros(len(params) - H * V, ft), np.zeros(V, np.bool_), np.zeros(H, ft),
               np.zeros(H, ft), np.zeros(H, ft), np.zeros(V, ft))
    loop = _phase_kernel()

    def seconds_of(phase, reps):
        started = time.perf_counter()
        loop(params, memory, H, V, S, data, phase, reps, *buffers)
        return time.perf_counter() - started

    seconds_of(-1, 1)  # real contents in every buffer, and the compile
    reps = {}
    for phase in range(len(PHASES)):
        seconds_of(phase, 1)
        reps[phase] = _calibrated_count(lambda n, phase=phase: seconds_of(phase, n), min_seconds, 1 << 20)
    steps = _calibrate(backend, corpus, H, S, dtype)
    times: dict = {phase: [] for phase in range(len(PHASES))}
    times["step"] = []
    for _ in range(rounds):
        for phase in range(len(PHASES)):
            times[phase].append(seconds_of(phase, reps[phase]) / reps[phase])
        times["step"].append(_time_training(backend, corpus, H, S, steps, dtype) / steps)
    columns = mean_distinct(data, S)
    model = step_model(H, S, V, _ITEMSIZE[dtype], wxh_columns=columns)
    models = phase_models(model, columns)
    rows = []
    for phase, name in enumerate(PHASES):
        seconds, by, _ = roofline_bound(models[name], ceilings, dtype)
        rows.append(PhaseRow(H, S, dtype, name, statistics.median(times[phase]), seconds, by))
    total = sum(r.seconds for r in rows)
    serial = sum(r.bound_seconds for r in rows)
    step_seconds = statistics.median(times["step"])
    bound, by, _ = roofline_bound(model, ceilings, dtype)
    rows.append(PhaseRow(H, S, dtype, "sum of the phases", total, serial, "each phase's own"))
    rows.append(PhaseRow(H, S, dtype, "step - sum", step_seconds - total, None, None))
    rows.append(PhaseRow(H, S, dtype, "whole step", step_seconds, bound, by))
    return rows


def phases_markdown(runs) -> str:
    """The :class:`PhaseRow` lists of one or several runs (ranges over them), a table per config."""
    runs = [runs] if runs and isinstance(runs[0], PhaseRow) else list(runs)
    lines = ["| H | S | dtype | phase | µs per step | bound (µs) | bound by | % of bound |",
             "|---:|---:|---|---|---:|---:|---|---:|"]
    for i, row in enumerate(runs[0]):
        same = [run[i] for run in runs]
        bounded = [r for r in same if r.bound_seconds]
        bound = span([r.bound_seconds * 1e6 for r in bounded], "{:,.2f}".format) if bounded else "-"
        by = " / ".join(dict.fromkeys(r.bound_by for r in bounded)) if bounded else "-"
        percent = span([r.percent() for r in bounded], "{:.0f}%".format) if bounded else "-"
        label = f"**{row.phase}**" if row.phase == "whole step" else row.phase
        micro = [r.seconds * 1e6 for r in same]
        # the step - sum row can be negative: "a to b" reads better there than "a–b"
        seconds = span(micro, "{:,.2f}".format) if min(micro) >= 0 else (
            f"{min(micro):,.2f} to {max(micro):,.2f}" if len(set(micro)) > 1 else f"{micro[0]:,.2f}")
        lines.append(f"| {row.hidden} | {row.seq_length} | {row.dtype} | {label} | {seconds} | {bound} | {by} | {percent} |")
    return "\n".join(lines)


# The measurements. Small compiled loops so that they measure the hardware, not call overhead.
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

    from .backends._numba_kernel import _adagrad

    @njit(cache=True, nogil=True)
    def adagrad(params, memory, g, lr, reps):
        # the kernels' own update, repeated in place (one call would be dominated by its dispatch)
        for _ in range(reps):
            _adagrad(params, memory, g, lr)

    return adagrad


def _ideal_tasks_kernel():
    from numba import njit, prange

    @njit(cache=True, nogil=True)
    def task(s, a, b, n, reps):
        for _ in range(reps):
            for i in range(n):
                s[i] = s[i] * b[i] + a[i]

    @njit(cache=True, nogil=True, parallel=True)
    def tasks(s, a, b, n, reps):
        for k in prange(s.shape[0]):
            task(s[k], a[k], b[k], n, reps)

    return tasks


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

    from .model import GRADIENT_CLIP

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


@dataclass
class RooflineRow:
    hidden: int
    seq_length: int
    dtype: str
    bound_seconds: float
    bound_by: str
    #: Seconds per resource (the bound is the largest).
    resources: dict
    #: Measured seconds per step, per backend (single thread, median of interleaved rounds).
    measured: dict

    def percent(self, backend: str) -> float | None:
        seconds = self.measured.get(backend)
        return None if not seconds else 100.0 * self.bound_seconds / seconds


def roofline(corpus: Corpus, ceilings: Ceilings, backends: Sequence[str] = ROOFLINE_BACKENDS, configs=None,
             dtypes: Sequence[str] = ROOFLINE_DTYPES, rounds: int = 5) -> list[RooflineRow]:
    """Per config (default :data:`CONFIGS`) and dtype: the bound, what sets it, and each backend's
    measured time per step."""
    configs = CONFIGS if configs is None else configs
    rates = step_rates(corpus, backends, configs=configs, rounds=rounds, dtypes=dtypes)
    return roofline_rows(corpus, ceilings, rates, configs, dtypes)


def roofline_rows(corpus: Corpus, ceilings: Ceilings, rates: Sequence[RateRow], configs, dtypes) -> list[RooflineRow]:
    """A :class:`RooflineRow` per config and dtype, the measured times taken from ``rates``."""
    rows = []
    for hidden, seq_length in configs:
        for dtype in dtypes:
            seconds, by, times = step_bound(corpus, ceilings, hidden, seq_length, dtype)
            measured = {r.backend: 1.0 / r.steps_per_second for r in rates
                        if (r.hidden, r.seq_length, r.dtype) == (hidden, seq_length, dtype)}
            rows.append(RooflineRow(hidden, seq_length, dtype, seconds, by, times, measured))
    return rows


def ceilings_markdown(ceilings) -> str:
    """The ceilings of one :class:`Ceilings`, or their ranges over a sequence of them."""
    runs = [ceilings] if isinstance(ceilings, Ceilings) else list(ceilings)
    first = runs[0]

    def size(nbytes):
        return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"

    def cell(get, fmt):
        return span([get(c) for c in runs], fmt)

    lines = ["| ceiling | float64 | float32 |", "|---|---:|---:|",
             f"| GEMM (numpy BLAS, 1 thread) | {cell(lambda c: c.gemm_flops['float64'] / 1e9, '{:.1f} GFLOP/s'.format)} | "
             f"{cell(lambda c: c.gemm_flops['float32'] / 1e9, '{:.1f} GFLOP/s'.format)} |",
             f"| Adagrad element (clip, sqrt, divide) | "
             f"{cell(lambda c: c.adagrad_seconds['float64'] * 1e9, '{:.2f} ns'.format)} | "
             f"{cell(lambda c: c.adagrad_seconds['float32'] * 1e9, '{:.2f} ns'.format)} |"]
    sizes = dict(zip(level_names(first.caches), [s for _, s in first.caches] + [None]))
    for name in first.bandwidth:
        label = f"{name} read ({size(sizes[name])})" if sizes.get(name) else f"{name} read"
        lines.append(f"| {label} | {cell(lambda c: c.bandwidth[name] / 1e9, '{:.1f} GB/s'.format)} | (same) |")
    return "\n".join(lines)


def roofline_markdown(rows, backends: Sequence[str] = ROOFLINE_BACKENDS) -> str:
    """The bound, what sets it and each backend's time and share, of one run's :class:`RooflineRow`
    list, or the ranges over several runs' lists."""
    runs = [rows] if rows and isinstance(rows[0], RooflineRow) else list(rows)
    head = "| H | S | dtype | bound (µs) | bound by | " + " | ".join(f"{b} (µs) | {b} % of bound" for b in backends) + " |"
    lines = [head, "|---:|---:|---|---:|---|" + "---:|---:|" * len(backends)]
    for i, row in enumerate(runs[0]):
        same = [run[i] for run in runs]
        cells = []
        for b in backends:
            measured = [r for r in same if r.measured.get(b)]
            cells += ["-", "-"] if not measured else [span([r.measured[b] * 1e6 for r in measured], "{:,.1f}".format),
                                                      span([r.percent(b) for r in measured], "{:.0f}%".format)]
        bound_by = " / ".join(dict.fromkeys(r.bound_by for r in same))
        lines.append(f"| {row.hidden} | {row.seq_length} | {row.dtype} | "
                     f"{span([r.bound_seconds * 1e6 for r in same], '{:,.1f}'.format)} | "
                     f"{bound_by} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- the whole report: repeats, ranges --------------------------------------------------------------
@dataclass
class ThreadRow:
    backend: str
    hidden: int
    seq_length: int
    beta: int
    one_thread: float
    two_threads: float
    speedup: float
    #: The speed-up of ``beta`` independent compute tasks of the same total length
    #: (:class:`IdealTasks`): what two threads can give on this machine.
    ideal: float | None = None
    #: Median over rounds of speed-up / ideal speed-up.
    share: float | None = None


@dataclass
class BenchRun:
    """One repeat of ``fastrnn bench``: this machine's ceilings, the bound of every (config, dtype),
    the single-thread step rates and the two-thread speed-ups of the GIL-free backends."""
    ceilings: Ceilings
    rates: list
    roofline_rows: list
    threads: list
    #: :func:`step_phases` rows of every (config, dtype), when asked for.
    phases: list = field(default_factory=list)

    def percent(self, rate: RateRow) -> float | None:
        """Share of the roofline bound that ``rate`` reaches (bound / measured time per step)."""
        for row in self.roofline_rows:
            if (row.hidden, row.seq_length, row.dtype) == (rate.hidden, rate.seq_length, rate.dtype):
                return row.percent(rate.backend)
        return None


def bench_run(corpus: Corpus, backends: Sequence[str], dtypes: Sequence[str] = ("float64",), rounds: int = 5,
              beta: int = 4, alpha: int = 100, configs=None, progress=None, phases: bool = False) -> BenchRun:
    """Measure everything ``fastrnn bench`` reports, once (with ``phases``, also :func:`step_phases`
    of every config and dtype). ``progress(label)`` is called as each part finishes
    (:func:`bench_stages` of them)."""
    configs = CONFIGS if configs is None else configs
    tick = progress or (lambda label: None)
    ceilings = measure_ceilings(rounds=rounds)
    tick("ceilings")
    rates = step_rates(corpus, backends, configs=configs, rounds=rounds, dtypes=dtypes)
    tick("step rates")
    bounds = roofline_rows(corpus, ceilings, rates, configs, dtypes)
    thread_rows = []
    for name in _threaded_backends(backends):
        for hidden, seq_length in configs:
            thread_rows.append(ThreadRow(name, hidden, seq_length, beta,
                                         *thread_speedup(corpus, name, hidden, seq_length, beta, alpha, rounds)))
            tick(f"threads {name} {hidden},{seq_length}")
    phase_rows = []
    if phases:
        for hidden, seq_length in configs:
            for dtype in dtypes:
                phase_rows += step_phases(corpus, ceilings, hidden, seq_length, dtype, rounds)
            tick(f"phases {hidden},{seq_length}")
    return BenchRun(ceilings, rates, bounds, thread_rows, phase_rows)


def bench_stages(backends: Sequence[str], configs=None, phases: bool = False) -> int:
    """How many times :func:`bench_run` calls ``progress``."""
    configs = CONFIGS if configs is None else configs
    return 2 + len(_threaded_backends(backends)) * len(configs) + (len(configs) if phases else 0)


def _threaded_backends(backends: Sequence[str]) -> list[str]:
    """The available backends that release the GIL (numpy holds it: threads cannot help it)."""
    names = []
    for name in backends:
        try:
            backend = get_backend(name)
        except BackendUnavailable:
            continue
        if backend.releases_gil:
            names.append(name)
    return names


def span(values: Sequence[float], fmt) -> str:
    """``fmt`` of the one value, or ``lo–hi`` over repeats (a shared unit written once: ``1.5–1.7x``)."""
    lo, hi = fmt(min(values)), fmt(max(values))
    if lo == hi:
        return lo
    unit = ""
    while lo and hi and lo[-1] == hi[-1] and not lo[-1].isdigit():
        unit, lo, hi = lo[-1] + unit, lo[:-1], hi[:-1]
    return f"{lo}–{hi}{unit}"


def _collect(runs: Sequence[BenchRun], key, value) -> dict:
    """``{key(item): [value(run, item) for each run]}`` over the rate rows, in first-run order."""
    out: dict = {}
    for run in runs:
        for item in run.rates:
            v = value(run, item)
            if v is not None:
                out.setdefault(key(item), []).append(v)
    return out


def rates_markdown(runs: Sequence[BenchRun]) -> str:
    """Steps/s, the ratios and the share of the roofline bound of every (backend, dtype, config);
    with several runs, each cell is the range over them."""
    def key(r):
        return (r.backend, r.dtype, r.hidden, r.seq_length)

    rate = _collect(runs, key, lambda run, r: r.steps_per_second)
    to_numpy = _collect(runs, key, lambda run, r: r.ratio_to_numpy)
    to_float64 = _collect(runs, key, lambda run, r: r.ratio_to_float64)
    percent = _collect(runs, key, lambda run, r: run.percent(r))
    lines = ["| backend | dtype | H | S | steps/s | x numpy float64 | x own float64 | % of roofline |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for k, values in rate.items():
        backend, dtype, hidden, seq_length = k
        cells = [span(values, "{:,.0f}".format),
                 span(to_numpy[k], "{:.1f}x".format) if k in to_numpy else "-",
                 span(to_float64[k], "{:.2f}x".format) if k in to_float64 else "-",
                 span(percent[k], "{:.0f}%".format) if k in percent else "-"]
        lines.append(f"| {backend} | {dtype} | {hidden} | {seq_length} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def threads_markdown(runs: Sequence[BenchRun]) -> str:
    """One evaluation of F on 1 and 2 threads, per backend and config (ranges over runs)."""
    rows: dict = {}
    for run in runs:
        for r in run.threads:
            rows.setdefault((r.backend, r.hidden, r.seq_length, r.beta), []).append(r)
    lines = ["| backend | H | S | beta | 1 thread (s) | 2 threads (s) | speed-up | ideal tasks' speed-up | share of ideal |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (backend, hidden, seq_length, beta), rs in rows.items():
        ideal = [r for r in rs if r.ideal and r.share]
        lines.append(f"| {backend} | {hidden} | {seq_length} | {beta} | "
                     f"{span([r.one_thread for r in rs], '{:.4f}'.format)} | "
                     f"{span([r.two_threads for r in rs], '{:.4f}'.format)} | "
                     f"{span([r.speedup for r in rs], '{:.2f}x'.format)} | "
                     + (f"{span([r.ideal for r in ideal], '{:.2f}x'.format)} | "
                        f"{span([100 * r.share for r in ideal], '{:.0f}%'.format)} |" if ideal else "- | - |"))
    return "\n".join(lines)
