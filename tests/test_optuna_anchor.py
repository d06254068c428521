"""The Optuna anchor of `fastrnn compare`: TPE with Hyperband pruning driving fastrnn's training."""

from __future__ import annotations

import json
import math

import pytest

from fastrnn.network.corpus import Corpus
from fastrnn.objective.function import Objective
from fastrnn.objective.settings import HeldoutSettings
from fastrnn.tuning.optuna_anchor import anchor_curve, run_optuna_hyperband, rung_chars

from helpers import synthetic_text


def test_rungs_grow_by_eta_up_to_the_target():
    assert rung_chars(100, 900, 3) == [100, 300, 900]
    assert rung_chars(100, 1000, 3) == [100, 300, 900, 1000]
    assert rung_chars(500, 500, 2) == [500]
    for bad in [(0, 10, 3), (20, 10, 3), (10, 100, 1)]:
        with pytest.raises(ValueError, match="rungs need"):
            rung_chars(*bad)


def test_the_anchor_reports_each_rung_and_scores_as_the_objective(tmp_path):
    pytest.importorskip("optuna")
    corpus = Corpus.from_text(synthetic_text(30_000, seed=7), name="synthetic")
    settings = HeldoutSettings(corpus=corpus, heldout_chars=1000)
    out = tmp_path / "anchor.jsonl"
    best = run_optuna_hyperband(settings, str(out), min_chars=200, target_chars=1800, eta=3, budget_seconds=2.0,
                                seed=0, threads=1)
    entries = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert entries[0]["type"] == "settings" and entries[0]["target_chars"] == 1800
    rungs = [entry for entry in entries if entry["type"] == "rung"]
    assert rungs and {entry["chars"] for entry in rungs} <= {200, 600, 1800}
    uniform = math.log(corpus.vocab_size)
    for entry in rungs:
        assert entry["fun"] <= uniform
    # a rung's value is the held-out objective's at that training length (same split, seed, rule)
    entry = rungs[0]
    F = Objective(corpus, heldout_chars=1000, train_chars=entry["chars"] if entry["chars"] >= 40 else 40)
    assert entry["fun"] == F(entry["x"])
    elapsed, curve = anchor_curve(str(out), 1800)
    assert curve == sorted(curve, reverse=True)
    if best["fun"] is not None:
        assert best["fun"] == curve[-1]
