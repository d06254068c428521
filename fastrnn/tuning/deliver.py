"""The answer as a network: the tuned point's network, trained again and saved for `fastrnn sample`.

A tuning run ends with a point (h, s, l). The user wants the network behind it: :func:`deliver`
trains it again, exactly as the objective trained it (the same :class:`~fastrnn.backends.RunSpec`:
sizes, rate, replica seed, updates, precision, so the same bits), scores it on the same held-out
text and saves it as a model file.

Which network. F at a point is the mean over ``beta`` replicas (seeds ``seed + r``) of the
integer corners of its cell, interpolated; a sampler's point has whole h and s (one corner), a
gradient method's may not. Every corner with a positive interpolation weight and every replica
is trained, and the one with the lowest held-out loss is the answer (selection on held-out text,
as the tuning itself is). With ``beta = 1`` at a whole point that is the very network the run
scored: its held-out loss is the run's F, bit for bit.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

import fastrnn

from ..backends import RunSpec
from ..network.checkpoint import save_model
from ..network.model import STATUS_OK, TrainState
from ..objective.function import Objective, interpolation_weights
from ..objective.paper import SANE_RANGES


@dataclass(frozen=True)
class DeliveredNetwork:
    """A saved network and what it scores on the held-out text."""

    path: str
    hidden: int
    seq_length: int
    learning_rate: float
    seed: int
    #: Mean cross-entropy per character on the held-out text, in nats.
    nats_per_char: float
    train_chars: int

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / math.log(2.0)

    def as_dict(self) -> dict:
        return dict(path=self.path, hidden=self.hidden, seq_length=self.seq_length, learning_rate=self.learning_rate,
                    seed=self.seed, nats_per_char=self.nats_per_char, bits_per_char=self.bits_per_char,
                    train_chars=self.train_chars)


def candidate_specs(F: Objective, point) -> list[RunSpec]:
    """The trainings behind F at ``point``: each sane corner with a positive weight, each replica."""
    hidden, seq_length, learning_rate = (float(v) for v in point)
    corners = []
    for value in (hidden, seq_length):
        low, w_low, w_high = interpolation_weights(value)
        corners.append([c for c, w in ((low, w_low), (low + 1, w_high)) if w > 0])
    (h_low, h_high, _), (s_low, s_high, _), (l_low, l_high, _) = SANE_RANGES
    specs = [RunSpec(h, s, learning_rate, F.corpus.vocab_size, F.seed + r, F.updates(s), F.dtype)
             for h in corners[0] for s in corners[1] for r in range(F.beta)
             if h_low <= h <= h_high and s_low <= s <= s_high and l_low <= learning_rate <= l_high]
    if not specs:
        raise ValueError(f"the point {[hidden, seq_length, learning_rate]} lies outside the sane box: no network "
                         "stands behind its value")
    return specs


def best_network(F: Objective, point) -> tuple[RunSpec, TrainState, float]:
    """(spec, trained state, held-out loss in nats per character) of the best network behind F at
    ``point`` (module docstring); ValueError if every one of them diverged."""
    if F.kind != "heldout":
        raise ValueError("a network is delivered for the held-out objective (its value is a held-out loss)")
    specs = candidate_specs(F, point)
    states = F.backend.train_fresh(F.corpus.data, specs, threads=F.threads)
    healthy = [k for k, state in enumerate(states) if state.status == STATUS_OK]
    losses = np.full(len(states), np.inf)
    if healthy:
        totals = F.backend.heldout_totals([states[k] for k in healthy], F.heldout.data, F.threads)
        losses[healthy] = totals / (len(F.heldout.data) - 1)
    best = int(np.argmin(losses))  # the first of equal losses
    if not losses[best] <= F.definition.divergence_threshold(F.corpus.vocab_size):
        raise ValueError(f"every network at {list(point)} diverged (a held-out loss above ln V, worse than a uniform "
                         "guess, or not finite): there is no network worth delivering")
    return specs[best], states[best], float(losses[best])


def model_info(F: Objective, path: str, steps: int, loss: float, from_run: dict) -> dict:
    """What a tuned network's model file records (fastrnn.network.checkpoint's ``info``): its text,
    F's split, its length and held-out loss, and the run it came from, so that `fastrnn train
    --resume` continues it on the same split."""
    return dict(
        corpus=F.source_corpus.name, corpus_fingerprint=F.source_corpus.fingerprint,
        train_fingerprint=F.corpus.fingerprint, objective=F.definition.record(), target_steps=steps,
        eval_every=0, checkpoint_every=0, checkpoint_stem=os.path.splitext(os.path.basename(path))[0],
        checkpoint_dir=None, backend=F.backend.name, heldout_nats_per_char=loss, curve=[], seconds=0.0,
        fastrnn_version=fastrnn.__version__, from_run=from_run,
    )


def deliver(F: Objective, point, path: str, run_path: str | None = None) -> DeliveredNetwork:
    """Train the best network behind F at ``point`` (:func:`best_network`) and save it to ``path``
    (a ``.npz`` model file, written atomically, that `fastrnn train --resume` continues on F's
    split and `fastrnn sample` reads); CheckpointError if it cannot be written."""
    spec, state, loss = best_network(F, point)
    info = model_info(F, path, spec.steps, loss, dict(
        run=run_path, point=[float(v) for v in point], value=loss, objective=F.kind, beta=F.beta, noise=F.noise,
        seed=spec.seed, dtype=F.dtype, steps=spec.steps, whole=True))
    save_model(path, state, F.corpus.vocab, F.source_corpus.name, info=info)
    return DeliveredNetwork(path=str(path), hidden=spec.hidden, seq_length=spec.seq_length,
                            learning_rate=spec.learning_rate, seed=spec.seed, nats_per_char=loss,
                            train_chars=spec.steps * spec.seq_length)


def model_path_for(run_path: str) -> str:
    """Where a run's network goes: beside its run file, ``runs/main.jsonl`` -> ``runs/main.npz``."""
    stem = str(run_path)
    for suffix in (".jsonl", ".json", ".txt"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem + ".npz"


__all__ = ["DeliveredNetwork", "best_network", "candidate_specs", "deliver", "model_info", "model_path_for"]
