"""Issue 11: memory estimated before allocating runs, and Ctrl-C in `train` keeping a partial model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from fastrnn.cli.main import cli

from fastrnn.backends import get_backend
from fastrnn.network.checkpoint import load_model
from fastrnn.network.model import parameter_count
from fastrnn.network.training import PROGRESS_CHUNK, new_state, train
from fastrnn.objective.function import Objective
from fastrnn.running import memory


@pytest.fixture
def corpus_file(tmp_path, small_corpus):
    path = tmp_path / "text.txt"
    path.write_text(small_corpus.text, encoding="utf-8")
    return str(path)


def _assert_one_line_error(result, exit_code, *fragments):
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_run_bytes_counts_weights_memory_and_workspace():
    H, S, V = 100, 25, 65
    P = parameter_count(H, V)
    held, in_flight = memory.run_bytes(H, S, V, "float64")
    assert held == 8 * (4 * P + 2 * H)
    assert in_flight == 8 * (P + 51 * H + S * V + 4 * H + V) + 16 * P
    held32, _ = memory.run_bytes(H, S, V, "float32")
    assert held32 == held // 2
    # Every run of a batch is held; only `threads` of them are in flight at once.
    runs = [(H, S, V, "float64")] * 5
    assert memory.batch_bytes(runs, threads=2) == 5 * held + 2 * in_flight
    assert memory.batch_bytes(runs, threads=1) == 5 * held + in_flight


def test_available_bytes_is_read_from_the_system():
    available = memory.available_bytes()
    assert available is None or available > 0


def test_small_batches_are_not_checked(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 0)
    memory.check_memory(memory.CHECK_ABOVE - 1, "a run", "fix")
    with pytest.raises(memory.MemoryLimitError, match=r"a run needs about 256\.0 MiB of memory; this machine has "
                                                      r"0 bytes available; fix"):
        memory.check_memory(memory.CHECK_ABOVE, "a run", "fix")


def test_cli_train_refuses_a_run_larger_than_the_memory(corpus_file, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 8 * 2**30)
    result = CliRunner().invoke(cli, ["train", "--hidden", "100000", "--steps", "1", "--corpus", corpus_file])
    _assert_one_line_error(result, 2, "--hidden", "hidden size 100000 needs about", "GiB of memory",
                           "8.0 GiB available")


def test_cli_train_refuses_a_run_no_machine_has_memory_for(corpus_file):
    result = CliRunner().invoke(cli, ["train", "--hidden", "1000000", "--steps", "1", "--corpus", corpus_file])
    _assert_one_line_error(result, 2, "--hidden", "TiB of memory")


def test_objective_checks_the_batch_before_training(small_corpus, monkeypatch, corpus_file):
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**30)
    F = Objective(small_corpus, alpha=1, beta=20000, threads=2, kind="paper")
    with pytest.raises(memory.MemoryLimitError, match="training 20000 runs at once"):
        F((800, 25, 0.1))
    assert F.counters.trainings_run == 0
    result = CliRunner().invoke(cli, ["objective", "800", "25", "0.1", "--beta", "20000", "--corpus", corpus_file])
    _assert_one_line_error(result, 2, "training 20000 runs at once", "smaller beta")


def test_new_state_checks_memory(small_corpus, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)
    with pytest.raises(memory.MemoryLimitError):
        new_state(small_corpus, 3000, 25, 0.1, 0)
    new_state(small_corpus, 30, 25, 0.1, 0)  # under CHECK_ABOVE: not checked


@pytest.fixture
def interrupt_on_call(monkeypatch):
    """``interrupt_on_call(n)``: the numba backend's n-th train_steps call raises KeyboardInterrupt."""
    backend_type = type(get_backend("numba"))
    original = backend_type.train_steps

    def arm(n):
        calls = {"n": 0}

        def train_steps(self, data, state, n_steps):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return original(self, data, state, n_steps)

        monkeypatch.setattr(backend_type, "train_steps", train_steps)

    return arm


def test_ctrl_c_in_train_saves_the_partial_model(corpus_file, small_corpus, tmp_path, interrupt_on_call):
    interrupt_on_call(4)  # three chunks done
    model = tmp_path / "m.npz"
    result = CliRunner().invoke(cli, ["train", "--hidden", "16", "--seq", "8", "--steps", "1000", "--seed", "2",
                                      "--dtype", "float64", "--corpus", corpus_file, "--save", str(model)])
    done = 3 * PROGRESS_CHUNK
    _assert_one_line_error(result, 130, f"interrupted; the model after {done} updates is saved to {model}")
    saved = load_model(model)
    assert saved.state.steps == done
    expected = train(small_corpus, 16, 8, 0.1, done, seed=2)
    assert np.array_equal(saved.state.params, expected.params)
    assert np.array_equal(saved.state.hprev, expected.hprev)
    assert saved.state.smooth_loss == expected.smooth_loss


def test_ctrl_c_in_train_without_save_or_before_a_chunk(corpus_file, tmp_path, interrupt_on_call):
    interrupt_on_call(2)
    result = CliRunner().invoke(cli, ["train", "--hidden", "8", "--seq", "5", "--steps", "1000", "--corpus", corpus_file])
    _assert_one_line_error(result, 130, "interrupted")
    assert result.stdout == ""
    interrupt_on_call(1)
    model = tmp_path / "m.npz"
    result = CliRunner().invoke(cli, ["train", "--hidden", "8", "--seq", "5", "--steps", "1000", "--corpus", corpus_file,
                                      "--save", str(model)])
    _assert_one_line_error(result, 130, "nothing saved")
    assert not model.exists()


def test_train_json_is_unchanged_by_the_snapshots(corpus_file, small_corpus, tmp_path):
    result = CliRunner().invoke(cli, ["train", "--hidden", "16", "--seq", "8", "--steps", "250", "--seed", "1",
                                      "--dtype", "float64", "--corpus", corpus_file, "--save", str(tmp_path / "m.npz")])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["smooth_loss"] == train(small_corpus, 16, 8, 0.1, 250, seed=1).smooth_loss
