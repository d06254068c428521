"""The held-out loss: compiled kernels against the NumPy reference, and the public wrapper."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastrnn.backends import reference as _reference
from fastrnn.network.corpus import Corpus
from fastrnn.network.model import TrainState, unpack
from fastrnn.network.scoring import HeldoutLoss, heldout_loss, heldout_losses

from helpers import synthetic_text

# float64 kernels sum the same terms as the reference in another order; float32 ones round
# every weight and activation to single precision
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}
H = 24


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.from_text(synthetic_text(6000, seed=3), name="scoring")


@pytest.fixture(scope="module")
def trained(corpus) -> TrainState:
    """A network trained for 300 updates (weights far from their tiny initial values)."""
    from fastrnn.network.training import train

    state = train(corpus, hidden=H, seq_length=10, learning_rate=0.1, steps=300, seed=4, backend="numba")
    assert state.status == 0
    return state


def _params(state: TrainState, dtype: str) -> np.ndarray:
    return state.params.astype(dtype)


def _reference_loss(params, vocab_size, data) -> float:
    return _reference.heldout_loss(unpack(params, H, vocab_size), data)


def _relative(actual, expected) -> float:
    return abs(actual - expected) / abs(expected)


@pytest.mark.parametrize("dtype", ("float64", "float32"))
@pytest.mark.parametrize("n", (2, 3, 64, 65, 66, 129, 1000))
def test_kernel_matches_reference(backend, corpus, trained, dtype, n):
    """Block boundaries at 64 steps: n - 1 below, at and above one and two blocks."""
    params = _params(trained, dtype)
    data = corpus.data[:n]
    actual = backend.heldout_loss(params, H, corpus.vocab_size, data)
    expected = _reference_loss(params, corpus.vocab_size, data)
    assert _relative(actual, expected) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", ("float64", "float32"))
def test_kernel_matches_reference_with_large_weights(backend, corpus, dtype):
    """Saturated tanh and peaked softmax: input and output weights 300 times their initial
    scale. (Whh stays small: with a large Whh the recurrence is chaotic, and rounding
    differences grow until no two summation orders agree.)"""
    params = TrainState.fresh(H, 5, 0.1, corpus.vocab_size, seed=9, dtype=dtype).params
    W = unpack(params, H, corpus.vocab_size)
    for block in (W.Wxh, W.Why):
        block *= 300
    W.Whh[...] *= 5
    data = corpus.data[:500]
    actual = backend.heldout_loss(params, H, corpus.vocab_size, data)
    assert _relative(actual, _reference_loss(params, corpus.vocab_size, data)) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", ("float64", "float32"))
def test_one_repeated_character(backend, corpus, trained, dtype):
    params = _params(trained, dtype)
    data = np.full(200, corpus.data[7], dtype=corpus.data.dtype)
    actual = backend.heldout_loss(params, H, corpus.vocab_size, data)
    assert _relative(actual, _reference_loss(params, corpus.vocab_size, data)) < TOLERANCE[dtype]


def test_two_characters_is_one_prediction_by_hand(backend, corpus, trained):
    W = trained.weights
    x0, x1 = int(corpus.data[0]), int(corpus.data[1])
    h = np.tanh(W.Wxh[:, x0] + W.bh)
    y = W.Why @ h + W.by
    expected = -(y[x1] - np.log(np.exp(y).sum()))
    actual = backend.heldout_loss(trained.params, H, corpus.vocab_size, corpus.data[:2])
    assert _relative(actual, expected) < 1e-13


def test_reference_of_uniform_network_is_log_vocab(corpus):
    """With all weights 0 every prediction is uniform: ln V nats per character."""
    params = np.zeros_like(TrainState.fresh(H, 5, 0.1, corpus.vocab_size, seed=0).params)
    loss = _reference_loss(params, corpus.vocab_size, corpus.data[:101])
    assert loss == pytest.approx(100 * math.log(corpus.vocab_size), rel=1e-14)


@pytest.mark.parametrize("dtype", ("float64", "float32"))
@pytest.mark.parametrize("k", (1, 10, 64))
def test_one_block_equals_the_training_forward(backend, corpus, trained, dtype, k):
    """Up to one block, scoring is the training kernel's forward over the window from h = 0."""
    params = _params(trained, dtype)
    hprev = np.zeros(H, dtype=dtype)
    train_loss, _, _ = backend.loss_and_gradients(params, H, corpus.vocab_size, corpus.data, 0, k, hprev)
    score = backend.heldout_loss(params, H, corpus.vocab_size, corpus.data[: k + 1])
    assert _relative(score, train_loss) < 1e-14


@pytest.mark.parametrize("dtype", ("float64", "float32"))
def test_equals_chained_training_windows(backend, corpus, trained, dtype):
    """Training windows of 25 characters, each from the last hidden state of the one before,
    predict the same characters as one continuous read."""
    params = _params(trained, dtype)
    S, windows = 25, 12
    hprev = np.zeros(H, dtype=dtype)
    total = 0.0
    for w in range(windows):
        loss, _, hprev = backend.loss_and_gradients(params, H, corpus.vocab_size, corpus.data, w * S, S, hprev)
        total += loss
    score = backend.heldout_loss(params, H, corpus.vocab_size, corpus.data[: windows * S + 1])
    assert _relative(score, total) < (1e-13 if dtype == "float64" else 1e-6)


@pytest.mark.parametrize("dtype", ("float64", "float32"))
@pytest.mark.parametrize("bad", (np.nan, np.inf))
def test_non_finite_weights_give_a_non_finite_loss(backend, corpus, trained, dtype, bad):
    params = _params(trained, dtype)
    params[H * corpus.vocab_size + 5] = bad  # one weight of Whh: reaches the loss from step 2
    assert not math.isfinite(backend.heldout_loss(params, H, corpus.vocab_size, corpus.data[:300]))
    result = heldout_loss(TrainState(H, 5, 0.1, corpus.vocab_size, params, np.zeros_like(params), np.zeros(H, dtype)),
                          corpus, n_chars=300, backend=backend)
    assert not result.finite and not math.isfinite(result.nats)


def test_public_wrapper_reports_the_mean(backend, corpus, trained):
    result = heldout_loss(trained, corpus, n_chars=801, backend=backend)
    total = _reference_loss(trained.params, corpus.vocab_size, corpus.data[:801])
    assert isinstance(result, HeldoutLoss) and result.finite
    assert result.predictions == 800
    assert result.total == pytest.approx(total, rel=1e-12)
    assert result.nats == pytest.approx(total / 800, rel=1e-12)
    assert result.bits == pytest.approx(total / 800 / math.log(2), rel=1e-12)
    # a trained network beats the uniform guess
    assert result.nats < math.log(corpus.vocab_size) - 0.3


def test_public_wrapper_takes_weights_and_id_arrays(backend, corpus, trained):
    ids = corpus.data[:400].astype(np.int32)
    by_state = heldout_loss(trained, corpus, n_chars=400, backend=backend)
    by_weights = heldout_loss(trained.weights, ids, backend=backend)
    assert by_weights == by_state


@pytest.mark.parametrize("threads", (1, 2))
def test_batch_equals_one_by_one(backend, corpus, trained, threads):
    """Mixed sizes and precisions, one diverged network: each scored as on its own."""
    small = TrainState.fresh(8, 5, 0.1, corpus.vocab_size, seed=1)
    small32 = TrainState.fresh(8, 5, 0.1, corpus.vocab_size, seed=2, dtype="float32")
    broken = TrainState.fresh(8, 5, 0.1, corpus.vocab_size, seed=3)
    broken.params[-1] = np.nan
    trained32 = TrainState(H, 10, 0.1, corpus.vocab_size, trained.params.astype("float32"),
                           trained.memory.astype("float32"), trained.hprev.astype("float32"))
    networks = [small, trained, small32, broken, trained32]
    batch = heldout_losses(networks, corpus, n_chars=700, backend=backend, threads=threads)
    single = [heldout_loss(net, corpus, n_chars=700, backend=backend) for net in networks]
    assert [r.finite for r in batch] == [True, True, True, False, True]
    assert [r for k, r in enumerate(batch) if k != 3] == [r for k, r in enumerate(single) if k != 3]


def test_numpy_backend_is_the_reference(corpus, trained):
    result = heldout_loss(trained, corpus, n_chars=120, backend="numpy")
    assert result.total == _reference_loss(trained.params, corpus.vocab_size, corpus.data[:120])
    assert heldout_losses([trained], corpus, n_chars=120, backend="numpy") == [result]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_chars=1), r"n_chars must lie in \[2, 6000\]"),
        (dict(n_chars=6001), r"n_chars must lie in \[2, 6000\]"),
        (dict(n_chars=2.5), "n_chars must be a whole number"),
    ],
)
def test_bad_lengths(corpus, trained, kwargs, message):
    with pytest.raises(ValueError, match=message):
        heldout_loss(trained, corpus, backend="numba", **kwargs)


def test_bad_inputs(corpus, trained):
    with pytest.raises(ValueError, match="outside the network's vocabulary"):
        heldout_loss(trained, np.array([0, 1, corpus.vocab_size]), backend="numba")
    with pytest.raises(ValueError, match="outside the network's vocabulary"):
        heldout_loss(trained, np.array([0, -1, 2]), backend="cython")
    other = Corpus.from_text("abcabc" * 10)
    with pytest.raises(ValueError, match="the corpus has 3 characters but the network reads"):
        heldout_loss(trained, other)
    with pytest.raises(ValueError, match="1-D array of integer character ids"):
        heldout_loss(trained, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="must be a TrainState or a fastrnn.network.model.Weights"):
        heldout_loss(trained.params, corpus)
    state32 = TrainState.fresh(8, 5, 0.1, corpus.vocab_size, seed=1, dtype="float32")
    with pytest.raises(ValueError, match="the numpy backend trains in float64 only"):
        heldout_loss(state32, corpus, backend="numpy")
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        heldout_losses([trained], corpus, threads=0)
    with pytest.raises(ValueError, match="different vocabularies"):
        heldout_losses([trained, TrainState.fresh(8, 5, 0.1, 3, seed=1)], corpus)
