"""Backend selection: names, availability, helpful errors."""

from __future__ import annotations

import os
import sys

import pytest

from fastrnn import backends
from fastrnn.backends import BACKEND_NAMES, BackendUnavailable, backend_report, get_backend


def test_required_backends_are_built():
    """CI sets FASTRNN_REQUIRE_BACKENDS so that a failed build cannot pass as skipped tests."""
    required = [name for name in os.environ.get("FASTRNN_REQUIRE_BACKENDS", "numba").split(",") if name]
    for name in required:
        assert get_backend(name).name == name


def test_required_extras_are_installed():
    """CI sets FASTRNN_REQUIRE_EXTRAS so that the optional integrations' tests run there, not skip."""
    import importlib

    for name in [name for name in os.environ.get("FASTRNN_REQUIRE_EXTRAS", "").split(",") if name]:
        importlib.import_module({"dask": "distributed"}.get(name, name))


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(ValueError, match="numpy, numba, cython"):
        get_backend("fortran")


def test_missing_extension_says_how_to_build_it(monkeypatch):
    # As if the extension were not built: None in sys.modules makes its import fail.
    monkeypatch.setattr(backends, "_instances", {})
    monkeypatch.delitem(sys.modules, "fastrnn.backends.cython", raising=False)
    monkeypatch.setitem(sys.modules, "fastrnn.backends._rnn_cython", None)
    monkeypatch.delattr(backends, "_rnn_cython", raising=False)
    with pytest.raises(BackendUnavailable, match="pip install -e"):
        get_backend("cython")
    rows = {row["name"]: row for row in backend_report()}
    assert rows["cython"]["available"] is False and "pip install" in rows["cython"]["note"]
    assert rows["numba"]["available"] is True


def test_report_lists_every_backend_with_version():
    rows = backend_report()
    assert [row["name"] for row in rows] == list(BACKEND_NAMES)
    for row in rows:
        if row["available"]:
            assert row["version"] and row["threading"]


def test_threads_must_be_positive(small_corpus):
    from fastrnn.network.model import TrainState

    state = TrainState.fresh(4, 3, 0.1, small_corpus.vocab_size, 0)
    with pytest.raises(ValueError, match="threads"):
        get_backend("numba").train_many(small_corpus.data, [state], 1, threads=0)
