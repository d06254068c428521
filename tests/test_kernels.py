"""Every compiled backend against the NumPy reference.

Training is chaotic: at (H, S) = (100, 25), lr 0.1 a 1e-15 change of the initial weights grows to
a 1e-2 weight difference within 30 updates. So single steps are compared to 1e-12, whole runs
where they are stable, and long runs by their statistics over seeds.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn.network.model import DTYPES, GRADIENT_CLIP, STATUS_DIVERGED, STATUS_OK, TrainState

from helpers import SIZES, relative_error, run_fresh


@pytest.mark.parametrize("H,S", SIZES)
def test_one_step_loss_and_gradients_match_reference(backend, reference, small_corpus, H, S):
    V = small_corpus.vocab_size
    rng = np.random.default_rng(H + S)
    state = TrainState.fresh(H, S, 0.1, V, seed=11)
    state.params += rng.standard_normal(state.params.size) * 0.05  # away from the tiny initial scale
    hprev = np.tanh(rng.standard_normal(H))
    start = 123
    expected = reference.loss_and_gradients(state.params, H, V, small_corpus.data, start, S, hprev)
    actual = backend.loss_and_gradients(state.params, H, V, small_corpus.data, start, S, hprev)
    assert abs(actual[0] - expected[0]) <= 1e-12 * abs(expected[0])
    assert relative_error(actual[1], expected[1]) <= 1e-12
    clip = lambda g: np.clip(g, -GRADIENT_CLIP, GRADIENT_CLIP)  # noqa: E731
    assert relative_error(clip(actual[1]), clip(expected[1])) <= 1e-12
    assert relative_error(actual[2], expected[2]) <= 1e-12


def test_whole_run_matches_reference_where_stable(backend, reference, small_corpus):
    expected = run_fresh(reference, small_corpus, 20, 5, 0.1, 100)
    actual = run_fresh(backend, small_corpus, 20, 5, 0.1, 100)
    assert actual.steps == expected.steps == 100
    assert actual.position == expected.position
    assert abs(actual.smooth_loss - expected.smooth_loss) <= 1e-9 * expected.smooth_loss
    assert relative_error(actual.params, expected.params) <= 1e-9


@pytest.mark.parametrize("H,S", SIZES[1:])
def test_first_updates_match_reference_at_larger_sizes(backend, reference, small_corpus, H, S):
    expected = run_fresh(reference, small_corpus, H, S, 0.1, 3)
    actual = run_fresh(backend, small_corpus, H, S, 0.1, 3)
    assert abs(actual.smooth_loss - expected.smooth_loss) <= 1e-12 * expected.smooth_loss
    assert abs(actual.last_loss - expected.last_loss) <= 1e-11 * expected.last_loss
    assert relative_error(actual.params, expected.params) <= 1e-10
    assert relative_error(actual.memory, expected.memory) <= 1e-10


def test_long_runs_agree_with_reference_in_distribution(backend, reference, small_corpus):
    """Past the chaotic horizon runs differ individually; their mean loss over seeds must not."""
    seeds = range(6)
    expected = np.array([run_fresh(reference, small_corpus, 32, 10, 0.1, 150, seed).smooth_loss for seed in seeds])
    actual = np.array([run_fresh(backend, small_corpus, 32, 10, 0.1, 150, seed).smooth_loss for seed in seeds])
    spread = np.std(expected, ddof=1) + np.std(actual, ddof=1)
    assert abs(actual.mean() - expected.mean()) <= max(spread, 1e-6 * expected.mean())


def test_wraparound_matches_reference(backend, reference, tiny_corpus):
    expected = run_fresh(reference, tiny_corpus, 16, 7, 0.1, 200)
    actual = run_fresh(backend, tiny_corpus, 16, 7, 0.1, 200)
    assert actual.position == expected.position
    assert abs(actual.smooth_loss - expected.smooth_loss) <= 1e-9 * expected.smooth_loss


@pytest.mark.parametrize("dtype", DTYPES)
def test_chunked_training_equals_one_call(backend, small_corpus, dtype):
    whole = TrainState.fresh(30, 9, 0.1, small_corpus.vocab_size, 0, dtype)
    backend.train_steps(small_corpus.data, whole, 30)
    chunked = TrainState.fresh(30, 9, 0.1, small_corpus.vocab_size, 0, dtype)
    for _ in range(3):
        backend.train_steps(small_corpus.data, chunked, 10)
    assert chunked.steps == 30 and chunked.params.dtype == chunked.hprev.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(chunked.params, whole.params)
    np.testing.assert_array_equal(chunked.hprev, whole.hprev)
    assert chunked.smooth_loss == whole.smooth_loss and chunked.position == whole.position


def _batch(corpus, dtype):
    configs = [(20, 5, 0.1), (41, 12, 0.3), (64, 25, 0.05), (20, 6, 0.1), (33, 40, 0.9)]
    return [TrainState.fresh(H, S, lr, corpus.vocab_size, seed, dtype) for seed, (H, S, lr) in enumerate(configs)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_batches_are_bit_identical_for_any_thread_count(backend, small_corpus, dtype):
    results = {}
    for threads in (1, 2, 3):
        states = _batch(small_corpus, dtype)
        backend.train_many(small_corpus.data, states, 40, threads=threads)
        results[threads] = states
    one_by_one = _batch(small_corpus, dtype)
    for state in one_by_one:
        backend.train_steps(small_corpus.data, state, 40)
    for states in (results[2], results[3], one_by_one):
        for a, b in zip(results[1], states):
            assert a.params.dtype == b.params.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(a.params, b.params)
            np.testing.assert_array_equal(a.memory, b.memory)
            assert a.smooth_loss == b.smooth_loss and a.steps == b.steps == 40


@pytest.mark.parametrize("dtype", DTYPES)
def test_divergence_is_reported_not_hidden(backend, small_corpus, dtype):
    state = TrainState.fresh(20, 5, 0.1, small_corpus.vocab_size, 0, dtype)
    state.params[5] = np.nan
    backend.train_steps(small_corpus.data, state, 10)
    assert state.status == STATUS_DIVERGED
    assert state.steps == 0


def test_non_finite_gradient_is_not_clipped_away(backend, small_corpus):
    """A weight of inf makes the loss NaN: the run stops before any update."""
    state = TrainState.fresh(20, 5, 0.1, small_corpus.vocab_size, 0)
    state.weights.Why[0, 0] = np.inf
    backend.train_steps(small_corpus.data, state, 5)
    assert state.status == STATUS_DIVERGED


def test_healthy_run_status_ok(backend, small_corpus):
    state = run_fresh(backend, small_corpus, 20, 5, 0.1, 10)
    assert state.status == STATUS_OK and np.isfinite(state.smooth_loss)
