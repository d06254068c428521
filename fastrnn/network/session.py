"""A long training, as char-rnn runs one: held-out loss at intervals, checkpoints, continuing.

:func:`train_with_evaluations` advances a :class:`~fastrnn.network.model.TrainState` to a target
number of updates. At every multiple of ``eval_every`` updates (counted from the network's first
update, so a resumed training evaluates where an uninterrupted one does), at every multiple of
``checkpoint_every`` and at the target, it scores the network on the held-out text and appends a
:class:`CurvePoint` (training and held-out loss per character against characters read) to the
learning curve; at a checkpoint it hands the state and that point to ``on_checkpoint``.

With a ``cooldown`` (:class:`~fastrnn.network.schedule.Cooldown`) the learning rate decays to zero
over its updates, as the tuner's top networks end; the rate is a function of the update count, so
this too is the same bits however the training is split.

Evaluating never changes the network: the training is the same bits whatever the intervals, and
continuing a saved state equals training straight through (the state holds the weights, Adagrad's
memory, the hidden state, the data pointer and the smoothed loss; the kernels continue it exactly).
The held-out score is computed as the objective computes a trial's (:func:`heldout_losses`, one
network per thread), so a network trained as a tuning trial was gives that trial's value.

A Ctrl-C (KeyboardInterrupt) can land while a kernel's results are being written back into the
state; the training therefore keeps a copy of the state after every whole chunk of updates, and
raises :class:`TrainingInterrupted` carrying that copy, consistent and continuable.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..backends import DEFAULT_BACKEND, Backend, get_backend
from .corpus import Corpus
from .model import TrainState
from .schedule import Cooldown
from .scoring import heldout_losses
from .training import train

_LN2 = math.log(2.0)


@dataclass(frozen=True)
class CurvePoint:
    """The network after ``steps`` updates (``chars`` = steps x seq_length characters read)."""

    steps: int
    chars: int
    #: min-char-rnn's smoothed training loss, per character, in nats.
    train_nats: float
    #: Mean cross-entropy per character on the held-out text, in nats (None without held-out text).
    heldout_nats: float | None
    #: Seconds of training (and scoring) so far, over every session of this network.
    seconds: float

    def record(self) -> dict:
        """As JSON output and model files hold it: nats and bits per character."""
        return dict(steps=self.steps, chars=self.chars, train_nats_per_char=self.train_nats,
                    train_bits_per_char=self.train_nats / _LN2,
                    heldout_nats_per_char=self.heldout_nats,
                    heldout_bits_per_char=None if self.heldout_nats is None else self.heldout_nats / _LN2,
                    seconds=self.seconds)

    @classmethod
    def from_record(cls, record: dict) -> "CurvePoint":
        heldout = record.get("heldout_nats_per_char")
        train_nats = record.get("train_nats_per_char")
        return cls(int(record["steps"]), int(record["chars"]), float("nan") if train_nats is None else float(train_nats),
                   None if heldout is None else float(heldout), float(record.get("seconds", 0.0)))


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train_with_evaluations`: ``state`` is a copy of the network after the
    last whole chunk of updates (None if no chunk finished in this call), ``curve`` the curve so far."""

    def __init__(self, state: TrainState | None, curve: list[CurvePoint], seconds: float):
        super().__init__()
        self.state, self.curve, self.seconds = state, curve, seconds


def copy_state(state: TrainState) -> TrainState:
    return dataclasses.replace(state, params=state.params.copy(), memory=state.memory.copy(), hprev=state.hprev.copy())


def next_boundary(steps: int, every: int) -> int | None:
    """The first multiple of ``every`` above ``steps`` (None when ``every`` is 0: never)."""
    return None if every <= 0 else (steps // every + 1) * every


def score(state: TrainState, heldout: Corpus | None, backend: str | Backend = DEFAULT_BACKEND) -> float | None:
    """The network's mean cross-entropy per character on ``heldout`` (all of it), in nats, exactly
    as the objective scores a trial; None without held-out text or for a diverged network."""
    if heldout is None or state.diverged:
        return None
    return heldout_losses([state], heldout, backend=backend, threads=1)[0].nats


def train_with_evaluations(
    corpus: Corpus,
    state: TrainState,
    target_steps: int,
    *,
    heldout: Corpus | None = None,
    backend: str | Backend = DEFAULT_BACKEND,
    eval_every: int = 0,
    checkpoint_every: int = 0,
    curve: list[CurvePoint] | None = None,
    seconds: float = 0.0,
    progress: Callable[[TrainState], None] | None = None,
    on_point: Callable[[CurvePoint], None] | None = None,
    on_checkpoint: Callable[[TrainState, CurvePoint], None] | None = None,
    cooldown: Cooldown | None = None,
) -> list[CurvePoint]:
    """Train ``state`` in place up to ``target_steps`` updates (or until it diverges); return the
    learning curve (``curve``, extended). See the module docstring.

    ``eval_every`` and ``checkpoint_every`` are in updates (0: never; the target is always
    evaluated); ``seconds`` is the time earlier sessions took; ``progress(state)`` is called after
    every chunk of updates, ``on_point(point)`` after every evaluation, ``on_checkpoint(state,
    point)`` at every checkpoint (including the target's, when checkpointing). An exception from a
    callback stops the training (the state stays consistent). With ``cooldown`` the state is
    trained at its decayed rates and keeps its own rate (its ``end`` must not lie before
    ``target_steps``).
    """
    if cooldown is not None and cooldown.end < target_steps:
        raise ValueError(f"the cooldown ends at update {cooldown.end:,}, before the target {target_steps:,}")
    runner = get_backend(backend)
    curve = [] if curve is None else curve
    started = time.perf_counter() - seconds
    snapshot: list[TrainState | None] = [None]
    keep = on_checkpoint is not None or progress is not None
    rate = state.learning_rate

    def chunk_done(current: TrainState) -> None:
        if keep:
            snapshot[0] = dataclasses.replace(copy_state(current), learning_rate=rate)
        if progress is not None:
            progress(current)

    try:
        while state.steps < target_steps and not state.diverged:
            stops = [target_steps, next_boundary(state.steps, eval_every), next_boundary(state.steps, checkpoint_every)]
            stop = min(s for s in stops if s is not None)
            runs = [(stop - state.steps, 1.0)] if cooldown is None else cooldown.runs(state.steps, stop - state.steps)
            try:
                for count, factor in runs:
                    state.learning_rate = rate * factor
                    train(corpus, steps=count, backend=runner, progress=chunk_done, state=state)
                    if state.diverged:
                        break
            finally:
                state.learning_rate = rate
            if state.diverged:
                break
            point = CurvePoint(state.steps, state.steps * state.seq_length, state.smooth_loss / state.seq_length,
                               score(state, heldout, runner), time.perf_counter() - started)
            curve.append(point)
            snapshot[0] = copy_state(state) if keep else None
            if on_point is not None:
                on_point(point)
            if on_checkpoint is not None and (stop == target_steps or stop == stops[2]):
                on_checkpoint(state, point)
    except KeyboardInterrupt as exc:
        raise TrainingInterrupted(snapshot[0], curve, time.perf_counter() - started) from exc
    return curve


def checkpoint_path(folder: str | os.PathLike, stem: str, point: CurvePoint) -> str:
    """Where a checkpoint goes: ``FOLDER/STEM_<chars>chars_<held-out nats>.npz``, as char-rnn names
    its checkpoints by their validation loss (the characters zero-padded, so names sort by them)."""
    loss = "" if point.heldout_nats is None or not np.isfinite(point.heldout_nats) else f"_{point.heldout_nats:.4f}"
    return os.path.join(os.fspath(folder), f"{stem}_{point.chars:010d}chars{loss}.npz")
