"""Shared fixtures: small synthetic corpora (no test needs the Shakespeare files) and the backends.

Backend fixtures parametrise over :data:`fastrnn.backends.REGISTRY`, so a new backend is tested
as soon as it is registered; helpers live in ``helpers.py``.
"""

from __future__ import annotations

import pytest

from fastrnn.backends import BACKEND_NAMES, COMPILED_BACKENDS, get_backend
from fastrnn.network.corpus import Corpus

from helpers import backend_params, synthetic_text, word_text


@pytest.fixture(scope="session")
def small_corpus() -> Corpus:
    return Corpus.from_text(synthetic_text(20_000), name="synthetic")


@pytest.fixture(scope="session")
def tiny_corpus() -> Corpus:
    """Short enough that training wraps around the text many times."""
    return Corpus.from_text(synthetic_text(300, seed=1), name="tiny")


@pytest.fixture
def corpus_file(tmp_path, small_corpus) -> str:
    """``small_corpus`` as a UTF-8 file, for the command line."""
    path = tmp_path / "text.txt"
    path.write_text(small_corpus.text, encoding="utf-8")
    return str(path)


@pytest.fixture
def poison_new_runs(monkeypatch):
    """``poison_new_runs(value)``: every new training run starts with all weights = value."""
    from fastrnn.network import model

    original = model.initial_parameters

    def poison(value):
        def poisoned(*args, **kwargs):
            flat = original(*args, **kwargs)
            flat[...] = value
            return flat

        monkeypatch.setattr(model, "initial_parameters", poisoned)

    return poison


@pytest.fixture(params=backend_params(COMPILED_BACKENDS))
def backend(request):
    """Each compiled backend of the registry in turn (skipped, with the reason, where not built)."""
    return get_backend(request.param)


@pytest.fixture(params=backend_params(BACKEND_NAMES))
def any_backend(request):
    """Each backend of the registry in turn, the numpy reference included (skipped where not built)."""
    return get_backend(request.param)


@pytest.fixture(scope="session")
def word_corpus() -> Corpus:
    """A few thousand characters of word-like text over 45 distinct characters."""
    corpus = Corpus.from_text(word_text(), name="synthetic words")
    assert 30 <= corpus.vocab_size <= 65 and len(corpus) > 3000
    return corpus


@pytest.fixture(scope="session")
def reference():
    return get_backend("numpy")
