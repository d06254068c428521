"""Optuna's own multi-fidelity tuner driving fastrnn's training: the anchor of `fastrnn compare`.

A user who knows Optuna would write this: a TPE sampler with a Hyperband pruner, and an
objective that trains a network rung by rung, reporting its held-out loss at each rung's
training length (``trial.report(loss, chars)``) and stopping when the pruner says so. The rungs
are the halving tuner's: ``min_chars * eta**k`` characters, up to ``target_chars``; the search
space is the sane box, h and s whole and on a log scale, l on a log scale; the split, scoring,
precision and the diverged rule (a held-out loss above ln V, or a non-finite one, is worth
ln V) are those of the held-out objective. Trials run on ``threads`` threads (Optuna's
``n_jobs``; the kernels release the GIL), so the anchor uses the machine as fastrnn's tuners
do. With more than one thread Optuna's order of trials depends on timing, so the anchor is not
reproducible bit for bit; it is a yardstick, not a method.

The run is written as JSON Lines, one line per rung a trial reached (its point, training
characters, held-out loss and the run's elapsed seconds) and one when a trial ends.
"""

from __future__ import annotations

import json
import math
import threading
import time

from ..backends import get_backend
from ..network.scoring import heldout_loss
from ..network.training import train
from ..objective.paper import SANE_RANGES
from ..objective.settings import HeldoutSettings


def rung_chars(min_chars: int, target_chars: int, eta: int) -> list[int]:
    """Training lengths of the rungs: min_chars, min_chars * eta, ... up to target_chars (the last)."""
    if min_chars < 1 or target_chars < min_chars or eta < 2:
        raise ValueError(f"rungs need 1 <= min_chars <= target_chars and eta >= 2, got {min_chars}, {target_chars}, "
                         f"{eta}")
    rungs = [min_chars]
    while rungs[-1] * eta < target_chars:
        rungs.append(rungs[-1] * eta)
    if rungs[-1] != target_chars:
        rungs.append(target_chars)
    return rungs


def run_optuna_hyperband(settings: HeldoutSettings, out: str, *, min_chars: int, target_chars: int, eta: int = 3,
                         budget_seconds: float, seed: int = 0, threads: int = 1, backend="numba") -> dict:
    """Tune with Optuna's TPESampler and HyperbandPruner for ``budget_seconds``; write the run to
    ``out``; return the best trial trained to ``target_chars`` (point and held-out loss), if any."""
    try:
        import optuna
    except ImportError:
        raise ValueError("the Optuna anchor needs Optuna: pip install 'fastrnn[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rungs = rung_chars(min_chars, target_chars, eta)
    settings = settings.loaded()
    train_text, heldout_text = settings.split()
    runner = get_backend(backend)
    uniform = math.log(train_text.vocab_size)
    (h_low, h_high, _), (s_low, s_high, _), (l_low, l_high, _) = SANE_RANGES
    started = time.perf_counter()
    lock = threading.Lock()
    sink = open(out, "w", encoding="utf-8")

    def write(entry: dict) -> None:
        with lock:
            sink.write(json.dumps({**entry, "elapsed": time.perf_counter() - started}) + "\n")
            sink.flush()

    def objective(trial) -> float:
        hidden = trial.suggest_int("hidden", h_low, h_high, log=True)
        seq_length = trial.suggest_int("seq_length", s_low, s_high, log=True)
        learning_rate = trial.suggest_float("learning_rate", l_low, l_high, log=True)
        point = [hidden, seq_length, learning_rate]
        state = None
        value = uniform
        for chars in rungs:
            updates = -(-chars // seq_length)
            state = train(train_text, hidden, seq_length, learning_rate, steps=updates - (state.steps if state else 0),
                          seed=settings.seed, backend=runner, state=state, dtype=settings.dtype)
            loss = float("nan") if state.diverged else heldout_loss(state, heldout_text, backend=runner).nats
            value = loss if math.isfinite(loss) and loss <= uniform else uniform  # the diverged rule
            trial.report(value, chars)
            write(dict(type="rung", trial=trial.number, x=point, chars=chars, fun=value))
            if state.diverged or (chars != rungs[-1] and trial.should_prune()):
                write(dict(type="end", trial=trial.number, state="pruned", chars=chars))
                raise optuna.TrialPruned()
        write(dict(type="end", trial=trial.number, state="complete", chars=rungs[-1]))
        return value

    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    pruner = optuna.pruners.HyperbandPruner(min_resource=rungs[0], max_resource=rungs[-1], reduction_factor=eta)
    study = optuna.create_study(sampler=sampler, pruner=pruner)
    try:
        write(dict(type="settings", method="optuna-hyperband", objective=settings.record(), min_chars=min_chars,
                   target_chars=target_chars, eta=eta, budget_seconds=budget_seconds, seed=seed, threads=threads))
        study.optimize(objective, timeout=budget_seconds, n_jobs=threads)
    finally:
        sink.close()
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return dict(point=None, fun=None, trials=len(study.trials))
    best = min(complete, key=lambda t: t.value)
    return dict(point=[best.params["hidden"], best.params["seq_length"], best.params["learning_rate"]],
                fun=best.value, trials=len(study.trials))


def anchor_curve(path: str, target_chars: int) -> tuple[list[float], list[float]]:
    """(elapsed seconds, best held-out loss at ``target_chars`` so far) from an anchor's run file."""
    elapsed, best = [], []
    low = math.inf
    with open(path, encoding="utf-8") as f:
        for line in f:
            entry = json.loads(line)
            if entry.get("type") == "rung" and entry["chars"] == target_chars:
                low = min(low, entry["fun"])
                elapsed.append(entry["elapsed"])
                best.append(low)
    return elapsed, best


__all__ = ["anchor_curve", "rung_chars", "run_optuna_hyperband"]
