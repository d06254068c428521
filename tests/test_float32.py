"""Single precision: the compiled backends trained on float32 state.

A float32 run is compared with the float64 NumPy reference evaluated on the *same* (rounded)
weights, so the only differences are float32 rounding in the kernel: 1e-5 relative on one step.
Chunking, thread counts and divergence are tested for both precisions in test_kernels.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastrnn.network.model import STATUS_DIVERGED, STATUS_OK, TrainState

from helpers import SIZES, relative_error, run_fresh


@pytest.mark.parametrize("H,S", SIZES)
def test_one_step_matches_float64_reference_on_the_same_weights(backend, reference, small_corpus, H, S):
    V = small_corpus.vocab_size
    rng = np.random.default_rng(H + S)
    state = TrainState.fresh(H, S, 0.1, V, seed=11, dtype="float32")
    # away from the tiny initial scale; rounded to float32, so both sides see the same weights
    state.params[...] = state.params.astype(np.float64) + rng.standard_normal(state.params.size) * 0.05
    hprev = np.tanh(rng.standard_normal(H)).astype(np.float32)
    start = 123
    expected = reference.loss_and_gradients(state.params.astype(np.float64), H, V, small_corpus.data, start, S,
                                            hprev.astype(np.float64))
    actual = backend.loss_and_gradients(state.params, H, V, small_corpus.data, start, S, hprev)
    assert abs(actual[0] - expected[0]) <= 1e-5 * abs(expected[0])
    assert relative_error(actual[1], expected[1]) <= 1e-5
    assert relative_error(actual[2], expected[2]) <= 1e-5
    # computed in single precision, not upcast
    assert actual[1].dtype == np.float32 and np.asarray(actual[2]).dtype == np.float32
    assert state.params.dtype == np.float32


def test_hundred_steps_track_float64(backend, reference, small_corpus):
    expected = run_fresh(reference, small_corpus, 20, 5, 0.1, 100, dtype="float64")
    actual = run_fresh(backend, small_corpus, 20, 5, 0.1, 100, dtype="float32")
    assert actual.status == STATUS_OK and actual.steps == expected.steps == 100
    assert actual.position == expected.position
    assert abs(actual.smooth_loss - expected.smooth_loss) <= 1e-3 * expected.smooth_loss
    assert abs(actual.last_loss - expected.last_loss) <= 1e-3 * expected.last_loss


def test_training_keeps_float32_state(backend, small_corpus, tiny_corpus):
    for corpus in (small_corpus, tiny_corpus):  # tiny_corpus: wraps around and resets hprev
        state = run_fresh(backend, corpus, 16, 7, 0.1, 60, dtype="float32")
        assert state.status == STATUS_OK and state.steps == 60
        assert state.params.dtype == state.memory.dtype == np.float32
        assert np.asarray(state.hprev).dtype == np.float32
        assert np.isfinite(state.smooth_loss) and np.isfinite(state.last_loss)
        assert np.any(state.memory > 0)


def test_learning_rate_beyond_float32_range_diverges(backend, small_corpus):
    """lr beyond float32's range rounds to inf: the run must report divergence, not hide it."""
    state = TrainState.fresh(20, 5, 1e39, small_corpus.vocab_size, 0, dtype="float32")
    backend.train_steps(small_corpus.data, state, 3)
    assert state.status == STATUS_DIVERGED


def test_probabilities_below_float32s_normal_range_are_flushed_to_zero(small_corpus):
    """Documented difference from the reference: where a logit is more than 87 below the largest,
    its float32 probability is below 1.2e-38 (subnormal). Both compiled kernels flush it to 0
    (a saturated network otherwise multiplies subnormals at every step, 2-3x slower); the NumPy
    reference keeps it. Everything else agrees."""
    from fastrnn.backends import get_backend

    try:
        cython = get_backend("cython")
    except Exception as exc:  # noqa: BLE001 - only where the extension is not built (CI builds it)
        pytest.skip(str(exc))
    numba = get_backend("numba")
    H, S, V = 8, 10, small_corpus.vocab_size
    window = small_corpus.data[: S + 1]
    absent = next(v for v in range(V) if v not in set(window[1:].tolist()))
    params = np.zeros(H * V + H * H + V * H + H + V, dtype=np.float32)
    params[-V + absent] = -90.0  # by[absent]: its logit is 90 below the others at every step
    hprev = np.zeros(H, dtype=np.float32)
    loss_n, grads_n, _ = numba.loss_and_gradients(params, H, V, small_corpus.data, 0, S, hprev)
    loss_c, grads_c, _ = cython.loss_and_gradients(params, H, V, small_corpus.data, 0, S, hprev)
    _, grads_r, _ = get_backend("numpy").loss_and_gradients(params, H, V, small_corpus.data, 0, S, hprev)
    dby_n, dby_c = grads_n[-V:], grads_c[-V:]
    assert 0 < grads_r[-V + absent] < S * 1.2e-38  # the reference: subnormal probabilities, summed
    assert dby_n[absent] == 0.0 and dby_c[absent] == 0.0  # flushed
    others = np.arange(V) != absent
    np.testing.assert_array_equal(dby_n[others], dby_c[others])
    assert loss_n == pytest.approx(loss_c, rel=1e-6)


# -- the default precision of each objective (issue 19) ---------------------------------------------

def test_the_held_out_objective_trains_in_float32_by_default_and_the_papers_in_float64(small_corpus):
    from fastrnn.objective import Objective
    from fastrnn.objective.settings import HeldoutSettings, PaperSettings, settings_from_record

    assert HeldoutSettings().dtype == "float32" and PaperSettings().dtype == "float64"
    default = Objective(small_corpus, train_chars=2_000, heldout_chars=1_000, threads=1)
    assert default.dtype == "float32" and default.settings()["dtype"] == "float32"
    explicit = Objective(small_corpus, train_chars=2_000, heldout_chars=1_000, threads=1, dtype="float32")
    assert default((30, 7, 0.05)) == explicit((30, 7, 0.05))
    assert Objective(small_corpus, alpha=20, kind="paper", threads=1).dtype == "float64"
    # a run file written before float32 existed has no dtype: it was float64, and resumes so
    record = HeldoutSettings(corpus=small_corpus).record()
    del record["dtype"]
    assert settings_from_record(record).dtype == "float64"


def test_cli_defaults_follow_the_objective_and_the_numpy_backend_names_the_fix(corpus_file, tmp_path):
    from click.testing import CliRunner
    from fastrnn.cli.main import cli

    runner = CliRunner()

    def value(*args):
        result = runner.invoke(cli, ["objective", "30", "7", "0.05", "--corpus", corpus_file, *args])
        assert result.exit_code == 0, result.output
        return float(result.stdout)

    held_out = ["--train-chars", "2000", "--heldout-chars", "1000"]
    assert value(*held_out) == value(*held_out, "--dtype", "float32") != value(*held_out, "--dtype", "float64")
    paper = ["--objective", "paper", "--alpha", "20"]
    assert value(*paper) == value(*paper, "--dtype", "float64") != value(*paper, "--dtype", "float32")

    for command in (["objective", "30", "7", "0.05", *held_out], ["train", "--steps", "10", "-q"],
                    ["tune", "--method", "random", "--budget-trainings", "1", "-q"]):
        result = runner.invoke(cli, [*command, "--corpus", corpus_file, "--backend", "numpy"])
        assert result.exit_code == 2, result.output
        message = result.stderr.strip().splitlines()
        assert len(message) == 1 and "--dtype float64" in message[0] and "Traceback" not in result.output
        # no --dtype was given: the message says the precision is the default, and names --backend
        assert "Invalid value for --backend" in message[0] and "float32 is the precision here without --dtype" \
            in message[0]
    result = runner.invoke(cli, ["objective", "30", "7", "0.05", *held_out, "--corpus", corpus_file, "--backend",
                                 "numpy", "--dtype", "float32"])
    assert result.exit_code == 2 and "Invalid value for --dtype" in result.stderr

    # a run made in float64 resumes in float64 without --dtype
    run = tmp_path / "run.jsonl"
    tune = ["tune", "--method", "random", "--corpus", corpus_file, "--train-chars", "2000", "--heldout-chars", "1000",
            "-q", "--seed", "1"]
    assert runner.invoke(cli, [*tune, "--dtype", "float64", "--budget-trainings", "2", "--out", str(run)]).exit_code == 0
    result = runner.invoke(cli, ["tune", "--resume", str(run), "--budget-trainings", "12", "-q"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in open(run, encoding="utf-8")]
    assert lines[0]["objective"]["dtype"] == "float64" and lines[-1]["type"] == "result"
    assert lines[-1]["nfev"] > 5  # it trained on, in float64
