"""Sampler trials in parallel (issue 19, item 1): a step asks for ``batch`` points and trains them
as one batch, so every thread (and every Dask worker) has a network to train; the run stays a
function of the seed and the batch size, whatever evaluates it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastrnn.network.corpus import Corpus
from fastrnn.objective.function import Objective
from fastrnn.optimize.samplers import history_from_records
from fastrnn.tuning.runner import read_run, tune

from helpers import invoke as _invoke_helper
from helpers import methods_available, synthetic_text

SAMPLERS = [method for method in methods_available() if method in ("random", "tpe")]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.from_text(synthetic_text(30_000, seed=5), name="synthetic")


def _objective(corpus, threads=2):
    return Objective(corpus, train_chars=600, heldout_chars=1000, threads=threads)


def _options(method, batch):
    return dict(batch=batch, **(dict(startup_trials=3) if method == "tpe" else {}))


@pytest.mark.parametrize("method", SAMPLERS)
def test_a_step_trains_its_batch_at_once(corpus, method, monkeypatch):
    F = _objective(corpus)
    batches = []
    run = F.executor.run

    def counting(backend, data, specs, heldout=None):
        batches.append(len(specs))
        return run(backend, data, specs, heldout=heldout)

    monkeypatch.setattr(F.executor, "run", counting)
    result = tune(F, method, seed=1, max_steps=3, **_options(method, 4))
    assert result.nit == 3
    trials = history_from_records(result.trajectory)
    assert len(trials) == 1 + 3 * 4
    assert batches[1:] == [4, 4, 4]  # after the start: one batch of 4 networks per step
    assert [len(record.get("trials", [])) for record in result.trajectory] == [0, 4, 4, 4]
    assert result.fun == min(value for _, value in trials)


def test_random_search_tries_the_same_points_whatever_the_batch(corpus):
    one = tune(_objective(corpus), "random", seed=2, max_steps=8)
    four = tune(_objective(corpus), "random", seed=2, max_steps=2, batch=4)
    assert history_from_records(one.trajectory) == history_from_records(four.trajectory)
    assert one.x.tolist() == four.x.tolist() and one.fun == four.fun


@pytest.mark.parametrize("method", SAMPLERS)
def test_the_run_does_not_depend_on_the_threads(corpus, method):
    runs = [tune(_objective(corpus, threads=threads), method, seed=3, max_steps=4, **_options(method, 3))
            for threads in (1, 2)]
    assert history_from_records(runs[0].trajectory) == history_from_records(runs[1].trajectory)


@pytest.mark.parametrize("method", SAMPLERS)
def test_a_batched_run_resumes_to_the_uninterrupted_result(corpus, method, tmp_path):
    whole = tune(_objective(corpus), method, seed=4, max_steps=5, out=tmp_path / "whole.jsonl", **_options(method, 3))
    part = tmp_path / "part.jsonl"
    tune(_objective(corpus), method, seed=4, max_steps=2, out=part, **_options(method, 3))
    resumed = tune(_objective(corpus), method, seed=4, max_steps=5, out=part, resume=True, **_options(method, 3))
    assert resumed.x.tolist() == whole.x.tolist() and resumed.fun == whole.fun
    assert history_from_records(read_run(part).records) == history_from_records(read_run(tmp_path / "whole.jsonl").records)


def test_tpe_batches_look_in_different_places(corpus):
    pytest.importorskip("optuna")
    result = tune(_objective(corpus), "tpe", seed=5, max_steps=4, startup_trials=2, batch=4)
    last = result.trajectory[-1]["trials"]
    points = np.array([trial["z"] for trial in last])
    assert len({tuple(point) for point in points.round(6)}) == 4  # the constant liar spreads the batch


def test_the_cli_flag_is_recorded_and_checked_on_resume(tmp_path):
    out = tmp_path / "run.jsonl"
    args = ["tune", "--method", "random", "--batch", "2", "--steps", "2", "--train-chars", "2000", "--heldout-chars",
            "1000", "--quiet"]
    first = _invoke_helper(args + ["--out", str(out)], paper=False)
    assert first.exit_code == 0, first.output
    settings = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert settings["options"] == {"batch": 2}
    other = _invoke_helper(["tune", "--resume", str(out), "--batch", "3", "--steps", "3", "--quiet"], paper=False)
    assert other.exit_code == 2 and "batch" in other.stderr
    bad = _invoke_helper(["tune", "--method", "random", "--batch", "0", "--steps", "1"], paper=False)
    assert bad.exit_code == 2 and "--batch" in bad.stderr
