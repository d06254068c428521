"""The NumPy reference against calculus: its gradients are the derivatives of its loss."""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn.backends import reference as _reference
from fastrnn.network.model import TrainState, initial_smooth_loss, parameter_count, unpack


def _loss(params, H, V, inputs, targets, hprev):
    return _reference.loss_and_gradients(unpack(params, H, V), inputs, targets, hprev)[0]


@pytest.mark.parametrize("H,S", [(5, 3), (12, 6)])
def test_gradients_match_central_differences(small_corpus, H, S):
    V = small_corpus.vocab_size
    rng = np.random.default_rng(H)
    # Weights larger than the 0.01 initial scale, so every term of the gradient matters.
    params = rng.standard_normal(parameter_count(H, V)) * 0.3
    hprev = np.tanh(rng.standard_normal(H))
    inputs, targets = small_corpus.data[10 : 10 + S], small_corpus.data[11 : 11 + S]
    loss, grads, _ = _reference.loss_and_gradients(unpack(params, H, V), inputs, targets, hprev)
    flat = np.concatenate([g.ravel() for g in grads])
    # Check every parameter of the small network, a random sample of the larger one.
    indices = np.arange(flat.size) if flat.size < 700 else rng.choice(flat.size, 400, replace=False)
    step = 1e-5
    for k in indices:
        plus, minus = params.copy(), params.copy()
        plus[k] += step
        minus[k] -= step
        numeric = (_loss(plus, H, V, inputs, targets, hprev) - _loss(minus, H, V, inputs, targets, hprev)) / (2 * step)
        # central differences: error O(step^2 * f''') plus rounding O(eps * loss / step)
        assert numeric == pytest.approx(flat[k], rel=1e-6, abs=1e-8), f"parameter {k}"


def test_loss_is_log_sum_exp_stable(small_corpus):
    """Huge logits underflow a probability to 0; the loss must stay finite and correct."""
    H, V, S = 4, small_corpus.vocab_size, 2
    params = np.zeros(parameter_count(H, V))
    w = unpack(params, H, V)
    inputs, targets = small_corpus.data[:S], small_corpus.data[1 : S + 1]
    w.by[:] = 0.0
    w.by[(targets[0] + 1) % V] = 1000.0  # the target's probability is exp(-1000) = 0 in floating point
    loss, grads, _ = _reference.loss_and_gradients(w, inputs, targets, np.zeros(H))
    assert np.isfinite(loss)
    assert loss == pytest.approx(2 * 1000.0, rel=1e-12)
    assert all(np.isfinite(g).all() for g in grads)


def test_fresh_state_matches_min_char_rnn_initialisation():
    H, V = 7, 11
    state = TrainState.fresh(H, 5, 0.1, V, seed=42)
    rng = np.random.RandomState(42)
    w = state.weights
    np.testing.assert_array_equal(w.Wxh, rng.randn(H, V) * 0.01)
    np.testing.assert_array_equal(w.Whh, rng.randn(H, H) * 0.01)
    np.testing.assert_array_equal(w.Why, rng.randn(V, H) * 0.01)
    assert not w.bh.any() and not w.by.any() and not state.memory.any() and not state.hprev.any()
    assert state.smooth_loss == -np.log(1.0 / V) * 5 == initial_smooth_loss(V, 5)


def test_train_steps_follows_the_data_pointer_rule(tiny_corpus):
    """p resets to 0 (and h to zero) before a step when p + S + 1 >= N; else advances by S."""
    N, S = len(tiny_corpus), 25
    state = TrainState.fresh(8, S, 0.1, tiny_corpus.vocab_size, seed=0)
    positions = []
    for _ in range(30):
        _reference.train_steps(tiny_corpus.data, state, 1)
        positions.append(state.position)
    expected, p = [], 0
    for _ in range(30):
        if p + S + 1 >= N:
            p = 0
        p += S
        expected.append(p)
    assert positions == expected
    assert state.steps == 30


def test_one_update_is_adagrad_on_clipped_gradients(small_corpus):
    H, S, V, lr = 6, 4, small_corpus.vocab_size, 0.3
    state = TrainState.fresh(H, S, lr, V, seed=3)
    state.params *= 500  # large weights so that some gradients exceed the clip
    before = state.params.copy()
    w = unpack(before, H, V)
    loss, grads, h_last = _reference.loss_and_gradients(w, small_corpus.data[:S], small_corpus.data[1 : S + 1], np.zeros(H))
    d = np.clip(np.concatenate([g.ravel() for g in grads]), -5, 5)
    assert (np.abs(np.concatenate([g.ravel() for g in grads])) > 5).any()
    _reference.train_steps(small_corpus.data, state, 1)
    np.testing.assert_allclose(state.memory, d * d, rtol=1e-15)
    np.testing.assert_allclose(state.params, before - lr * d / np.sqrt(d * d + 1e-8), rtol=1e-14, atol=1e-300)
    np.testing.assert_array_equal(state.hprev, h_last)
    assert state.smooth_loss == pytest.approx(initial_smooth_loss(V, S) * 0.999 + loss * 0.001, rel=1e-15)


def test_initial_weights_from_the_recent_cache_are_the_drawn_ones(monkeypatch):
    from fastrnn.network import model

    monkeypatch.setattr(model, "_recent_weights", model._RecentWeights(max_bytes=3 * 8 * parameter_count(6, 5)))
    first = model.initial_parameters(6, 5, seed=9)
    first[:] = 123.0  # the caller owns what it gets: training must not change the cached copy
    again = model.initial_parameters(6, 5, seed=9)
    rng = np.random.RandomState(9)
    drawn = np.concatenate([rng.randn(30), rng.randn(36), rng.randn(30), np.zeros(11)]) * 0.01
    np.testing.assert_array_equal(again, drawn)
    assert again.dtype == np.float64
    single = model.initial_parameters(6, 5, seed=9, dtype="float32")
    np.testing.assert_array_equal(single, drawn.astype(np.float32))
    for seed in range(10, 14):  # more than the budget holds: the oldest entries are dropped
        model.initial_parameters(6, 5, seed=seed)
    assert model._recent_weights._bytes <= model._recent_weights.max_bytes
    np.testing.assert_array_equal(model.initial_parameters(6, 5, seed=9), drawn)
