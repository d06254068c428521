"""Compile the numba kernels before the first run: ``python -m fastrnn.tuning.warm_up``.

numba compiles a kernel the first time a process calls it with new argument types, and caches the
machine code beside the package (``cache=True``), where later processes load it in well under a
second. The first run after installing otherwise compiles inside its own time budget: about 47 s
of `make run`'s four minutes on the 2-core development machine, on one core while the other
idles. `make`'s install step runs this module, so a budget goes to training.

It runs the paths a run takes (the objective's fresh trainings, successive halving's continued
networks, held-out scoring, the top networks' cooldown) on a small synthetic text, through the
public API, in each precision asked for; the results are thrown away.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ..network.corpus import Corpus

#: The precisions warmed by default: the held-out objective's (float32) and the paper's (float64).
DTYPES = ("float32", "float64")


def _text(n: int = 12_000) -> Corpus:
    rng = np.random.default_rng(0)
    words = ["the", "king", "and", "queen", "of", "rome", "shall", "speak", "now", "to", "thee"]
    lines = [" ".join(rng.choice(words, size=8)) for _ in range(n // 40)]
    return Corpus.from_text("\n".join(lines), name="warm-up text")


def warm_up(dtypes=DTYPES, threads: int = 2) -> float:
    """Compile (or load) every numba kernel a run uses, in each of ``dtypes``; the seconds it took."""
    from ..objective import Objective
    from .halving import HalvingSettings, halve

    started = time.perf_counter()
    text = _text()
    for dtype in dtypes:
        F = Objective(text, heldout_chars=1000, seed=0, threads=threads, dtype=dtype, train_chars=2000)
        F([24.0, 10.0, 0.05])
        halve(F, HalvingSettings(min_chars=400, eta=3, top=2, starts=4, sampler="random"), budget_chars=20_000)
    return time.perf_counter() - started


def main(argv=None) -> int:
    dtypes = tuple(argv if argv is not None else sys.argv[1:]) or DTYPES
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        print(f"fastrnn.tuning.warm_up: unknown precision {unknown[0]!r}; give any of {', '.join(DTYPES)}",
              file=sys.stderr)
        return 2
    seconds = warm_up(dtypes)
    print(f"numba kernels ready ({', '.join(dtypes)}) in {seconds:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
