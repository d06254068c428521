"""The answer is a network (issue 19, item 5): a finished tune saves the network behind its point
beside the run file, and says its held-out loss and how to sample it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from fastrnn.network.checkpoint import load_model
from fastrnn.network.scoring import heldout_loss
from fastrnn.objective.function import Objective
from fastrnn.tuning.deliver import best_network, candidate_specs, deliver, model_path_for
from fastrnn.tuning.runner import tune

from helpers import assert_one_line_error, invoke

ARGS = ["--train-chars", "3000", "--heldout-chars", "1000"]


def _F(**settings):
    return Objective(train_chars=3000, heldout_chars=1000, **settings)


def test_a_sampler_runs_network_scores_the_runs_value_bit_for_bit(tmp_path):
    F = _F()
    result = tune(F, "random", seed=1, max_steps=3, batch=2)
    network = deliver(_F(), result.x, str(tmp_path / "net.npz"))
    assert network.nats_per_char == result.fun  # the very network the run scored
    model = load_model(tmp_path / "net.npz")
    assert (model.state.hidden, model.state.seq_length, model.state.learning_rate) == tuple(result.x)
    assert heldout_loss(model.state, F.heldout).nats == result.fun  # read back, scored again


def test_between_corners_the_best_trained_corner_is_delivered():
    F = _F(beta=2)
    point = (40.5, 9.25, 0.05)
    specs = candidate_specs(F, point)
    assert {(spec.hidden, spec.seq_length, spec.seed) for spec in specs} == {
        (h, s, seed) for h in (40, 41) for s in (9, 10) for seed in (0, 1)}
    spec, state, loss = best_network(F, point)
    corner_values = {(spec.hidden, spec.seq_length, spec.seed): Objective(
        train_chars=3000, heldout_chars=1000, seed=spec.seed)((spec.hidden, spec.seq_length, 0.05)) for spec in specs}
    assert loss == min(corner_values.values()) == corner_values[(spec.hidden, spec.seq_length, spec.seed)]
    assert np.isfinite(state.params).all()


def test_a_point_outside_the_sane_box_has_no_network():
    with pytest.raises(ValueError, match="outside the sane box"):
        candidate_specs(_F(), (10, 5, 0.1))


def test_tune_saves_the_network_beside_the_run_and_says_how_to_sample_it(tmp_path):
    out = tmp_path / "run.jsonl"
    result = invoke(["tune", "--method", "random", "--steps", "2", *ARGS, "--out", str(out)], paper=False)
    assert result.exit_code == 0, result.output
    model_path = tmp_path / "run.npz"
    assert model_path_for(str(out)) == str(model_path) and model_path.exists()
    fun = json.loads(out.read_text(encoding="utf-8").splitlines()[-1])["fun"]
    assert f"fastrnn sample {model_path}" in result.stderr
    assert f"held-out loss {fun:.4f} nats/char" in result.stderr
    sampled = invoke(["sample", str(model_path), "--chars", "50", "--seed", "0"], paper=False)
    assert sampled.exit_code == 0 and len(sampled.stdout) >= 50


def test_a_folder_that_cannot_take_the_network_is_one_line_and_the_run_is_kept(tmp_path):
    out = tmp_path / "run.jsonl"
    os.mkdir(tmp_path / "run.npz")  # the model's path is taken by a folder
    args = ["tune", "--method", "random", "--steps", "1", *ARGS, "--quiet"]
    assert_one_line_error(invoke(args + ["--out", str(out)], paper=False), "run.npz", f"--resume {out}")
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[-1])["type"] == "result"  # nothing lost
    os.rmdir(tmp_path / "run.npz")
    resumed = invoke(["tune", "--resume", str(out)], paper=False)  # finished: only the network is saved
    assert resumed.exit_code == 0, resumed.output
    assert load_model(tmp_path / "run.npz").state.hidden > 0 and "fastrnn sample" in resumed.stderr


def test_the_delivered_network_trains_on_like_the_runs_best_trial(tmp_path):
    out = tmp_path / "run.jsonl"
    assert invoke(["tune", "--method", "random", "--steps", "2", *ARGS, "--out", str(out), "--quiet"],
                  paper=False).exit_code == 0
    longer = ["--train-chars", "6000", "--quiet"]
    resumed = invoke(["train", "--resume", str(tmp_path / "run.npz"), *longer, "--save", str(tmp_path / "a.npz")],
                     paper=False)
    assert resumed.exit_code == 0, resumed.output
    from_run = invoke(["train", "--from-run", str(out), *longer, "--save", str(tmp_path / "b.npz")], paper=False)
    assert from_run.exit_code == 0, from_run.output
    assert json.loads(resumed.stdout)["heldout_nats_per_char"] == json.loads(from_run.stdout)["heldout_nats_per_char"]
    a, b = load_model(tmp_path / "a.npz"), load_model(tmp_path / "b.npz")
    assert np.array_equal(a.state.params, b.state.params) and np.array_equal(a.state.memory, b.state.memory)


def test_the_halving_answer_trains_on_like_a_network_trained_straight(tmp_path):
    out = tmp_path / "run.jsonl"
    tuned = invoke(["tune", "--method", "halving", "--min-chars", "600", "--target-chars", "1800", "--starts", "3",
                    "--top", "1", "--heldout-chars", "1000", "--out", str(out), "--quiet"], paper=False)
    assert tuned.exit_code == 0, tuned.output
    hidden, seq_length, learning_rate = json.loads(tuned.stdout)
    longer = ["--train-chars", "3600", "--quiet"]
    resumed = invoke(["train", "--resume", str(tmp_path / "run.npz"), *longer], paper=False)
    assert resumed.exit_code == 0, resumed.output
    straight = invoke(["train", "--hidden", str(int(hidden)), "--seq", str(int(seq_length)), "--lr", repr(learning_rate),
                       "--heldout-chars", "1000", *longer], paper=False)
    assert straight.exit_code == 0, straight.output
    assert json.loads(resumed.stdout)["heldout_nats_per_char"] == json.loads(straight.stdout)["heldout_nats_per_char"]


def test_from_run_on_a_halving_run_points_at_its_network(tmp_path):
    out = tmp_path / "run.jsonl"
    assert invoke(["tune", "--method", "halving", "--min-chars", "600", "--target-chars", "1800", "--starts", "3",
                   "--top", "1", "--heldout-chars", "1000", "--out", str(out), "--quiet"], paper=False).exit_code == 0
    assert_one_line_error(invoke(["train", "--from-run", str(out), "--quiet"], paper=False), "--from-run",
                          "successive-halving run", f"--resume {tmp_path / 'run.npz'}")
    drawn = invoke(["plot", str(out), "-o", str(tmp_path / "trials.png")], paper=False)  # each rung its marker
    assert drawn.exit_code == 0, drawn.output
    assert (tmp_path / "trials.png").stat().st_size > 0


def test_a_new_run_refuses_an_existing_model_file_unless_forced_and_its_own_resume_works(tmp_path):
    # --out m.jsonl silently overwrote m.npz, an earlier run's network, at the end of the run
    out, model = tmp_path / "m.jsonl", tmp_path / "m.npz"
    model.write_bytes(b"an earlier network")
    args = ["tune", "--method", "random", "--steps", "1", *ARGS, "--quiet"]
    assert_one_line_error(invoke(args + ["--out", str(out)], paper=False), "--out", f"model file '{model}' exists",
                          "--force", "another --out")
    assert model.read_bytes() == b"an earlier network" and not out.exists()
    forced = invoke(args + ["--out", str(out), "--force"], paper=False)
    assert forced.exit_code == 0, forced.output
    assert load_model(model).state.hidden > 0  # this run's network replaced it
    again = invoke(["tune", "--resume", str(out)], paper=False)  # the run that wrote it: no new run
    assert again.exit_code == 0 and "is finished" in again.stderr
    longer = invoke(["tune", "--resume", str(out), "--steps", "2", "--quiet"], paper=False)
    assert longer.exit_code == 0, longer.output
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[-1])["nit"] == 2
    assert load_model(model).state.hidden > 0


def test_a_forced_run_drops_the_replaced_runs_model_once_it_starts(tmp_path):
    from fastrnn.tuning.run_files import RunFileError

    out, model = tmp_path / "r.jsonl", tmp_path / "r.npz"
    out.write_text("an earlier run\n")
    model.write_bytes(b"its network")
    with pytest.raises(RunFileError, match="exists"):
        tune(_F(), "random", seed=0, max_steps=1, out=out, companions=(str(model),))
    (tmp_path / "s.npz").write_bytes(b"another network")
    with pytest.raises(RunFileError, match="model file .*s.npz"):
        tune(_F(), "random", seed=0, max_steps=1, out=tmp_path / "s.jsonl", companions=(str(tmp_path / "s.npz"),))
    assert not (tmp_path / "s.jsonl").exists()

    def interrupt(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # interrupted at once: no stale network left beside the new run
        tune(_F(), "random", seed=0, max_steps=1, out=out, overwrite=True, companions=(str(model),), on_step=interrupt)
    assert not model.exists()
    assert [json.loads(line)["type"] for line in out.read_text().splitlines()] == ["settings"]
