"""Where a training step's time goes (``fastrnn bench --phases``, :func:`step_phases`).

The numba kernel's step split into its phases (:data:`PHASES`: recurrence, outputs and softmax,
backward sweep, weight gradients, Adagrad, Wxh columns), each timed alone and set against its
own share of the step's work (:func:`phase_models`; the shares add up to the step's model,
:func:`fastrnn.bench.roofline.step_model`). The sum of the phases' own bounds is a second, less
optimistic bound: a kernel that runs every phase at its ceiling but one after the other, as the
step's data dependencies mostly force.

The phases are the kernel's own functions, called through the public seam at the end of
:mod:`fastrnn.backends._numba_kernel` (``hidden_states``, ``softmax_loss``, ``backward``, ...),
so the profile times the arithmetic that training runs.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

import numpy as np

from ..backends import get_backend
from ..network.corpus import Corpus
from ..network.model import TrainState
from .rates import MIN_SECONDS, calibrate, calibrated_count, time_training
from .roofline import ITEMSIZE, Ceilings, StepModel, mean_distinct, roofline_bound, step_model

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


def phase_kernel():
    """The compiled harness of the profile: ``loop(params, memory, H, V, S, data, phase, reps, *buffers)``
    runs phase ``phase`` (an index into :data:`PHASES`) ``reps`` times on the first window, or with
    ``phase`` -1 the step's phases once (and returns the window's loss)."""
    from numba import njit

    from ..backends import _numba_kernel as K

    @njit(**K.JIT_OPTIONS)
    def phase_loop(params, memory, H, V, S, data, phase, reps, hprev, hs, probs, ex, dhs, dhnext, G,
                   seen, gc, pc, mc, gV):
        # One phase of train_steps, ``reps`` times on the same window (the work does not depend on
        # the values); phase -1 runs the step's phases once, to give every buffer real contents.
        Wxh, Whh, Why, bh, by = K.views(params, H, V)
        nWxh = H * V
        mWxh = memory[0:nWxh].reshape((H, V))
        gWhh = G[0:H * H].reshape((H, H))
        gWhy = G[H * H:H * H + V * H].reshape((V, H))
        gbh = G[H * H + V * H:H * H + V * H + H]
        gby = G[H * H + V * H + H:]
        rate = K.typed(params, 1e-6)  # small: the weights hardly move over the repeats
        loss = 0.0
        if phase == -1:
            loss = K.forward(Wxh, Whh, Why, bh, by, data, 0, S, hprev, hs, probs, ex)
            K.backward(Whh, Why, data, 0, S, hs, probs, dhs, dhnext)
            K.weight_gradients(dhs, hs, probs, S, gWhh, gWhy, gbh, gby)
            return loss
        for _ in range(reps):
            if phase == 0:
                K.hidden_states(Wxh, Whh, bh, data, 0, S, hprev, hs)
            elif phase == 1:
                loss += K.softmax_loss(Why, by, data, 0, S, hs, probs, ex)
            elif phase == 2:
                K.backward(Whh, Why, data, 0, S, hs, probs, dhs, dhnext)
            elif phase == 3:
                K.weight_gradients(dhs, hs, probs, S, gWhh, gWhy, gbh, gby)
            elif phase == 4:
                K.adagrad(params[nWxh:], memory[nWxh:], G, rate)
            else:
                K.wxh_update(Wxh, mWxh, dhs, data, 0, S, rate, True, seen, gc, pc, mc, gV)
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
    loop = phase_kernel()

    def seconds_of(phase, reps):
        started = time.perf_counter()
        loop(params, memory, H, V, S, data, phase, reps, *buffers)
        return time.perf_counter() - started

    seconds_of(-1, 1)  # real contents in every buffer, and the compile
    reps = {}
    for phase in range(len(PHASES)):
        seconds_of(phase, 1)
        reps[phase] = calibrated_count(lambda n, phase=phase: seconds_of(phase, n), min_seconds, 1 << 20)
    steps = calibrate(backend, corpus, H, S, dtype)
    times: dict = {phase: [] for phase in range(len(PHASES))}
    times["step"] = []
    for _ in range(rounds):
        for phase in range(len(PHASES)):
            times[phase].append(seconds_of(phase, reps[phase]) / reps[phase])
        times["step"].append(time_training(backend, corpus, H, S, steps, dtype) / steps)
    columns = mean_distinct(data, S)
    model = step_model(H, S, V, ITEMSIZE[dtype], wxh_columns=columns)
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
