"""The Numba kernel of this checkout against the one of another commit, side by side in one process.

``fastrnn bench``'s step-rate method (a fresh state per timing, steps calibrated to about 0.05 s,
interleaved rounds, medians), on the two kernels only, so a kernel change is measured against its
base in one run::

    python benches/numba_versions.py --base 3fa49fc --corpus tinyshakespeare.txt --rounds 9

For another vector width, compile both for it: ``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=...``
(tests/test_same_bits.py lists the feature strings). The base kernel is read with ``git show`` and
imported from a temporary folder; its relative imports are taken from this checkout (the model's
constants and ``._lanes``), so a base whose kernel needs other versions of those cannot be loaded this way.
Chaotic training means the two kernels' trajectories part after some steps: a kernel whose
rounding leads into a slow regime (e.g. saturated float32 networks) shows it here too.
"""
from __future__ import annotations

import argparse
import importlib.util
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
KERNEL = "fastrnn/backends/_numba_kernel.py"


def load_base_kernel(rev: str, folder: pathlib.Path):
    shown = subprocess.run(["git", "show", f"{rev}:{KERNEL}"], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode != 0:
        raise SystemExit(f"error: --base {rev}: no {KERNEL} there ({shown.stderr.strip()}); give a commit of this "
                         "repository that has the numba kernel")
    source = shown.stdout
    source = re.sub(r"^from \.\.([\w.]+) import", r"from fastrnn.\1 import", source, flags=re.M)
    source = source.replace("from fastrnn.model import", "from fastrnn.network.model import")  # before the folders
    source = re.sub(r"^from \.(\w+) import", r"from fastrnn.backends.\1 import", source, flags=re.M)
    path = folder / f"numba_kernel_{rev}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit whose kernel to compare with")
    parser.add_argument("--corpus", default=None, help="training text (default: the built-in corpus)")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()

    from fastrnn.backends._base import KernelResult
    from fastrnn.backends.numba import NumbaBackend
    from fastrnn.bench import rates
    from fastrnn.network.corpus import load_corpus

    with tempfile.TemporaryDirectory() as folder:
        base = load_base_kernel(args.base, pathlib.Path(folder))

        class BaseNumba(NumbaBackend):
            name = f"numba@{args.base}"

            def _kernel_train_steps(self, data, state, n_steps):
                return KernelResult(*base.train_steps(
                    data, state.hidden, state.vocab_size, state.seq_length, state.learning_rate, n_steps,
                    state.params, state.memory, state.hprev, state.position, state.smooth_loss))

        corpus = load_corpus(args.corpus)
        old, new = BaseNumba(), NumbaBackend()
        print(f"| dtype | H | S | {old.name} steps/s | this checkout steps/s | time, new / old: median (range) |")
        print("|---|---:|---:|---:|---:|---:|")
        for dtype in ("float64", "float32"):
            for hidden, seq_length in rates.CONFIGS:
                steps = min(rates.calibrate(b, corpus, hidden, seq_length, dtype) for b in (old, new))
                speed = {old.name: [], new.name: []}
                for _ in range(args.rounds):
                    for b in (old, new):
                        speed[b.name].append(steps / rates.time_training(b, corpus, hidden, seq_length, steps, dtype))
                ratios = [o / n for o, n in zip(speed[old.name], speed[new.name])]
                print(f"| {dtype} | {hidden} | {seq_length} | {statistics.median(speed[old.name]):,.0f} | "
                      f"{statistics.median(speed[new.name]):,.0f} | {statistics.median(ratios):.3f} "
                      f"({min(ratios):.3f}-{max(ratios):.3f}) |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
