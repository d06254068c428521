"""The numbers fastrnn computes, hashed: results that must be the same bits on every CPU.

Each entry is the SHA-256 (first 16 hex digits) of one result's bytes: trainings at several sizes
(the odd ones leave every kind of tail in the kernel's loops) in both precisions, a held-out score,
the held-out and the paper's objectives, and a short tuning run of every method. The committed
``fingerprints.json`` beside this file holds the expected hashes; ``test_same_bits.py`` checks them
in-process and with the kernel compiled for other vector widths, in subprocesses.

A change that is meant to alter results (a new kernel order, a new initialisation) regenerates
them, and says so in its commit::

    .venv/bin/python tests/fingerprint.py --write

Without ``--write`` it prints the hashes as JSON on stdout (what the subprocesses do).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
FINGERPRINTS = HERE / "fingerprints.json"

#: (hidden, seq_length) of the trainings: tails of 0-7 elements in every loop of the kernel.
TRAINING_SIZES = ((20, 5), (37, 7), (100, 25), (130, 11))
TRAINING_STEPS = 40
BACKEND = "numba"


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    return h.hexdigest()[:16]


def _corpus():
    sys.path.insert(0, str(HERE))
    from fastrnn.network.corpus import Corpus

    from helpers import synthetic_text

    return Corpus.from_text(synthetic_text(20_000, seed=3), name="fingerprint")


def training_fingerprints(corpus) -> dict:
    from fastrnn.network.scoring import heldout_loss
    from fastrnn.network.training import train

    out = {}
    for dtype in ("float64", "float32"):
        for hidden, seq_length in TRAINING_SIZES:
            state = train(corpus, hidden, seq_length, 0.1, steps=TRAINING_STEPS, seed=1, backend=BACKEND, dtype=dtype)
            out[f"train/{dtype}/{hidden}x{seq_length}"] = _digest(
                state.params, state.memory, state.hprev, np.float64(state.smooth_loss), np.int64(state.position))
            score = heldout_loss(state, corpus.data[:1_500], backend=BACKEND)
            out[f"heldout_score/{dtype}/{hidden}x{seq_length}"] = _digest(np.float64(score.nats))
    return out


def objective_fingerprints(corpus) -> dict:
    from fastrnn.objective.function import Objective

    heldout = Objective(corpus, beta=2, train_chars=2_000, heldout_chars=1_000, threads=1, backend=BACKEND,
                        dtype="float64")
    paper = Objective(corpus, alpha=30, beta=2, kind="paper", threads=1, backend=BACKEND)
    point = [30.5, 7.25, 0.05]
    return {
        "objective/heldout": _digest(np.float64(heldout(point))),
        "objective/heldout/float32": _digest(np.float64(
            Objective(corpus, beta=2, train_chars=2_000, heldout_chars=1_000, threads=1, backend=BACKEND,
                      dtype="float32")(point))),
        "objective/paper": _digest(np.float64(paper(point))),
    }


def tuning_fingerprints(corpus) -> dict:
    from fastrnn.objective.function import Objective
    from fastrnn.optimize.methods import METHODS
    from fastrnn.tuning.runner import tune

    out = {}
    for method in METHODS:
        if method == "tpe":
            try:
                import optuna  # noqa: F401
            except ImportError:
                continue
        F = Objective(corpus, train_chars=400, heldout_chars=1_000, threads=1, backend=BACKEND, dtype="float64")
        result = tune(F, method, seed=2, max_steps=3, budget_trainings=24)
        out[f"tune/{method}"] = _digest(np.asarray(result.x, dtype=np.float64), np.float64(result.fun),
                                        np.int64(result.nit))
    return out


def fingerprints() -> dict:
    corpus = _corpus()
    return {**training_fingerprints(corpus), **objective_fingerprints(corpus), **tuning_fingerprints(corpus)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {FINGERPRINTS.name} instead of printing")
    args = parser.parse_args()
    found = fingerprints()
    if args.write:
        FINGERPRINTS.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(found)} fingerprints to {FINGERPRINTS}", file=sys.stderr)
    else:
        json.dump(found, sys.stdout, sort_keys=True)
        print()


if __name__ == "__main__":
    main()
