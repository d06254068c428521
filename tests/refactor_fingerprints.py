"""Fingerprints of fastrnn's numbers, to show a refactoring changed none of them.

Run ``python tests/refactor_fingerprints.py`` before and after a change and compare the output: one line per
item, ``name sha256-prefix``. It hashes training results (a few sizes, float64 and float32), objective
values (paper and held-out, common and fresh noise), held-out scores, and short tuning runs of every
method on both objectives: the final x and F, and every point the objective was asked for with its
value (for the samplers, the sequence of trials). Only public behaviour is hashed, never a file
format, so the output stays comparable across changes of the run file. Not collected by pytest.
Broader and slower (about 8 minutes) than ``fingerprint.py``, whose committed hashes CI checks on
every CPU: this one also covers the numpy and cython backends, whose last bits depend on the CPU
(README, "The same bits on every CPU"), so its output is only compared on one machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fastrnn.network.corpus import Corpus  # noqa: E402
from fastrnn.network.scoring import heldout_loss  # noqa: E402
from fastrnn.network.training import new_state, train  # noqa: E402
from fastrnn.objective.function import Objective  # noqa: E402
from fastrnn.tuning.runner import tune  # noqa: E402

from helpers import synthetic_text  # noqa: E402

CORPUS = Corpus.from_text(synthetic_text(30_000), "fingerprint")


def digest(value) -> str:
    hasher = hashlib.sha256()
    if isinstance(value, np.ndarray):
        hasher.update(str(value.dtype).encode())
        hasher.update(np.ascontiguousarray(value).tobytes())
    else:
        hasher.update(json.dumps(value, sort_keys=True, default=repr).encode())
    return hasher.hexdigest()[:16]


def show(name: str, value) -> None:
    print(f"{name:45} {digest(value)}", flush=True)


class Logged:
    """Every point an objective is asked for, and its value (evaluate_many and cell_partials)."""

    def __init__(self, F):
        self.log = []
        evaluate_many, cell_partials = F.evaluate_many, F.cell_partials

        def logged_many(points):
            points = [list(map(float, p)) for p in points]
            values = evaluate_many(points)
            self.log.append(["many", points, [float(v) for v in values]])
            return values

        def logged_partials(x):
            result = cell_partials(x)
            self.log.append(["cell", list(map(float, x)), [float(v) for v in result]])
            return result

        F.evaluate_many, F.cell_partials = logged_many, logged_partials


def trainings():
    for backend in ("numpy", "numba", "cython"):
        for dtype in ("float64", "float32"):
            if backend == "numpy" and dtype == "float32":
                continue
            for hidden, seq in ((20, 5), (37, 11)):
                state = new_state(CORPUS, hidden, seq, 0.1, seed=3, dtype=dtype)
                state = train(CORPUS, steps=60, backend=backend, state=state)
                show(f"train {backend} {dtype} {hidden}x{seq}", np.concatenate([state.params.astype(np.float64),
                                                                                 [state.smooth_loss, state.last_loss]]))
                show(f"score {backend} {dtype} {hidden}x{seq}", heldout_loss(state, CORPUS, 2000, backend=backend).total)


HELDOUT = dict(kind="heldout", train_chars=400, heldout_chars=1000, beta=2)
PAPER = dict(kind="paper", alpha=10, beta=2)


def objectives():
    points = [[24.3, 6.6, 0.1], [30, 8, 0.05], [20, 5, 1e-3], [900, 3, 2.0], [22.5, 7.25, 0.3]]
    for name, settings in (("heldout", HELDOUT), ("paper", PAPER)):
        for dtype in ("float64", "float32"):
            F = Objective(CORPUS, **settings, dtype=dtype)
            show(f"objective {name} {dtype}", F.evaluate_many(points))
        F = Objective(CORPUS, **settings, noise="fresh", seed=5)
        show(f"objective {name} fresh", [F(p) for p in points[:3]] + list(F.evaluate_many(points[:2])))
    F = Objective(CORPUS, **HELDOUT)
    show("cell_partials heldout", [F.cell_partials(p) for p in points[:3]])


RUNS = [
    ("heldout", "gd", dict(max_steps=3), {}),
    ("heldout", "gd", dict(max_steps=2, grad_step="auto"), {}),
    ("heldout", "newton", dict(max_steps=2), {}),
    ("heldout", "bfgs", dict(max_steps=3), {}),
    ("heldout", "dfp", dict(max_steps=3), {}),
    ("heldout", "random", dict(max_steps=8), {}),
    ("heldout", "tpe", dict(max_steps=9, startup_trials=3), {}),
    ("heldout", "gd", dict(max_steps=3), dict(noise="fresh")),
    ("heldout", "random", dict(max_steps=6, budget_chars=5000), {}),
    ("paper", "gd", dict(max_steps=3, step=0.5, x0=[30, 8, 0.1]), {}),
    ("paper", "newton", dict(max_steps=2, x0=[30, 8, 0.1]), {}),
    ("paper", "bfgs", dict(max_steps=3, x0=[30, 8, 0.1], c=1e-4), {}),
    ("paper", "dfp", dict(max_steps=3, x0=[30, 8, 0.1], c=1e-4), {}),
    ("paper", "random", dict(max_steps=5), {}),
    ("paper", "tpe", dict(max_steps=6, startup_trials=2), {}),
    ("paper", "gd", dict(max_steps=3), {}),  # the paper's start, in the penalty region
]

HELDOUT_OPTIONS = {"gd": dict(step=0.5, grad_step=0.05), "bfgs": dict(c=1e-4, fallback_step=0.5, grad_step=0.05),
                   "dfp": dict(c=1e-4, fallback_step=0.5, grad_step=0.05),
                   "newton": dict(grad_step=0.05, hessian_method="stencil")}


def tunings():
    directory = tempfile.mkdtemp()
    for number, (kind, method, arguments, extra) in enumerate(RUNS):
        settings = {**(HELDOUT if kind == "heldout" else PAPER), **extra}
        arguments = dict(arguments)
        if kind == "heldout":
            arguments = {**HELDOUT_OPTIONS.get(method, {}), **arguments}
        F = Objective(CORPUS, **settings, seed=1)
        logged = Logged(F)
        result = tune(F, method, seed=4, record_every=1, **arguments)
        name = f"tune {kind} {method} {number}"
        show(name + " result", [result.x.tolist(), result.fun, result.nit, result.nfev, int(result.status)])
        show(name + " points", logged.log)
        # the same run interrupted half-way and resumed ends the same
        path = os.path.join(directory, f"run{number}.jsonl")
        steps = arguments.pop("max_steps")
        G = Objective(CORPUS, **settings, seed=1)
        tune(G, method, seed=4, record_every=1, out=path, max_steps=steps // 2, **arguments)
        G = Objective(CORPUS, **settings, seed=1)
        resumed = tune(G, method, seed=4, record_every=1, out=path, resume=True, max_steps=steps, **arguments)
        show(name + " resumed", [resumed.x.tolist(), resumed.fun, resumed.nit, resumed.nfev, int(resumed.status)])


if __name__ == "__main__":
    trainings()
    objectives()
    tunings()
