"""Builds of the Cython kernel side by side: steps/s of ``train_steps`` from the same fresh states.

    python benches/cython_builds.py old=/path/to/old/_rnn_cython.so new=/path/to/new/_rnn_cython.so

Each argument names a built ``fastrnn.backends._rnn_cython`` (copy the .so aside before
rebuilding; a copy built with ``FASTRNN_BASELINE_ONLY`` shows the baseline clone's speed on an
AVX2 machine). All are loaded into this one process. Each round trains every build on every
(H, S, dtype) in turn, a fixed number of steps from the same fresh state (lr 0.01, so no run
wanders into a diverging, subnormal-heavy regime that changes speed), the order of the builds
rotating from round to round. Each figure is the median over rounds; each ratio the median of
the per-round ratios to the first build.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

import numpy as np

from fastrnn.network.corpus import load_corpus
from fastrnn.network.model import TrainState

#: (H, S, steps per timing): the benchmark sizes, about 0.05-0.15 s per timing on an AVX2 core.
CONFIGS = [(20, 5, 4000), (100, 25, 400), (410, 25, 40)]
DTYPES = ["float64", "float32"]


def load(path: str):
    spec = importlib.util.spec_from_file_location("fastrnn.backends._rnn_cython", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rate(module, corpus, H, S, steps, dtype, lr) -> float:
    state = TrainState.fresh(H, S, lr, corpus.vocab_size, seed=0, dtype=dtype)
    hprev = np.array(state.hprev, dtype=state.params.dtype)
    start = time.perf_counter()
    done = module.train_steps(corpus.data, H, corpus.vocab_size, S, lr, steps, state.params, state.memory,
                              hprev, 0, state.smooth_loss)[3]
    seconds = time.perf_counter() - start
    assert done == steps, "a run stopped early"
    return steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("builds", nargs="+", metavar="NAME=PATH")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args()
    modules = {name: load(path) for name, path in (build.split("=", 1) for build in args.builds)}
    names = list(modules)
    for name, module in modules.items():
        print(f"{name}: {module.SIMD_DISPATCH}; {getattr(module, 'COMPILE_ARGS', '?')}")
    corpus = load_corpus(None)
    for H, S, steps in CONFIGS:  # warm-up
        for dtype in DTYPES:
            for module in modules.values():
                rate(module, corpus, H, S, max(1, steps // 10), dtype, args.lr)
    rates: dict[tuple, list[float]] = {}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for H, S, steps in CONFIGS:
            for dtype in DTYPES:
                for name in order:
                    rates.setdefault((H, S, dtype, name), []).append(rate(modules[name], corpus, H, S, steps, dtype,
                                                                          args.lr))
    print(f"steps/s, median of {args.rounds} rounds")
    print(f"{'H':>4} {'S':>3} {'dtype':8}" + "".join(f" {name:>12}" for name in names)
          + "".join(f" {name + '/' + names[0]:>16}" for name in names[1:]))
    for H, S, _ in CONFIGS:
        for dtype in DTYPES:
            base = rates[(H, S, dtype, names[0])]
            medians = [statistics.median(rates[(H, S, dtype, name)]) for name in names]
            ratios = [statistics.median([x / y for x, y in zip(rates[(H, S, dtype, name)], base)]) for name in names[1:]]
            print(f"{H:>4} {S:>3} {dtype:8}" + "".join(f" {m:>12,.0f}" for m in medians)
                  + "".join(f" {x:>16.3f}" for x in ratios))


if __name__ == "__main__":
    main()
