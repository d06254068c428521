"""What only the Cython extension has: its module metadata and its raw entry points' checks.

Everything a backend must do is in test_backend_contract.py and test_kernels.py, run on every
compiled backend. Skipped only when the extension is not built; under CI a missing extension is
an error instead, since CI builds it.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn.backends import get_backend
from fastrnn.network import model
from fastrnn.network.model import TrainState

from helpers import cython_extension_or_skip, fresh_state

_rnn_cython = cython_extension_or_skip()


@pytest.fixture(scope="module")
def cython():
    return get_backend("cython")


def test_module_metadata(cython):
    assert _rnn_cython.CONSTANTS == dict(
        GRADIENT_CLIP=model.GRADIENT_CLIP, ADAGRAD_EPS=model.ADAGRAD_EPS, SMOOTHING=model.SMOOTHING
    )
    assert isinstance(_rnn_cython.openmp_enabled(), bool)
    assert _rnn_cython.CYTHON_VERSION[0].isdigit()
    assert cython.name == "cython" and cython.releases_gil
    assert _rnn_cython.CYTHON_VERSION in cython.version()
    assert ("OpenMP on" if _rnn_cython.openmp_enabled() else "OpenMP off") in cython.version()
    assert isinstance(_rnn_cython.simd_dispatch_enabled(), bool)
    assert ("SIMD dispatch on" if _rnn_cython.simd_dispatch_enabled() else "SIMD dispatch off") in cython.version()
    assert _rnn_cython.DTYPES == model.DTYPES


def test_bad_inputs_raise(word_corpus):
    H, V, S = 8, word_corpus.vocab_size, 5
    state = TrainState.fresh(H, S, 0.1, V, 0)
    args = (H, V, S, 0.1, 3, state.params, state.memory, state.hprev, 0, state.smooth_loss)
    bad = word_corpus.data.astype(np.int64)
    bad[2] = V  # an id outside the vocabulary
    # the kernel stops before the window with the bad id and says so in its status (the backend
    # raises; test_backend_contract.py), keeping what it trained before
    assert _rnn_cython.train_steps(bad, *args)[3:] == (0, -1)
    with pytest.raises(ValueError, match="at least"):
        _rnn_cython.train_steps(word_corpus.data[:S + 1], *args)
    with pytest.raises(TypeError):
        _rnn_cython.train_steps(word_corpus.data.astype(np.float64), *args)
    with pytest.raises(ValueError):
        _rnn_cython.train_steps(word_corpus.data, H + 1, V, S, 0.1, 3, state.params, state.memory,
                                np.zeros(H + 1), 0, 0.0)
    with pytest.raises(ValueError):
        _rnn_cython.loss_and_gradients(state.params, H, V, word_corpus.data, len(word_corpus) - S, S, state.hprev)


def test_raw_entry_point_takes_one_precision_per_call(word_corpus):
    bad = fresh_state(word_corpus, 20, 5, 0.1, seed=7, dtype="float32")
    bad.memory = bad.memory.astype(np.float64)
    with pytest.raises((TypeError, ValueError)):  # one precision per call
        _rnn_cython.train_steps(word_corpus.data, 20, word_corpus.vocab_size, 5, 0.1, 1, bad.params, bad.memory,
                                bad.hprev, 0, 0.0)
