"""The spread over seeds of the held-out objective's gradient, by difference rule (issue 21).

    python docs/gradient/spread.py --corpus tinyshakespeare.txt > docs/gradient/spread.md

At a few points, for seeds 0, 10, ..., 90 (each seed is another set of initial weights and
another data order), the gradient in z = (log2 h, log2 s, log10 l) of F (20,000 training
characters, 5,000 held out, float32, beta 1) by each rule:

* ``corners``: the earlier held-out default: exact corner differences along h and s (a network of
  h + 1 units against one of h), a forward difference of 0.05 decades along l;
* ``span 0.25`` and ``span 0.5``: central differences over +-0.25 or +-0.5 in z between whole
  networks (``grad_method="span"``, the gradient methods' held-out default is 0.5);
* ``span 0.5, nested``: as span 0.5, with nested initial weights (the network of h units is the
  leading block of the network of h + 1: the weights of unit k are drawn k-th from the seed's
  stream), an idea measured here and not adopted (see docs/COMPARISON.md).

Prints, per point and rule, the mean and standard deviation over the seeds of each component, and
|mean| / std (the signal to noise of one gradient), as a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastrnn.network import model
from fastrnn.objective.function import Objective

POINTS = [(40, 10, 0.1), (100, 25, 0.1), (200, 20, 0.01), (30, 30, 0.3)]
RULES = [("corners", 0.05, "forward", False), ("span 0.25", 0.25, "span", False), ("span 0.5", 0.5, "span", False),
         ("span 0.5, nested", 0.5, "span", True)]


def nested_parameters(hidden, vocab_size, seed, dtype="float64", out=None):
    """Initial weights whose first k units are those of the network of k units (same seed)."""
    H, V = hidden, vocab_size
    rng = np.random.RandomState(seed)
    Wxh, Whh, Why = np.empty((H, V)), np.empty((H, H)), np.empty((V, H))
    for k in range(H):
        draws = rng.randn(2 * V + 2 * k + 1)
        Wxh[k], Why[:, k] = draws[:V], draws[V:2 * V]
        Whh[k, :k], Whh[:k + 1, k] = draws[2 * V:2 * V + k], draws[2 * V + k:]
    flat = np.concatenate([Wxh.ravel(), Whh.ravel(), Why.ravel(), np.zeros(H + V)]) * model.INIT_SCALE
    flat = flat.astype(dtype)
    if out is None:
        return flat
    out[...] = flat
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=None, help="training text (default: the built-in corpus)")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    minchar = model.initial_parameters
    started = time.perf_counter()
    print("| point (h, s, l) | rule | mean dF/dz (h, s, l) | std over seeds | abs(mean) / std |")
    print("|---|---|---|---|---|")
    for point in POINTS:
        for name, step, method, nested in RULES:
            model.initial_parameters = nested_parameters if nested else minchar
            model._recent_weights.clear()
            gradients = []
            for seed in range(0, 10 * args.seeds, 10):
                F = Objective(args.corpus, train_chars=20_000, heldout_chars=5_000, dtype="float32", seed=seed)
                view = F.log_space()
                gradients.append(view.value_and_gradient(view.space.from_point(point), step, method)[1])
            g = np.array(gradients)
            mean, std = g.mean(axis=0), g.std(axis=0, ddof=1)
            fmt = lambda v: ", ".join(f"{x:.3g}" for x in v)  # noqa: E731
            print(f"| {point} | {name} | {fmt(mean)} | {fmt(std)} | {fmt(np.abs(mean) / std)} |", flush=True)
    model.initial_parameters = minchar
    print(f"\n{args.seeds} seeds; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
