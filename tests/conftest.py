"""Shared fixtures: a small synthetic corpus, so no test needs the Shakespeare files."""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn.backends import BackendUnavailable, get_backend
from fastrnn.corpus import Corpus

_WORDS = (
    "the and to of a my in you is that it not with for this me be your his he have thou but "
    "as so will what her thy all no by do shall if are we thee on our lord now good more o"
).split()


def synthetic_text(n_chars: int, seed: int = 0) -> str:
    """Speech-like text: 'NAME:' lines and lines of words, about 40 distinct characters."""
    rng = np.random.default_rng(seed)
    names = ["ROMEO", "JULIET", "KING", "FOOL"]
    parts = []
    size = 0
    while size < n_chars:
        speech = [f"{names[rng.integers(len(names))]}:"]
        for _ in range(rng.integers(1, 4)):
            words = rng.choice(_WORDS, size=rng.integers(3, 9))
            line = " ".join(words).capitalize() + str(rng.choice(list(",.;!?")))
            speech.append(line)
        block = "\n".join(speech) + "\n\n"
        parts.append(block)
        size += len(block)
    return "".join(parts)[:n_chars]


@pytest.fixture(scope="session")
def small_corpus() -> Corpus:
    return Corpus.from_text(synthetic_text(20_000), name="synthetic")


@pytest.fixture(scope="session")
def tiny_corpus() -> Corpus:
    """Short enough that training wraps around the text many times."""
    return Corpus.from_text(synthetic_text(300, seed=1), name="tiny")


@pytest.fixture
def poison_new_runs(monkeypatch):
    """``poison_new_runs(value)``: every new training run starts with all weights = value."""
    from fastrnn.model import TrainState

    original = TrainState.fresh

    def poison(value):
        def poisoned(*args, **kwargs):
            state = original(*args, **kwargs)
            state.params[:] = value
            return state

        monkeypatch.setattr(TrainState, "fresh", poisoned)

    return poison


def _compiled(name):
    """A compiled backend's name, skipped only where it is not built (CI requires it is)."""
    try:
        get_backend(name)
    except BackendUnavailable as exc:
        return pytest.param(name, marks=pytest.mark.skip(reason=str(exc)))
    return name


@pytest.fixture(params=[_compiled("numba"), _compiled("cython")])
def backend(request):
    """Each compiled backend in turn."""
    return get_backend(request.param)


@pytest.fixture(scope="session")
def reference():
    return get_backend("numpy")


def relative_error(actual, expected) -> float:
    """max |actual - expected| / max |expected|, in float64."""
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(np.asarray(actual, dtype=np.float64) - expected)) / np.max(np.abs(expected)))
