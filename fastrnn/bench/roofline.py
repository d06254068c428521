"""The roofline (``fastrnn bench --roofline``, :func:`roofline`): a model of one training step's work
and a lower bound on its time.

How close a kernel is to the hardware: a lower bound on the time of one training step, from
this machine's measured single-thread ceilings and a count of the step's work, and the share
of it each compiled kernel reaches (bound / measured time).

Ceilings (:class:`Ceilings`, measured by :func:`fastrnn.bench.ceilings.measure_ceilings`): GEMM
flop/s, the read bandwidth of each cache level and of main memory, and the seconds per element of
the kernels' Adagrad update.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..backends import COMPILED_BACKENDS
from ..network.corpus import Corpus
from .rates import CONFIGS, RateRow, step_rates

#: What the bounds are taken for: every CONFIGS entry in both precisions, on the compiled kernels.
ROOFLINE_DTYPES = ("float64", "float32")
#: ... on the backends that compile their kernel: the registry's (``fastrnn.backends.REGISTRY``).
ROOFLINE_BACKENDS = COMPILED_BACKENDS
#: Bytes per number of each precision.
ITEMSIZE = {"float64": 8, "float32": 4}


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
    """This machine's single-thread ceilings, as :func:`fastrnn.bench.ceilings.measure_ceilings` measured them."""

    #: GEMM flop/s through numpy's BLAS, per dtype name.
    gemm_flops: dict
    #: Seconds per vectorised Adagrad element (clip, sqrt, divide), per dtype name.
    adagrad_seconds: dict
    #: ``[(level, bytes), ...]`` as :func:`fastrnn.bench.ceilings.cache_sizes` gives them.
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
    model = step_model(hidden, seq_length, corpus.vocab_size, ITEMSIZE[dtype],
                       wxh_columns=mean_distinct(corpus.data, seq_length))
    return roofline_bound(model, ceilings, dtype)


@dataclass
class RooflineRow:
    """The bound of one (config, dtype), what sets it, and each backend's measured time."""

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
