"""The contract every compiled backend keeps, beyond matching the reference (test_kernels.py):
state arrays updated in place, divergence reported and left alone, id types, mixed precisions.

Parametrised over the compiled backends of the registry (the ``backend`` fixture).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastrnn.backends import RunSpec
from fastrnn.backends._packed import ALIGN, PackedRuns
from fastrnn.network.model import STATUS_DIVERGED, TrainState, parameter_count

from helpers import assert_same_run, copy_state, fresh_state


def _mixed_states(word_corpus):
    configs = [(8, 3, 0.1), (40, 12, 0.05), (20, 5, 0.2), (33, 9, 0.1), (12, 25, 0.3), (64, 4, 0.02), (5, 1, 0.1)]
    return [fresh_state(word_corpus, H, S, lr, seed=k) for k, (H, S, lr) in enumerate(configs)]


def test_train_many_updates_state_arrays_in_place_and_skips_diverged(word_corpus, backend):
    states = _mixed_states(word_corpus)[:3]
    params_ids = [id(s.params) for s in states]
    states[1].status = STATUS_DIVERGED
    frozen = copy_state(states[1])
    backend.train_many(word_corpus.data, states, 4, threads=2)
    assert [id(s.params) for s in states] == params_ids
    assert_same_run(states[1], frozen)
    assert states[0].steps == states[2].steps == 4
    backend.train_many(word_corpus.data, states, 0, threads=2)
    assert states[0].steps == 4
    with pytest.raises(ValueError):
        backend.train_many(word_corpus.data, states, 1, threads=0)


@pytest.mark.parametrize("lr", [1e308, 1e307])
def test_divergence_is_reported(word_corpus, backend, reference, lr):
    # Both give a non-finite loss on the second step, after one update has been applied.
    # (Rates up to ~1e306 leave every number finite: absurd losses, but status OK, as in the
    # reference.)
    a, b = fresh_state(word_corpus, 20, 5, lr, seed=6), fresh_state(word_corpus, 20, 5, lr, seed=6)
    backend.train_steps(word_corpus.data, a, 20)
    with np.errstate(all="ignore"):
        reference.train_steps(word_corpus.data, b, 20)
    assert a.status == b.status == STATUS_DIVERGED
    assert 1 <= a.steps == b.steps < 20
    # the smooth loss never absorbs the non-finite loss
    assert math.isfinite(a.smooth_loss) and not math.isfinite(a.last_loss)
    assert a.smooth_loss == pytest.approx(b.smooth_loss, rel=1e-9)
    # a diverged run is left alone by further calls
    before = copy_state(a)
    backend.train_steps(word_corpus.data, a, 5)
    assert_same_run(a, before)


def test_nan_weight_stops_before_any_update(word_corpus, backend):
    state = fresh_state(word_corpus, 20, 5, 0.1, seed=7)
    state.weights.Whh[3, 4] = np.nan
    before = copy_state(state)
    backend.train_steps(word_corpus.data, state, 10)
    assert state.status == STATUS_DIVERGED and state.steps == 0
    assert math.isnan(state.last_loss) and state.smooth_loss == before.smooth_loss
    assert np.array_equal(state.params, before.params, equal_nan=True)
    assert np.array_equal(state.memory, before.memory) and state.position == before.position


def test_nan_parameter_off_the_loss_path_is_caught_at_the_end(word_corpus, backend, reference):
    # An input column for an id the text never uses: the loss stays finite, the NaN weight is
    # only found by the final check, after all the updates.
    V = word_corpus.vocab_size + 1
    a = TrainState.fresh(20, 5, 0.1, V, 8)
    a.weights.Wxh[:, V - 1] = np.nan
    b = copy_state(a)
    backend.train_steps(word_corpus.data, a, 15)
    reference.train_steps(word_corpus.data, b, 15)
    assert a.status == b.status == STATUS_DIVERGED
    assert a.steps == b.steps == 15
    assert math.isfinite(a.smooth_loss)
    assert abs(a.smooth_loss - b.smooth_loss) <= 1e-9 * abs(b.smooth_loss)
    # and train_many reports it the same way
    c = TrainState.fresh(20, 5, 0.1, V, 8)
    c.weights.Wxh[:, V - 1] = np.nan
    backend.train_many(word_corpus.data, [c], 15, threads=2)
    assert_same_run(a, c)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int32, np.int64])
def test_wider_id_types_give_identical_runs(word_corpus, backend, dtype):
    assert word_corpus.data.dtype == np.uint8 and not word_corpus.data.flags.writeable
    wide = word_corpus.data.astype(dtype)
    wide.flags.writeable = False
    a = fresh_state(word_corpus, 16, 6, 0.1, seed=9)
    b = copy_state(a)
    backend.train_steps(word_corpus.data, a, 12)
    backend.train_steps(wide, b, 12)
    assert_same_run(a, b)
    la = backend.loss_and_gradients(a.params, 16, word_corpus.vocab_size, word_corpus.data, 50, 6, a.hprev)
    lb = backend.loss_and_gradients(a.params, 16, word_corpus.vocab_size, wide, 50, 6, a.hprev)
    assert la[0] == lb[0] and np.array_equal(la[1], lb[1])


def test_float32_initial_weights_are_the_float64_ones_rounded(word_corpus):
    a, b = fresh_state(word_corpus, 20, 5, 0.1, seed=3), fresh_state(word_corpus, 20, 5, 0.1, seed=3, dtype="float32")
    assert b.params.dtype == b.memory.dtype == b.hprev.dtype == np.float32
    assert np.array_equal(b.params, a.params.astype(np.float32))


def test_train_many_mixes_precisions(word_corpus, backend):
    """A batch of float64 and float32 runs: one train_batch call per dtype, same results."""
    base = [fresh_state(word_corpus, 20, 5, 0.1, seed=k, dtype=dtype)
            for k, dtype in enumerate(["float64", "float32", "float32", "float64"])]
    batch = [copy_state(s) for s in base]
    backend.train_many(word_corpus.data, batch, 20, threads=2)
    for a, b in zip(batch, base):
        backend.train_steps(word_corpus.data, b, 20)
        assert_same_run(a, b)
        assert a.params.dtype == b.params.dtype


def test_float32_divergence_and_mismatched_buffers(word_corpus, backend):
    state = fresh_state(word_corpus, 20, 5, 0.1, seed=7, dtype="float32")
    state.weights.Whh[3, 4] = np.nan
    backend.train_steps(word_corpus.data, state, 10)
    assert state.status == STATUS_DIVERGED and state.steps == 0
    bad = fresh_state(word_corpus, 20, 5, 0.1, seed=7, dtype="float32")
    bad.memory = bad.memory.astype(np.float64)
    with pytest.raises(TypeError):
        backend.train_steps(word_corpus.data, bad, 1)


def _mixed_specs(word_corpus):
    V = word_corpus.vocab_size
    return [RunSpec(H, S, lr, V, seed, steps, dtype) for H, S, lr, seed, steps, dtype in
            [(8, 3, 0.1, 0, 30, "float64"), (33, 9, 0.05, 1, 12, "float32"), (20, 5, 0.2, 2, 0, "float64"),
             (12, 25, 0.3, 3, 7, "float64"), (5, 1, 0.1, 4, 40, "float32")]]


def test_train_fresh_equals_training_each_new_state_alone(word_corpus, backend):
    """New runs are drawn straight into the packed buffers; each must equal its own new_state
    trained alone, including a run of no steps (returned as drawn)."""
    specs = _mixed_specs(word_corpus)
    states = backend.train_fresh(word_corpus.data, specs, threads=2)
    for spec, state in zip(specs, states):
        alone = spec.new_state()
        backend.train_steps(word_corpus.data, alone, spec.steps)
        assert_same_run(state, alone)
        assert state.params.base is None and state.memory.base is None  # own arrays, not batch views
    untrained = states[2]
    assert untrained.steps == 0 and not untrained.memory.any() and np.isnan(untrained.last_loss)


def test_run_specs_scores_each_run_as_scoring_its_state(word_corpus, backend):
    specs = _mixed_specs(word_corpus)
    heldout = word_corpus.data[:300]
    outcomes = backend.run_specs(word_corpus.data, specs, threads=2, heldout=heldout)
    for spec, outcome in zip(specs, outcomes):
        alone = spec.new_state()
        backend.train_steps(word_corpus.data, alone, spec.steps)
        expected = backend.heldout_loss(alone.params, spec.hidden, spec.vocab_size, heldout) / (len(heldout) - 1)
        assert outcome.heldout_loss == expected
        assert outcome.smooth_loss == alone.smooth_loss and outcome.steps == alone.steps


def test_runs_of_many_chunks_train_each_on_its_own_thread_as_alone(word_corpus, backend, monkeypatch):
    """A batch longer than one kernel call trains each run chunk by chunk on one thread (no
    barrier per chunk): each run equals itself trained alone, diverged ones included, and a bad
    id stops the batch with the same error as the one-call path."""
    import fastrnn.backends._base as base

    monkeypatch.setattr(base, "CHUNK_COST", 20_000)  # every run here needs several calls
    each, run_each = [], PackedRuns._run_each

    def spy(packed, *args):
        each.append(len(packed.H))
        run_each(packed, *args)

    monkeypatch.setattr(PackedRuns, "_run_each", spy)
    states = _mixed_states(word_corpus)
    steps = [60, 35, 80, 20, 45, 70, 90]
    alone = [copy_state(state) for state in states]
    backend.train_many(word_corpus.data, states, steps, threads=2)
    assert each == [len(states)]
    for state, single, n in zip(states, alone, steps):
        backend.train_steps(word_corpus.data, single, n)
        assert_same_run(state, single)
    data = word_corpus.data.astype(np.int64)
    data[200] = word_corpus.vocab_size
    batch = [fresh_state(word_corpus, 8, 4, 0.1, seed=k) for k in range(3)]
    with pytest.raises(ValueError, match="outside"):
        backend.train_many(data, batch, 100, threads=2)
    assert all(state.position <= 200 for state in batch)


def test_each_packed_run_has_its_own_cache_lines(word_corpus, backend):
    """Two threads training neighbouring runs must never write to one cache line."""
    specs = [spec for spec in _mixed_specs(word_corpus) if spec.dtype == "float64"]
    packed = PackedRuns.from_specs(specs, backend.pack_align)
    assert backend.pack_align == ALIGN
    for buffer_index in range(3):
        spans = []
        for k in range(len(specs)):
            view = packed.arrays(k)[buffer_index]
            assert view.ctypes.data % ALIGN == 0
            spans.append((view.ctypes.data // ALIGN, (view.ctypes.data + view.nbytes - 1) // ALIGN))
        assert all(end < start for (_, end), (start, _) in zip(spans, spans[1:]))


def test_cython_batch_refuses_offsets_that_overlap_runs(word_corpus):
    cython = pytest.importorskip("fastrnn.backends._rnn_cython")
    spec = _mixed_specs(word_corpus)[0]
    packed = PackedRuns.from_specs([spec, spec._replace(seed=9)], ALIGN)
    squeezed = packed.param_offsets.copy()
    squeezed[1] = squeezed[0] + parameter_count(spec.hidden, spec.vocab_size) - 1
    args = (word_corpus.data, packed.H, packed.V, packed.S, packed.lr, packed.remaining, packed.params, packed.memory,
            squeezed, packed.hprev, packed.hprev_offsets, packed.position, packed.smooth, packed.last.copy(),
            packed.done, packed.status)
    with pytest.raises(ValueError, match="param_offsets leave fewer than"):
        cython.train_batch(*args)


def _ids_beyond(word_corpus, at: int) -> np.ndarray:
    """The corpus's ids with one id equal to V (outside the vocabulary) at position ``at``."""
    data = word_corpus.data.astype(np.int64)
    data[at] = word_corpus.vocab_size
    return data


def test_every_backend_refuses_ids_outside_the_vocabulary(word_corpus, any_backend):
    """An id >= V would read past Wxh and Why: every kernel refuses it before that window, and
    the state keeps what it trained before (steps, position and weights agree)."""
    runner = any_backend
    S = 4
    data = _ids_beyond(word_corpus, 3 * S + 2)  # inside the fourth window
    state = fresh_state(word_corpus, 8, S, 0.1, seed=1)
    with pytest.raises(ValueError, match=r"outside \[0, vocab_size\)"):
        runner.train_steps(data, state, 10)
    assert state.status == 0 and state.steps == 3 and state.position == 3 * S
    alone = fresh_state(word_corpus, 8, S, 0.1, seed=1)
    runner.train_steps(word_corpus.data, alone, 3)
    np.testing.assert_array_equal(state.params, alone.params)
    with pytest.raises(ValueError, match="outside"):
        runner.heldout_loss(state.params, 8, word_corpus.vocab_size, data[:40])
    with pytest.raises(ValueError, match="outside"):
        runner.loss_and_gradients(state.params, 8, word_corpus.vocab_size, data, 3 * S, S, state.hprev)
    batch = [fresh_state(word_corpus, 8, S, 0.1, seed=k) for k in range(3)]
    with pytest.raises(ValueError, match="outside"):
        runner.train_many(data, batch, 10, threads=2)
    negative = word_corpus.data.astype(np.int64)
    negative[1] = -1
    with pytest.raises(ValueError, match="outside"):
        runner.train_steps(negative, fresh_state(word_corpus, 8, S, 0.1, seed=1), 2)


def test_train_refuses_to_continue_a_state_on_another_vocabulary(word_corpus):
    from fastrnn.network.corpus import Corpus
    from fastrnn.network.training import train

    small = Corpus.from_text("abcab" * 40)
    state = train(small, 6, 4, 0.1, steps=2, backend="numba")
    with pytest.raises(ValueError, match=f"reads 3 distinct characters and this corpus has {word_corpus.vocab_size}"):
        train(word_corpus, steps=2, state=state, backend="numba")
    assert state.steps == 2
