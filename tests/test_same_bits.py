"""The same bits on every x86-64 CPU: the Numba kernel compiled for other vector widths.

``fingerprint.py`` hashes trainings (both precisions, sizes that leave every kind of loop tail),
held-out scores, both objectives and a short run of every method; ``fingerprints.json`` holds
the expected hashes. Here they are computed in this process (the kernel compiled for this
CPU) and, in subprocesses with their own Numba caches, with the kernel compiled for SSE4.2
(no FMA instruction: libm's fma), AVX2 + FMA and, where this CPU has it, AVX-512. A change
meant to alter results regenerates the file (``python tests/fingerprint.py --write``).
"""
from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys

import pytest

from fingerprint import FINGERPRINTS, fingerprints

HERE = pathlib.Path(__file__).resolve().parent

_BASE = "+64bit,+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16,+cmov"
_AVX2 = _BASE + ",+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+lzcnt,+movbe"
_AVX512 = _AVX2 + ",+avx512f,+avx512cd,+avx512bw,+avx512dq,+avx512vl"
#: Numba targets (CPU name, features): 2, 4 and 8 float64 per vector register.
TARGETS = {
    "sse4.2": ("nehalem", _BASE),
    "avx2": ("haswell", _AVX2),
    "avx512": ("skylake-avx512", _AVX512),
}


def _expected() -> dict:
    return json.loads(FINGERPRINTS.read_text())


def _differences(found: dict, expected: dict) -> list[str]:
    return [f"{key}: {found.get(key)} != {value}" for key, value in sorted(expected.items())
            if key in found and found[key] != value] + [f"{key}: not expected" for key in found if key not in expected]


def _host_features() -> set[str]:
    from numba.core.codegen import get_host_cpu_features

    return {flag.lstrip("+") for flag in get_host_cpu_features().split(",") if flag.startswith("+")}


def _runnable_targets() -> list:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return [pytest.param(name, marks=pytest.mark.skip(reason="x86-64 targets on an x86-64 machine only"))
                for name in TARGETS]
    host = _host_features()
    params = []
    for name, (_, features) in TARGETS.items():
        missing = {flag.lstrip("+") for flag in features.split(",")} - host - {"64bit"}
        params.append(name if not missing else pytest.param(
            name, marks=pytest.mark.skip(reason=f"this CPU lacks {', '.join(sorted(missing))}")))
    return params


def test_fingerprints_cover_every_method_and_size():
    expected = _expected()
    from fastrnn.optimize.methods import METHODS

    assert {f"tune/{method}" for method in METHODS} <= set(expected)
    assert sum(key.startswith("train/") for key in expected) == 8


def test_host_compiled_kernel_gives_the_committed_bits():
    found = fingerprints()
    if "tune/tpe" not in found:  # without the optuna extra, which CI requires
        assert "optuna" not in os.environ.get("FASTRNN_REQUIRE_EXTRAS", "")
    assert not _differences(found, _expected()), (
        "results changed; if that is meant, regenerate with `python tests/fingerprint.py --write`")


@pytest.mark.parametrize("target", _runnable_targets())
def test_kernel_compiled_for_another_vector_width_gives_the_committed_bits(target, tmp_path):
    cpu, features = TARGETS[target]
    env = {**os.environ, "NUMBA_CPU_NAME": cpu, "NUMBA_CPU_FEATURES": features,
           "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    done = subprocess.run([sys.executable, str(HERE / "fingerprint.py")], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    assert found and not _differences(found, _expected()), f"compiled for {target}"
