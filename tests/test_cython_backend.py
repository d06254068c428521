"""The Cython kernel (ext/_rnn_cython.pyx) against the NumPy reference.

Skipped only when the extension is not built; under CI (``CI`` set) a missing extension is an
error instead, since CI builds it.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

try:
    from fastrnn.backends import _rnn_cython
except ImportError as exc:  # pragma: no cover - depends on the build
    if os.environ.get("CI"):
        raise
    pytest.skip(f"fastrnn.backends._rnn_cython is not built ({exc}); build it with `pip install -e .`", allow_module_level=True)

from fastrnn import model
from fastrnn.backends import get_backend
from fastrnn.corpus import Corpus
from fastrnn.model import STATUS_DIVERGED, TrainState


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    """A few thousand characters of word-like text over 45 distinct characters."""
    rng = np.random.default_rng(20240607)
    letters = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ")
    words = ["".join(rng.choice(letters, size=rng.integers(1, 9))) for _ in range(300)]
    pieces = []
    for _ in range(900):
        pieces.append(words[rng.integers(len(words))])
        pieces.append(rng.choice([" ", " ", " ", ", ", ". ", ";\n", "!\n", "?", "'"]))
    corpus = Corpus.from_text("".join(pieces), name="synthetic")
    assert 30 <= corpus.vocab_size <= 65 and len(corpus) > 3000
    return corpus


@pytest.fixture(scope="module")
def cython():
    return get_backend("cython")


@pytest.fixture(scope="module")
def numpy_ref():
    return get_backend("numpy")


def _state(corpus, H, S, lr, seed=0, scale=1.0, dtype="float64") -> TrainState:
    state = TrainState.fresh(H, S, lr, corpus.vocab_size, seed, dtype=dtype)
    state.params *= scale
    return state


def _copy(state: TrainState) -> TrainState:
    return TrainState(
        hidden=state.hidden, seq_length=state.seq_length, learning_rate=state.learning_rate,
        vocab_size=state.vocab_size, params=state.params.copy(), memory=state.memory.copy(),
        hprev=np.array(state.hprev, dtype=state.params.dtype), position=state.position, smooth_loss=state.smooth_loss,
        last_loss=state.last_loss, steps=state.steps, status=state.status, seed=state.seed,
    )


def _assert_close(actual, expected, rtol):
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = np.abs(expected).max()
    assert np.abs(actual - expected).max() <= rtol * scale, (np.abs(actual - expected).max(), scale)


def _assert_same_run(a: TrainState, b: TrainState):
    """Bit-identical runs."""
    assert np.array_equal(a.params, b.params, equal_nan=True)
    assert np.array_equal(a.memory, b.memory, equal_nan=True)
    assert np.array_equal(a.hprev, b.hprev, equal_nan=True)
    assert (a.position, a.steps, a.status) == (b.position, b.steps, b.status)
    assert a.smooth_loss == b.smooth_loss
    assert a.last_loss == b.last_loss or (math.isnan(a.last_loss) and math.isnan(b.last_loss))


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


def _mixed_states(corpus):
    configs = [(8, 3, 0.1), (40, 12, 0.05), (20, 5, 0.2), (33, 9, 0.1), (12, 25, 0.3), (64, 4, 0.02), (5, 1, 0.1)]
    return [_state(corpus, H, S, lr, seed=k) for k, (H, S, lr) in enumerate(configs)]


def test_train_many_updates_state_arrays_in_place_and_skips_diverged(corpus, cython):
    states = _mixed_states(corpus)[:3]
    params_ids = [id(s.params) for s in states]
    states[1].status = STATUS_DIVERGED
    frozen = _copy(states[1])
    cython.train_many(corpus.data, states, 4, threads=2)
    assert [id(s.params) for s in states] == params_ids
    _assert_same_run(states[1], frozen)
    assert states[0].steps == states[2].steps == 4
    cython.train_many(corpus.data, states, 0, threads=2)
    assert states[0].steps == 4
    with pytest.raises(ValueError):
        cython.train_many(corpus.data, states, 1, threads=0)


@pytest.mark.parametrize("lr", [1e308, 1e307])
def test_divergence_is_reported(corpus, cython, numpy_ref, lr):
    # Both give a non-finite loss on the second step, after one update has been applied.
    # (Rates up to ~1e306 leave every number finite: absurd losses, but status OK, as in the
    # reference.)
    a, b = _state(corpus, 20, 5, lr, seed=6), _state(corpus, 20, 5, lr, seed=6)
    cython.train_steps(corpus.data, a, 20)
    with np.errstate(all="ignore"):
        numpy_ref.train_steps(corpus.data, b, 20)
    assert a.status == b.status == STATUS_DIVERGED
    assert 1 <= a.steps == b.steps < 20
    # the smooth loss never absorbs the non-finite loss
    assert math.isfinite(a.smooth_loss) and not math.isfinite(a.last_loss)
    assert a.smooth_loss == pytest.approx(b.smooth_loss, rel=1e-9)
    # a diverged run is left alone by further calls
    before = _copy(a)
    cython.train_steps(corpus.data, a, 5)
    _assert_same_run(a, before)


def test_nan_weight_stops_before_any_update(corpus, cython):
    state = _state(corpus, 20, 5, 0.1, seed=7)
    state.weights.Whh[3, 4] = np.nan
    before = _copy(state)
    cython.train_steps(corpus.data, state, 10)
    assert state.status == STATUS_DIVERGED and state.steps == 0
    assert math.isnan(state.last_loss) and state.smooth_loss == before.smooth_loss
    assert np.array_equal(state.params, before.params, equal_nan=True)
    assert np.array_equal(state.memory, before.memory) and state.position == before.position


def test_nan_parameter_off_the_loss_path_is_caught_at_the_end(corpus, cython, numpy_ref):
    # An input column for an id the text never uses: the loss stays finite, the NaN weight is
    # only found by the final check, after all the updates.
    V = corpus.vocab_size + 1
    a = TrainState.fresh(20, 5, 0.1, V, 8)
    a.weights.Wxh[:, V - 1] = np.nan
    b = _copy(a)
    cython.train_steps(corpus.data, a, 15)
    numpy_ref.train_steps(corpus.data, b, 15)
    assert a.status == b.status == STATUS_DIVERGED
    assert a.steps == b.steps == 15
    assert math.isfinite(a.smooth_loss)
    assert abs(a.smooth_loss - b.smooth_loss) <= 1e-9 * abs(b.smooth_loss)
    # and train_many reports it the same way
    c = TrainState.fresh(20, 5, 0.1, V, 8)
    c.weights.Wxh[:, V - 1] = np.nan
    cython.train_many(corpus.data, [c], 15, threads=2)
    _assert_same_run(a, c)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int32, np.int64])
def test_wider_id_types_give_identical_runs(corpus, cython, dtype):
    assert corpus.data.dtype == np.uint8 and not corpus.data.flags.writeable
    wide = corpus.data.astype(dtype)
    wide.flags.writeable = False
    a = _state(corpus, 16, 6, 0.1, seed=9)
    b = _copy(a)
    cython.train_steps(corpus.data, a, 12)
    cython.train_steps(wide, b, 12)
    _assert_same_run(a, b)
    la = cython.loss_and_gradients(a.params, 16, corpus.vocab_size, corpus.data, 50, 6, a.hprev)
    lb = cython.loss_and_gradients(a.params, 16, corpus.vocab_size, wide, 50, 6, a.hprev)
    assert la[0] == lb[0] and np.array_equal(la[1], lb[1])


def test_bad_inputs_raise(corpus):
    H, V, S = 8, corpus.vocab_size, 5
    state = TrainState.fresh(H, S, 0.1, V, 0)
    args = (H, V, S, 0.1, 3, state.params, state.memory, state.hprev, 0, state.smooth_loss)
    bad = corpus.data.astype(np.int64)
    bad[2] = V  # an id outside the vocabulary
    with pytest.raises(ValueError, match="outside"):
        _rnn_cython.train_steps(bad, *args)
    with pytest.raises(ValueError, match="at least"):
        _rnn_cython.train_steps(corpus.data[:S + 1], *args)
    with pytest.raises(TypeError):
        _rnn_cython.train_steps(corpus.data.astype(np.float64), *args)
    with pytest.raises(ValueError):
        _rnn_cython.train_steps(corpus.data, H + 1, V, S, 0.1, 3, state.params, state.memory,
                                np.zeros(H + 1), 0, 0.0)
    with pytest.raises(ValueError):
        _rnn_cython.loss_and_gradients(state.params, H, V, corpus.data, len(corpus) - S, S, state.hprev)


# ---------------------------------------------------------------------------------------
# float32


def _weights_rounded(corpus, H, S, seed):
    """Weights as in test_loss_and_gradients_match_reference, rounded to float32."""
    V = corpus.vocab_size
    rng = np.random.default_rng(seed)
    params = rng.standard_normal(model.parameter_count(H, V)) * 0.3
    model.unpack(params, H, V).Whh[...] *= 1.5 / np.sqrt(H)
    hprev = np.tanh(rng.standard_normal(H))
    return params.astype(np.float32), hprev.astype(np.float32)


def test_float32_initial_weights_are_the_float64_ones_rounded(corpus):
    a, b = _state(corpus, 20, 5, 0.1, seed=3), _state(corpus, 20, 5, 0.1, seed=3, dtype="float32")
    assert b.params.dtype == b.memory.dtype == b.hprev.dtype == np.float32
    assert np.array_equal(b.params, a.params.astype(np.float32))


def test_train_many_mixes_precisions(corpus, cython):
    """A batch of float64 and float32 runs: one train_batch call per dtype, same results."""
    base = [_state(corpus, 20, 5, 0.1, seed=k, dtype=dtype)
            for k, dtype in enumerate(["float64", "float32", "float32", "float64"])]
    batch = [_copy(s) for s in base]
    cython.train_many(corpus.data, batch, 20, threads=2)
    for a, b in zip(batch, base):
        cython.train_steps(corpus.data, b, 20)
        _assert_same_run(a, b)
        assert a.params.dtype == b.params.dtype


def test_float32_divergence_and_mismatched_buffers(corpus, cython):
    state = _state(corpus, 20, 5, 0.1, seed=7, dtype="float32")
    state.weights.Whh[3, 4] = np.nan
    cython.train_steps(corpus.data, state, 10)
    assert state.status == STATUS_DIVERGED and state.steps == 0
    bad = _state(corpus, 20, 5, 0.1, seed=7, dtype="float32")
    bad.memory = bad.memory.astype(np.float64)
    with pytest.raises(TypeError):
        cython.train_steps(corpus.data, bad, 1)
    with pytest.raises((TypeError, ValueError)):  # one precision per call
        _rnn_cython.train_steps(corpus.data, 20, corpus.vocab_size, 5, 0.1, 1, bad.params, bad.memory,
                                bad.hprev, 0, 0.0)
