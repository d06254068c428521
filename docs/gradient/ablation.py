"""Each idea of issue 21 alone and combined: gradient descent's best held-out loss at equal budget.

    python docs/gradient/ablation.py --corpus tinyshakespeare.txt > docs/gradient/ablation-tinyshakespeare.md
    python docs/gradient/ablation.py > docs/gradient/ablation-builtin.md          # the built-in corpus

Every row tunes the held-out objective (20,000 training characters per network, 5,000 held out,
float32, beta 1) from seeds 0..9 with a budget of 1,200,000 training characters (60 networks),
as `fastrnn tune --method M --seed K --budget-chars 1200000 ... <the row's options>` does, and
reports the lowest value among the run's records (the iterates; a sampler's trials): median and
range over the seeds. Two runs at a time, one thread each (results do not depend on it).
"""

from __future__ import annotations

import argparse
import statistics
from concurrent.futures import ProcessPoolExecutor

SPAN = dict(grad_method="span", grad_step=0.5)
DESCENT = dict(snap=True, backtrack=3)
START = dict(start_trials=8)
RESTARTS = dict(restart_trials=8, min_step=0.01)
#: name: (method, options), in the order of docs/COMPARISON.md's table
VARIANTS = {
    "gd, the earlier held-out defaults (corner differences, step 0.5)": ("gd", dict(step=0.5, grad_step=0.05)),
    "gd + span differences": ("gd", dict(step=0.5, **SPAN)),
    "gd + start from the best of 9": ("gd", dict(step=0.5, grad_step=0.05, **START)),
    "gd + span + whole h, s + descent only": ("gd", dict(step=0.5, **SPAN, **DESCENT)),
    "gd + span + start + whole h, s + descent only": ("gd", dict(step=0.5, **SPAN, **START, **DESCENT)),
    "gd, all of them + restarts (the new default)": ("gd", dict(step=0.5, **SPAN, **START, **DESCENT, **RESTARTS)),
    "the new default with --step 0.1": ("gd", dict(step=0.1, **SPAN, **START, **DESCENT, **RESTARTS)),
    "bfgs, the earlier held-out defaults": ("bfgs", dict(c=1e-4, fallback_step=0.5, grad_step=0.05)),
    "bfgs + span + start + whole h, s (the new default)": ("bfgs", dict(c=1e-4, fallback_step=0.5, snap=True,
                                                                         **SPAN, **START)),
    "random search (batch 4)": ("random", dict(batch=4)),
    "TPE (batch 4)": ("tpe", dict(batch=4)),
}


def best_found(args) -> float:
    corpus, method, options, seed = args
    from fastrnn.objective.function import Objective
    from fastrnn.tuning.runner import tune

    F = Objective(corpus, train_chars=20_000, heldout_chars=5_000, dtype="float32", seed=seed, threads=1)
    result = tune(F, method, seed=seed, budget_chars=1_200_000, **options)
    return min(record["fun"] for record in result.trajectory)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=None, help="training text (default: the built-in corpus)")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    print("| variant | median best (nats/char) | range | spread (max - min) |")
    print("|---|---:|---:|---:|")
    with ProcessPoolExecutor(2) as pool:
        for name, (method, options) in VARIANTS.items():
            bests = list(pool.map(best_found, [(args.corpus, method, options, seed) for seed in range(args.seeds)]))
            print(f"| {name} | {statistics.median(bests):.4f} | {min(bests):.4f}-{max(bests):.4f} | "
                  f"{max(bests) - min(bests):.4f} |", flush=True)


if __name__ == "__main__":
    main()
