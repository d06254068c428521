"""``fastrnn train --cooldown``: the learning rate decays to zero over the last share of the
updates, by the tuner's rule (:class:`fastrnn.network.schedule.Cooldown`), checked against
training update by update at rates written from the documented formula; a checkpoint inside the
decay resumes to the uninterrupted network; a Ctrl-C inside it keeps the network's own rate;
bad input in one line."""

from __future__ import annotations

import json
import os

import pytest

from fastrnn.backends import get_backend
from fastrnn.network.checkpoint import load_model
from fastrnn.network.schedule import COOLDOWN_PIECES, Cooldown
from fastrnn.network.session import TrainingInterrupted, train_with_evaluations
from fastrnn.network.training import new_state
from fastrnn.objective.settings import HeldoutSettings

from helpers import assert_one_line_error, assert_same_run, invoke

COMMON = ["--hidden", "16", "--seq", "8", "--lr", "0.1", "--seed", "2", "--dtype", "float64"]


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _by_the_formula(text, steps: int, start: int, first_state=None):
    """(16, 8, 0.1) from seed 2 trained one update at a time, update u at 0.1 (1 - (k + 1/2) / P)
    for u in piece k = floor((u - start) P / (steps - start)) of the decay, 0.1 before it."""
    state = first_state if first_state is not None else new_state(text, 16, 8, 0.1, 2, "float64")
    backend = get_backend("numba")
    for update in range(state.steps, steps):
        piece = (update - start) * COOLDOWN_PIECES // (steps - start) if update >= start else None
        state.learning_rate = 0.1 if piece is None else 0.1 * (1.0 - (piece + 0.5) / COOLDOWN_PIECES)
        backend.train_steps(text.data, state, 1)
    state.learning_rate = 0.1
    return state


def test_train_decays_the_rate_by_the_documented_rule(corpus_file, small_corpus, tmp_path):
    out = _json(invoke(["train", "--corpus", corpus_file, *COMMON, "--steps", "400", "--cooldown", "0.25",
                        "--save", str(tmp_path / "m.npz")]))
    assert out["cooldown"] == [300, 400] and out["steps"] == 400
    model = load_model(tmp_path / "m.npz")
    assert model.info["cooldown"] == [300, 400] and model.state.learning_rate == 0.1  # its own rate kept
    text, _ = HeldoutSettings(corpus=small_corpus).split()
    assert_same_run(model.state, _by_the_formula(text, 400, 300))
    constant = _json(invoke(["train", "--corpus", corpus_file, *COMMON, "--steps", "400"]))
    assert constant["cooldown"] is None and constant["heldout_nats_per_char"] != out["heldout_nats_per_char"]


def test_a_checkpoint_inside_the_decay_resumes_to_the_uninterrupted_network(corpus_file, tmp_path):
    folder = tmp_path / "ckpt"
    straight = _json(invoke(["train", "--corpus", corpus_file, *COMMON, "--train-chars", "4000", "--cooldown", "0.5",
                             "--checkpoint-every", "2800", "--checkpoint-dir", str(folder),
                             "--save", str(tmp_path / "straight.npz")]))
    inside = load_model(folder / sorted(os.listdir(folder))[0])
    start, end = straight["cooldown"]
    assert start < inside.state.steps < end and inside.info["cooldown"] == [start, end]
    resumed = _json(invoke(["train", "--resume", str(folder / sorted(os.listdir(folder))[0]),
                            "--save", str(tmp_path / "resumed.npz")]))
    assert resumed["cooldown"] == [start, end] and resumed["heldout_nats_per_char"] == straight["heldout_nats_per_char"]
    assert_same_run(load_model(tmp_path / "resumed.npz").state, load_model(tmp_path / "straight.npz").state)

    checkpoint = str(folder / sorted(os.listdir(folder))[0])
    assert_one_line_error(invoke(["train", "--resume", checkpoint, "--cooldown", "0.3"]),
                          "--cooldown", "stopped inside a learning-rate cooldown", f"{start:,} to {end:,}")
    assert_one_line_error(invoke(["train", "--resume", checkpoint, "--steps", str(end + 10)]),
                          "--steps", f"resume it to its end, update {end:,}")
    # the finished network continues at its full rate, or with a decay of its own over the new updates
    again = _json(invoke(["train", "--resume", str(tmp_path / "straight.npz"), "--steps", str(end + 100),
                          "--cooldown", "0.5"]))
    assert again["cooldown"] == [end + 50, end + 100]
    assert _json(invoke(["train", "--resume", str(tmp_path / "straight.npz"), "--steps", str(end + 100)]))[
        "cooldown"] is None


def test_ctrl_c_inside_the_decay_keeps_the_networks_own_rate(small_corpus):
    text, heldout = HeldoutSettings(corpus=small_corpus).split()
    state = new_state(text, 16, 8, 0.1, 2, "float64")
    def progress(current):
        if current.steps > 300:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as stopped:
        train_with_evaluations(text, state, 2000, heldout=heldout, progress=progress, cooldown=Cooldown(200, 2000))
    kept = stopped.value.state
    assert 300 < kept.steps < 2000 and kept.learning_rate == 0.1 and state.learning_rate == 0.1
    whole = new_state(text, 16, 8, 0.1, 2, "float64")
    train_with_evaluations(text, whole, kept.steps, cooldown=Cooldown(200, 2000))
    assert_same_run(whole, kept)  # consistent: the decayed updates up to there, nothing half-written
    with pytest.raises(ValueError, match="before the target"):
        train_with_evaluations(text, whole, 3000, cooldown=Cooldown(200, 2000))


def test_a_cooldown_share_is_checked_in_one_line(corpus_file):
    base = ["train", "--corpus", corpus_file, *COMMON, "--steps", "50"]
    for value, fragment in (("nan", "must be a finite number"), ("1", "0<=x<1"), ("-0.1", "0<=x<1"),
                            ("abc", "is not a valid float")):
        assert_one_line_error(invoke([*base, "--cooldown", value]), "--cooldown", fragment)
    assert Cooldown.over_last(0.0, 0, 100) is None and Cooldown.over_last(0.2, 40, 40) is None
    assert Cooldown.over_last(0.2, 0, 100) == Cooldown(80, 100) and Cooldown.over_last(0.5, 100, 107) == Cooldown(104, 107)
