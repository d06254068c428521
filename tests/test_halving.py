"""Successive halving over training characters (``tune --method halving``, issue 19): rungs and
budgets, continued networks, determinism, resuming, checkpoints, the answer's model, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from fastrnn.cli.main import cli

from fastrnn.backends import BackendUnavailable, get_backend
from fastrnn.network.checkpoint import load_model
from fastrnn.network.corpus import Corpus
from fastrnn.network.model import TrainState
from fastrnn.network.scoring import heldout_loss
from fastrnn.objective import Objective
from fastrnn.tuning import halving_plan as plan
from fastrnn.tuning.halving import BudgetError, HalvingSettings, halve
from fastrnn.tuning.halving_lanes import Lanes
from fastrnn.tuning.halving_sampler import History, rung_history
from fastrnn.tuning.halving_store import CheckpointError, Checkpoints, companion_paths, read_halving
from fastrnn.tuning.run_files import RunFileError

from helpers import assert_same_run, synthetic_text

SMALL = dict(min_chars=400, target_chars=3600, eta=3, top=2, sampler="random")


@pytest.fixture(scope="module")
def text() -> Corpus:
    return Corpus.from_text(synthetic_text(30_000, seed=4), name="halving text")


def _F(text, threads=2, dtype="float64", **settings):
    return Objective(text, heldout_chars=1000, seed=2, threads=threads, dtype=dtype, **settings)


def _lines(path) -> list[dict]:
    """The run file's lines without what differs between two equal runs (times, the run's id, paths)."""
    found = []
    for raw in open(path, encoding="utf-8"):
        line = json.loads(raw)
        line.pop("seconds", None)
        line.pop("run_id", None)
        line.pop("model", None)
        line.pop("checkpoints", None)
        if "counters" in line:
            line["counters"] = {k: v for k, v in line["counters"].items() if k != "seconds"}
        found.append(line)
    return found


# -- rungs and budgets, as arithmetic ----------------------------------------------------------------

def test_rungs_count_down_from_the_target_by_eta():
    assert plan.fixed_rungs(100, 2700, 3) == [100, 300, 900, 2700]
    assert plan.fixed_rungs(100, 1000, 3) == [112, 334, 1000]  # every ratio eta, the lowest >= min_chars
    assert plan.fixed_rungs(500, 500, 3) == [500]
    assert plan.counts(54, 3, 2, 4) == [54, 18, 6, 2]  # a full bracket
    assert plan.counts(20, 3, 2, 4) == [20, 7, 3, 2]  # the best 1/eta rounded up, never fewer than top
    assert plan.counts(3, 3, 2, 3) == [3, 2, 2]
    assert plan.full_starts(HalvingSettings(min_chars=100, target_chars=2700), 4) == 54
    lengths, sizes = plan.auto_rounds(HalvingSettings(), 54, 100)
    assert (lengths, sizes) == ([100, 300, 900], [54, 18, 6])  # then top 2 train as long as the budget allows
    assert plan.auto_rounds(HalvingSettings(), 2, 100) == ([], [])
    # with a target and no --min-chars: four rungs (target / eta**3 the lowest)
    assert plan.fixed_rungs(plan.fixed_min_chars(HalvingSettings(target_chars=1_000_000)), 1_000_000, 3) == \
        [37038, 111112, 333334, 1_000_000]
    # no target, no --min-chars: the longest lowest rung whose search fits (here: 18 x c + 6 x 2c + ... <= 1e6)
    search = lambda c: plan.plan_chars(*plan.auto_rounds(HalvingSettings(), 18, c))  # noqa: E731
    c = plan.largest_length(lambda c: search(c) <= 1_000_000)
    assert search(c) <= 1_000_000 < search(c + 1)


def test_a_bracket_costs_its_rungs_at_their_bound():
    # each network reads whole updates: at most c + 39 characters for a rung of c
    assert plan.plan_chars([100, 300], [6, 2]) == 6 * 139 + 2 * (339 - 100)
    def fits(n):
        return plan.plan_chars([100, 300, 900], plan.counts(n, 3, 2, 3)) <= 10_000

    n = plan.largest_fitting(54, fits)
    assert fits(n) and not fits(n + 1) and n == 33  # 33 x 139 + 11 x 239 + 4 x 639 = 9,772 characters
    # the top rung's length a character budget allows: each network trains ceil(C / s) updates in all
    C = plan.auto_top_chars(1000, [(7, 0), (10, 0)], 0)
    cost = lambda C: -(-C // 7) * 7 + -(-C // 10) * 10  # noqa: E731
    assert cost(C) <= 1000 < cost(C + 1)


def test_hyperband_shapes_start_later_brackets_higher_with_about_the_same_cost():
    settings = HalvingSettings(min_chars=100, target_chars=2700)
    rungs = plan.fixed_rungs(100, 2700, 3)
    shapes = [plan.bracket_shape(settings, rungs, b) for b in range(5)]
    # Hyperband's n_s = ceil((K+1) eta^s / (s+1)) = 27, 12, 6, 4, scaled by top = 2; then the cycle again
    assert shapes == [([100, 300, 900, 2700], 54), ([300, 900, 2700], 24), ([900, 2700], 12), ([2700], 8),
                      ([100, 300, 900, 2700], 54)]
    costs = [plan.plan_chars(r, plan.counts(n, 3, 2, len(r))) for r, n in shapes[:4]]
    assert max(costs) / min(costs) < 1.4  # each shape costs about what the deepest does
    assert [plan.bracket_shape(HalvingSettings(min_chars=100, target_chars=2700, starts=27), rungs, b)[1]
            for b in range(4)] == [27, 12, 6, 4]  # --starts sizes the deepest; the others scale with it
    deepest = HalvingSettings(min_chars=100, target_chars=2700, brackets="deepest")
    assert {tuple(plan.bracket_shape(deepest, rungs, b)[0]) for b in range(4)} == {tuple(rungs)}
    assert plan.bracket_shape(settings, [2700], 3) == plan.bracket_shape(deepest, [2700], 3) == ([2700], 2)


def test_a_run_file_from_before_bracket_shapes_resumes_with_every_bracket_deepest():
    saved = {k: v for k, v in HalvingSettings(**SMALL).record().items() if k != "brackets"}
    assert plan.settings_from_record(saved).brackets == "deepest"
    assert plan.setting_differences(saved, HalvingSettings(**SMALL, brackets="deepest")) == []
    assert plan.setting_differences(saved, HalvingSettings(**SMALL)) == [("brackets", "deepest", "hyperband")]
    # without a target there are no shapes: a file that recorded the old default there (hyperband)
    # or none (older still) resumes with settings that have none
    no_target = {k: v for k, v in HalvingSettings(min_chars=400).record().items() if k != "brackets"}
    for record in ({**no_target, "brackets": "hyperband"}, no_target):
        assert plan.settings_from_record(record).brackets is None
        assert plan.setting_differences(record, HalvingSettings(min_chars=400)) == []
    assert HalvingSettings(target_chars=2700).brackets == "hyperband"


def test_tpe_learns_from_one_rung_and_counts_the_networks_dropped_below_it_as_worse():
    A, B, D, E = (0.0, 1.0, -1.0), (0.1, 1.0, -0.5), (0.2, 1.0, -1.2), (0.3, 1.0, -1.5)
    results = [(100, A, 2.5), (100, B, 3.1), (100, D, 2.6), (300, A, 2.2), (300, D, 2.1), (900, E, 1.9)]
    history = rung_history(results, minimum=2)
    assert history.chars == 300 and sorted(history.reached) == [(A, 2.2), (D, 2.1)]
    assert history.dropped == [(B, {100: 3.1})]  # E, started above the rung, says nothing about it
    assert not rung_history(results, minimum=4)


def test_tpe_proposals_stay_away_from_where_the_dropped_networks_were():
    """A rung holds only the networks promoted to it, all decent; fitted on them alone TPE took the
    region around them for the bad one and proposed learning rates nobody had survived with (0.3-0.9
    on tinyshakespeare). The dropped networks tell it where the bad ones lie."""
    pytest.importorskip("optuna")
    from fastrnn.objective.settings import HeldoutSettings
    from fastrnn.objective.space import get_space
    from fastrnn.tuning.halving_sampler import propose

    space = get_space(HeldoutSettings().space)
    rng = np.random.default_rng(0)
    def z_of(h, s, lr):
        return tuple(space.from_point([h, s, lr]))

    good = [(z_of(int(rng.integers(60, 200)), int(rng.integers(5, 20)), float(rng.uniform(0.02, 0.08))),
             float(rng.uniform(1.9, 2.1))) for _ in range(18)]
    bad = [(z_of(int(rng.integers(20, 800)), int(rng.integers(5, 40)), lr), {100: 3.5})
           for lr in np.exp(rng.uniform(np.log(0.2), np.log(1.0), 30))]
    bad += [(z_of(int(rng.integers(20, 800)), int(rng.integers(5, 40)), lr), {100: 3.5})
            for lr in np.exp(rng.uniform(np.log(1e-4), np.log(0.005), 30))]
    configs, used = propose("tpe", 3, space, range(100, 120), History(300, good, bad))
    assert used == "tpe"
    assert sum(0.005 < c.learning_rate < 0.2 for c in configs) >= 18
    alone, _ = propose("tpe", 3, space, range(100, 120), History(300, good, []))
    assert sum(0.005 < c.learning_rate < 0.2 for c in alone) < 18  # what the dropped networks change


@pytest.mark.parametrize("values, fragment", [
    (dict(min_chars=5000, target_chars=4000), "--min-chars 5,000 is above --target-chars 4,000"),
    (dict(eta=1), "eta must be a whole number >= 2"),
    (dict(top=3, starts=2), "--starts 2 is fewer than the --top 3"),
    (dict(min_chars=10), "min_chars must be a whole number >= 40"),
    (dict(target_chars=2700, brackets="widest"), "unknown bracket shapes 'widest'; valid: hyperband, deepest"),
    # a library caller's shapes without a target would be ignored: refused as on the command line
    (dict(min_chars=100, brackets="deepest"), "--brackets shapes the brackets of a run with --target-chars"),
])
def test_settings_that_do_not_fit_are_refused(values, fragment):
    with pytest.raises(ValueError, match=fragment):
        HalvingSettings(**values)


# -- continued networks ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_training_in_pieces_through_a_checkpoint_equals_training_straight(text, tmp_path, backend, dtype):
    try:
        runner = get_backend(backend)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    shapes = [(23, 7, 0.1), (41, 13, 0.05), (64, 25, 0.02)]
    straight = [TrainState.fresh(h, s, lr, text.vocab_size, 5, dtype) for h, s, lr in shapes]
    runner.train_many(text.data, straight, [300, 170, 90], threads=2)
    pieces = [TrainState.fresh(h, s, lr, text.vocab_size, 5, dtype) for h, s, lr in shapes]
    runner.train_many(text.data, pieces, [120, 30, 45], threads=2)
    store = Checkpoints(str(tmp_path), "run", text.fingerprint)
    store.prepare()
    for k, state in enumerate(pieces):
        store.save(k, state)
    from fastrnn.tuning.halving_sampler import Config

    loaded = [store.load(k, Config(h, s, lr, ())) for k, (h, s, lr) in enumerate(shapes)]
    runner.train_many(text.data, loaded, [180, 140, 45], threads=1)
    for a, b in zip(straight, loaded):
        assert a.params.dtype == b.params.dtype == np.dtype(dtype)
        assert a.params.tobytes() == b.params.tobytes() and a.memory.tobytes() == b.memory.tobytes()
        assert a.hprev.tobytes() == b.hprev.tobytes()
        assert (a.position, a.steps, a.smooth_loss, a.last_loss) == (b.position, b.steps, b.smooth_loss, b.last_loss)


# -- runs -----------------------------------------------------------------------------------------

def test_a_run_promotes_the_best_and_its_values_are_F_at_the_rung_length(text, tmp_path):
    out = tmp_path / "run.jsonl"
    result = halve(_F(text), HalvingSettings(**SMALL), out=out)
    run = read_halving(out)
    bracket = run.of_type("bracket")[0]
    assert bracket["rungs"] == [400, 1200, 3600] and bracket["counts"] == [18, 6, 2]
    records = run.of_type("record")
    for rung, promotion in enumerate(run.of_type("promotion")):
        ranked = sorted((r for r in records if r["rung"] == rung), key=lambda r: (r["fun"], r["trial"]))
        assert promotion["trials"] == sorted(r["trial"] for r in ranked[:len(promotion["trials"])])
    top = [r for r in records if r["rung"] == 2]
    best = min(top, key=lambda r: (r["fun"], r["trial"]))
    assert result.x == best["x"] and result.fun == best["fun"] and result.chars == 3600
    # a rung's value is F at that (h, s, l) with train_chars = the rung's length, bit for bit
    # (promoted networks were continued, not retrained)
    for record in [records[0], records[20], best]:
        assert _F(text, train_chars=record["chars"]).discrete(*record["x"]) == record["fun"]
    # the answer's model file holds that network: its held-out loss is the recorded one
    model = load_model(companion_paths(out)[1])
    state = model.state
    state.params = state.params.astype(result.state.dtype)
    F = _F(text)
    assert heldout_loss(state, F.heldout).nats == result.fun
    assert state.steps == result.steps == -(-3600 // result.x[1])
    # the checkpoints of dropped networks are gone; the answer's stays
    assert os.listdir(companion_paths(out)[0]) == [f"trial-{result.trial:06d}.npz"]
    assert run.result["counters"]["trainings_run"] == 18


def test_hyperband_brackets_start_networks_higher_and_the_answer_is_the_best_top_of_any(text, tmp_path):
    out = tmp_path / "run.jsonl"
    result = halve(_F(text), HalvingSettings(**SMALL), out=out, budget_chars=60_000)
    run = read_halving(out)
    brackets = run.of_type("bracket")
    assert [b["rungs"] for b in brackets] == [[400, 1200, 3600], [1200, 3600], [3600]]
    assert [b["counts"] for b in brackets] == [[18, 6, 2], [9, 3], [6]]
    records = run.of_type("record")
    started_higher = next(r for r in records if r["bracket"] == 1)
    assert (started_higher["rung"], started_higher["chars"]) == (0, 1200)
    assert _F(text, train_chars=1200).discrete(*started_higher["x"]) == started_higher["fun"]
    tops = [r for r in records if r["chars"] == 3600]
    assert len(tops) == 2 + 3 + 6
    best = min(tops, key=lambda r: (r["fun"], r["trial"]))
    assert (result.x, result.fun, result.trial) == (best["x"], best["fun"], best["trial"])
    assert os.listdir(companion_paths(out)[0]) == [f"trial-{result.trial:06d}.npz"]


def test_the_run_is_a_function_of_the_seed_whatever_the_threads(text, tmp_path):
    halve(_F(text, threads=1), HalvingSettings(**SMALL), out=tmp_path / "one.jsonl")
    halve(_F(text, threads=2), HalvingSettings(**SMALL), out=tmp_path / "two.jsonl")
    assert _lines(tmp_path / "one.jsonl") == _lines(tmp_path / "two.jsonl")


class _Stop(KeyboardInterrupt):
    pass


def _interrupt_after(n_records: int):
    seen = [0]

    def on_event(entry):
        if entry["type"] == "record":
            seen[0] += 1
            if seen[0] == n_records:
                raise _Stop

    return on_event


@pytest.mark.parametrize("k", [5, 19, 25, 30, 43])
def test_a_resumed_run_ends_as_an_uninterrupted_one(text, tmp_path, k):
    """k = 43: every bracket deepest, inside the second bracket's first rung (26 records a bracket),
    with 17 networks of that rung recorded and not yet promoted, whose checkpoints the replay of the
    first bracket must keep. k = 30: Hyperband's second shape (9 networks starting at 1,200
    characters), 4 of them recorded."""
    settings = HalvingSettings(**{**SMALL, "target_chars": 10_800, "sampler": "tpe"}) if k == 25 else \
        HalvingSettings(**SMALL, brackets="deepest") if k == 43 else HalvingSettings(**SMALL)
    if settings.sampler == "tpe":
        pytest.importorskip("optuna")
    budgets = dict(budget_chars=120_000) if k == 25 else dict(budget_chars=60_000) if k in (30, 43) else {}
    whole = halve(_F(text), settings, out=tmp_path / "whole.jsonl", **budgets)
    part = tmp_path / "part.jsonl"
    with pytest.raises(_Stop):
        halve(_F(text), settings, out=part, on_event=_interrupt_after(k), **budgets)
    assert read_halving(part).result is None
    resumed = halve(_F(text), settings, out=part, resume=True, **budgets)
    assert (resumed.x, resumed.fun, resumed.chars, resumed.trial) == (whole.x, whole.fun, whole.chars, whole.trial)
    assert _lines(part) == _lines(tmp_path / "whole.jsonl")
    if k in (30, 43):
        brackets = read_halving(part).of_type("bracket")
        assert len(brackets) >= 2 and brackets[1]["rungs"] == ([400, 1200, 3600] if k == 43 else [1200, 3600])
    again = halve(_F(text), settings, out=part, resume=True, **budgets)  # finished: returned as stored
    assert again.finished_before and again.x == whole.x


def test_a_torn_last_line_and_a_checkpoint_ahead_of_its_record_resume_cleanly(text, tmp_path):
    whole = halve(_F(text), HalvingSettings(**SMALL), out=tmp_path / "whole.jsonl")
    part = tmp_path / "part.jsonl"
    with pytest.raises(_Stop):  # killed after rung 1's checkpoints were written, before its records
        halve(_F(text), HalvingSettings(**SMALL), out=part, on_event=_interrupt_after(19))
    lines = part.read_bytes().splitlines(keepends=True)
    part.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # and a torn last record
    resumed = halve(_F(text), HalvingSettings(**SMALL), out=part, resume=True)
    assert (resumed.x, resumed.fun) == (whole.x, whole.fun)
    assert _lines(part) == _lines(tmp_path / "whole.jsonl")


def test_a_missing_or_foreign_checkpoint_is_refused_and_nothing_is_lost(text, tmp_path):
    part = tmp_path / "part.jsonl"
    with pytest.raises(_Stop):
        halve(_F(text), HalvingSettings(**SMALL), out=part, on_event=_interrupt_after(20))
    folder = companion_paths(part)[0]
    promoted = read_halving(part).of_type("promotion")[-1]["trials"]
    victim = os.path.join(folder, f"trial-{promoted[-1]:06d}.npz")
    before = part.read_bytes()
    os.rename(victim, victim + ".away")
    with pytest.raises(CheckpointError, match="is missing"):
        halve(_F(text), HalvingSettings(**SMALL), out=part, resume=True)
    assert part.read_bytes() == before
    other = tmp_path / "other.jsonl"
    halve(_F(text), HalvingSettings(**SMALL), out=other)
    answer = read_halving(other).result["trial"]
    os.replace(os.path.join(companion_paths(other)[0], f"trial-{answer:06d}.npz"), victim)
    with pytest.raises(CheckpointError, match="another run|another network"):
        halve(_F(text), HalvingSettings(**SMALL), out=part, resume=True)
    assert part.read_bytes() == before


def test_without_a_target_a_character_budget_goes_mostly_to_the_top_rung(text, tmp_path):
    settings = HalvingSettings(min_chars=400, eta=3, top=2, sampler="random")
    out = tmp_path / "auto.jsonl"
    result = halve(_F(text), settings, out=out, budget_chars=240_000)
    run = read_halving(out)
    bracket = run.of_type("bracket")[0]
    assert bracket["auto"] and bracket["rungs"] == [400, 1200, None] and bracket["counts"] == [18, 6, 2]
    assert result.counters["training_chars"] <= 240_000
    assert plan.plan_chars([400, 1200], [18, 6]) <= 0.25 * 240_000
    assert result.chars > 30_000  # the rest trained the two top networks
    again = halve(_F(text, threads=1), settings, out=tmp_path / "again.jsonl", budget_chars=240_000)
    assert (again.x, again.fun, again.chars) == (result.x, result.fun, result.chars)


def test_a_time_budget_ends_in_time_and_spends_most_of_it_on_the_top_rung(text, tmp_path):
    started = time.monotonic()
    settings = HalvingSettings(min_chars=400, eta=3, top=2, starts=18, sampler="random")
    result = halve(_F(text), settings, out=tmp_path / "time.jsonl", budget_seconds=8.0, started=started)
    elapsed = time.monotonic() - started
    assert elapsed <= 8.0 * 1.25 + 1.0, elapsed  # generous: the machine is shared
    run = read_halving(tmp_path / "time.jsonl")
    assert run.of_type("calibration") and run.of_type("segment")
    assert result.chars > 10 * 3600  # far beyond the search's longest rung


def test_a_time_budget_lengthens_the_last_selective_rung_to_the_searchs_share(text, tmp_path):
    """The plan costs later rungs with the costliest networks drawn; once the promoted ones are
    known, the last selective rung takes what is left of the search's share at the pace measured
    (here three quarters of 8 s), at most eta**2 times the rung below, and the run file says so."""
    settings = HalvingSettings(min_chars=400, eta=3, top=2, starts=18, sampler="random", search_share=0.75)
    halve(_F(text), settings, out=tmp_path / "time.jsonl", budget_seconds=8.0)
    run = read_halving(tmp_path / "time.jsonl")
    to_search, to_top = run.of_type("promotion")
    assert 1200 < to_search.get("chars", 0) <= 3600 and "chars" not in to_top, to_search
    assert run.of_type("bracket")[0]["rungs"] == [400, 1200, None]  # as planned, before any network
    stretched = [r for r in run.of_type("record") if r["rung"] == 1]
    assert {r["chars"] for r in stretched} == {to_search["chars"]}
    assert _F(text, train_chars=to_search["chars"]).discrete(*stretched[0]["x"]) == stretched[0]["fun"]
    # killed once that length was written, a resumed run trains the rung to it (not to the plan's)
    part = tmp_path / "part.jsonl"

    def stop_at_the_promotion(entry):
        if entry["type"] == "promotion":
            raise _Stop

    with pytest.raises(_Stop):
        halve(_F(text), settings, out=part, budget_seconds=8.0, on_event=stop_at_the_promotion)
    written = read_halving(part).of_type("promotion")[0]
    halve(_F(text), settings, out=part, resume=True, budget_seconds=8.0)
    resumed = read_halving(part)
    assert resumed.of_type("promotion")[0] == written
    assert {r["chars"] for r in resumed.of_type("record") if r["rung"] == 1} == {written.get("chars", 1200)}


class _Clock:
    """A wall clock the test moves: the budget's time, not the machine's."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _late_after_bracket(clock, bracket: int, interrupt_at_stop: bool = False):
    """on_event: once bracket ``bracket`` is planned, the clock jumps to 0.5 s before the budget's
    end, within the end's reserve (1 s): no stretch of training fits any more."""
    def on_event(entry):
        if entry["type"] == "bracket" and entry["bracket"] == bracket:
            clock.now = 99.5  # the budget is 100 s
        if interrupt_at_stop and entry["type"] == "stop":
            raise _Stop

    return on_event


def test_a_rung_the_time_cannot_finish_is_stopped_and_the_earlier_answer_stands(text, tmp_path):
    """With a target, the time left is checked before each stretch of a rung: once an earlier bracket
    has an answer, a rung that cannot finish is stopped (a ``stop`` line) and the run ends with that
    answer, its checkpoint kept, the stopped networks' dropped; a run killed at the stop resumes to it."""
    out = tmp_path / "late.jsonl"
    clock = _Clock()
    result = halve(_F(text), HalvingSettings(**SMALL), out=out, budget_seconds=100.0, clock=clock, started=0.0,
                   on_event=_late_after_bracket(clock, 1))
    run = read_halving(out)
    stop, = run.of_type("stop")
    assert (stop["bracket"], stop["rung"]) == (1, 0) and "cannot finish" in stop["note"]
    assert not [line for line in run.of_type("record") if line["bracket"] == 1]
    tops = [line for line in run.of_type("record") if line["bracket"] == 0 and line["rung"] == 2]
    best = min(tops, key=lambda line: (line["fun"], line["trial"]))
    assert (result.x, result.fun, result.trial) == (best["x"], best["fun"], best["trial"])
    assert "the time ran out" in result.message
    folder, model = companion_paths(out)
    assert os.listdir(folder) == [f"trial-{best['trial']:06d}.npz"] and os.path.exists(model)

    part = tmp_path / "part.jsonl"
    clock = _Clock()
    with pytest.raises(_Stop):
        halve(_F(text), HalvingSettings(**SMALL), out=part, budget_seconds=100.0, clock=clock, started=0.0,
              on_event=_late_after_bracket(clock, 1, interrupt_at_stop=True))
    resumed = halve(_F(text), HalvingSettings(**SMALL), out=part, resume=True, budget_seconds=100.0, clock=clock)
    assert (resumed.x, resumed.fun, resumed.trial) == (result.x, result.fun, result.trial)


def test_budgets_too_small_for_one_network_are_refused_before_any_file(text, tmp_path):
    out = tmp_path / "run.jsonl"
    with pytest.raises(BudgetError, match="smaller than one network at --target-chars 3,600"):
        halve(_F(text), HalvingSettings(**SMALL), out=out, budget_chars=3000)
    with pytest.raises(BudgetError, match="smaller than one network at --min-chars 400"):
        halve(_F(text), HalvingSettings(min_chars=400), out=out, budget_chars=100)
    with pytest.raises(BudgetError, match="--budget-seconds 0.01 is too short for one network"):
        halve(_F(text), HalvingSettings(min_chars=400), out=out, budget_seconds=0.01)
    assert not out.exists()
    with pytest.raises(ValueError, match="beta 1"):
        halve(_F(text, beta=2), HalvingSettings(**SMALL), out=out)
    with pytest.raises(RunFileError, match="its eta is 3, this run's is 2"):
        halve(_F(text), HalvingSettings(**SMALL), out=out)
        halve(_F(text), HalvingSettings(**{**SMALL, "eta": 2}), out=out, resume=True)


# -- the command line -----------------------------------------------------------------------------

@pytest.fixture
def text_file(tmp_path, text) -> str:
    path = tmp_path / "text.txt"
    path.write_text(text.text, encoding="utf-8")
    return str(path)


ARGS = ["tune", "--method", "halving", "--heldout-chars", "1000", "--min-chars", "400", "--target-chars", "3600",
        "--sampler", "random", "--seed", "2"]


def test_cli_prints_the_answer_its_loss_and_its_model(text_file, tmp_path):
    out = tmp_path / "cli.jsonl"
    result = CliRunner().invoke(cli, [*ARGS, "--corpus", text_file, "--out", str(out)])
    assert result.exit_code == 0, result.output
    answer = read_halving(out).result
    h, s, lr = answer["x"]
    assert result.stdout.strip() == f"[{h}, {s}, {lr!r}]"
    assert f"held-out loss {answer['fun']!r} nats/char" in result.stderr
    assert f"fastrnn sample {companion_paths(out)[1]}" in result.stderr
    command = result.stderr.split("its loss again: ")[1].split()[1:]
    check = CliRunner().invoke(cli, command)
    assert check.exit_code == 0 and float(check.stdout) == answer["fun"]
    again = CliRunner().invoke(cli, ["tune", "--resume", str(out)])  # the file says it is a halving run
    assert again.exit_code == 0 and again.stdout == result.stdout and "is finished" in again.stderr
    assert again.stderr.count("networks in 1 bracket") == 1  # what the run did, said once
    # moved with its model, a finished run names the model where it now is, not where it was
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for path in (out, companion_paths(out)[1]):
        os.rename(path, moved / os.path.basename(path))
    again = CliRunner().invoke(cli, ["tune", "--resume", str(moved / out.name)])
    assert again.exit_code == 0 and again.stdout == result.stdout
    assert f"model: {moved / 'cli.npz'}" in again.stderr and f"fastrnn sample {moved / 'cli.npz'}" in again.stderr


@pytest.mark.parametrize("extra, flag, fragment", [
    (["--min-chars", "5000"], "", "--min-chars 5,000 is above --target-chars 3,600"),
    (["--eta", "1"], "--eta", "1 is not in the range 2<=x"),
    (["--budget-chars", "1000"], "--budget-chars", "smaller than one network at --target-chars"),
    (["--budget-seconds", "0.001"], "--budget-seconds", "too short for one network"),
    (["--train-chars", "5000"], "--train-chars", "does not apply to --method halving"),
    (["--steps", "5"], "--steps", "does not apply to --method halving"),
    (["--beta", "2"], "", "beta 1"),
])
def test_cli_bad_input_is_one_line_and_exit_2(text_file, tmp_path, extra, flag, fragment):
    out = tmp_path / "bad.jsonl"
    args = list(ARGS)
    if "--min-chars" in extra:
        args[args.index("--min-chars") + 1] = extra[1]
        extra = []
    result = CliRunner().invoke(cli, [*args, *extra, "--corpus", text_file, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and flag in lines[0] and fragment in lines[0], lines
    assert not out.exists()


def test_cli_halving_flags_belong_to_halving_and_a_folder_that_cannot_be_written_is_refused(text_file, tmp_path):
    result = CliRunner().invoke(cli, ["tune", "--method", "random", "--min-chars", "400", "--corpus", text_file])
    assert result.exit_code == 2 and "--min-chars" in result.stderr and "is for --method halving" in result.stderr
    result = CliRunner().invoke(cli, ["tune", "--method", "halving", "--brackets", "deepest", "--budget-seconds", "5",
                                      "--corpus", text_file, "--out", str(tmp_path / "no-target.jsonl")])
    assert result.exit_code == 2 and "Error: --brackets shapes the brackets" in result.stderr and "give --target-chars" in \
        result.stderr and len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "no-target.jsonl").exists()
    out = tmp_path / "run.jsonl"
    (tmp_path / "run.ckpt").write_text("in the way")
    result = CliRunner().invoke(cli, [*ARGS, "--corpus", text_file, "--out", str(out)])
    assert result.exit_code == 2 and "cannot write checkpoints" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_sigterm_then_resume_ends_as_an_uninterrupted_run(text_file, tmp_path):
    fastrnn = [sys.executable, "-c", "from fastrnn.cli.main import main; main()"]
    args = ["tune", "--method", "halving", "--heldout-chars", "1000", "--min-chars", "400", "--target-chars", "32400",
            "--starts", "18", "--sampler", "random", "--seed", "2", "--corpus", text_file, "--quiet"]
    whole, part = tmp_path / "whole.jsonl", tmp_path / "part.jsonl"
    subprocess.run([*fastrnn, *args, "--out", str(whole)], check=True, capture_output=True, timeout=600)
    process = subprocess.Popen([*fastrnn, *args, "--out", str(part)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and (not part.exists() or b'"promotion"' not in part.read_bytes()):
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)  # it once hung here (fastrnn/running/interrupts.py says why)
    finally:
        if process.poll() is None:
            process.kill()  # a failure leaves no process behind
    assert process.returncode == 130, err
    assert b"continue with --resume" in err
    resumed = subprocess.run([*fastrnn, "tune", "--resume", str(part), "--quiet"], capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert _lines(part) == _lines(whole)


def test_a_run_on_dask_workers_equals_the_threads_run(text, tmp_path):
    distributed = pytest.importorskip("distributed")
    from fastrnn.running.dask_executor import DaskExecutor

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with DaskExecutor(distributed.Client(cluster, set_as_default=False)) as executor:
            F = Objective(text, heldout_chars=1000, seed=2, executor=executor, dtype="float64")
            halve(F, HalvingSettings(**SMALL, starts=6), out=tmp_path / "dask.jsonl")
            shipped = [TrainState.fresh(h, 7, 0.05, text.vocab_size, seed=h, dtype="float64") for h in (16, 30)]
            on_workers = Lanes(F).advance(shipped, [300, 200], score=True)
            executor.client.close()
    finally:
        cluster.close()
    halve(_F(text), HalvingSettings(**SMALL, starts=6), out=tmp_path / "threads.jsonl")
    assert _lines(tmp_path / "dask.jsonl") == _lines(tmp_path / "threads.jsonl")
    here = [TrainState.fresh(h, 7, 0.05, text.vocab_size, seed=h, dtype="float64") for h in (16, 30)]
    on_threads = Lanes(_F(text, dtype="float64")).advance(here, [300, 200], score=True)
    for a, b in zip(shipped, here):
        assert_same_run(a, b)
    assert on_workers.scores == on_threads.scores
    assert all(s > 0 for s in on_workers.seconds)  # each state trained in a call of its own on its worker


# -- what a new run may replace, and what --resume is given (audit) -----------------------------------
TINY = dict(min_chars=600, target_chars=1800, eta=3, top=1, starts=3, sampler="random")


def test_a_new_run_refuses_an_earlier_runs_model_and_checkpoints_unless_forced(text, tmp_path):
    out = tmp_path / "m.jsonl"
    folder, model = companion_paths(out)
    with open(model, "wb") as f:
        f.write(b"an earlier network")
    with pytest.raises(RunFileError, match="model file .*m.npz' exists.*--force"):
        halve(_F(text), HalvingSettings(**TINY), out=out)
    with open(model, "rb") as f:
        assert f.read() == b"an earlier network"
    assert not out.exists() and not os.path.exists(folder)
    os.remove(model)
    os.mkdir(folder)
    with open(os.path.join(folder, "trial-000007.npz"), "wb") as f:
        f.write(b"an earlier checkpoint")
    with pytest.raises(RunFileError, match="checkpoint folder .* holds an earlier run's checkpoints.*--force"):
        halve(_F(text), HalvingSettings(**TINY), out=out)
    assert os.listdir(folder) == ["trial-000007.npz"] and not out.exists()
    with open(model, "wb") as f:
        f.write(b"an earlier network")
    result = halve(_F(text), HalvingSettings(**TINY), out=out, overwrite=True)
    assert os.listdir(folder) == [f"trial-{result.trial:06d}.npz"]  # the earlier run's checkpoint went
    assert load_model(model).state.hidden == result.x[0]
    again = halve(_F(text), HalvingSettings(**TINY), out=out, resume=True)  # its own run: no refusal
    assert again.finished_before and again.x == result.x


def test_cli_out_folders_are_created_and_a_folder_as_out_is_refused_before_anything(text_file, tmp_path):
    args = ["tune", "--method", "halving", "--heldout-chars", "1000", "--min-chars", "600", "--target-chars", "1800",
            "--starts", "3", "--top", "1", "--sampler", "random", "--corpus", text_file, "--quiet"]
    folder = str(tmp_path / "newdir2") + os.sep
    result = CliRunner().invoke(cli, [*args, "--out", folder])
    assert result.exit_code == 2 and "names a folder" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and not os.path.exists(folder)
    out = tmp_path / "a" / "b" / "run.jsonl"  # created, as for every method
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_halving(out).result is not None
    # resuming it as another method's run: named, not called damaged
    result = CliRunner().invoke(cli, ["tune", "--resume", str(out), "--method", "gd"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "--method" in lines[0] and "gd conflicts with halving" in lines[0] and "is a halving run file" in lines[0]
    assert "drop --method" in lines[0] and "damaged" not in lines[0]


def test_extrapolated_loss_is_exact_on_its_power_law_and_favours_networks_still_learning():
    alpha = plan.CURVE_EXPONENT

    def curve(c, floor, scale):
        return floor + scale * c ** -alpha

    for floor, scale in ((1.4, 30.0), (2.0, 9.0)):
        predicted = plan.extrapolated_loss(curve(1e5, floor, scale), curve(3e5, floor, scale), 3.0, 200.0)
        assert predicted == pytest.approx(curve(6e7, floor, scale), rel=1e-12)
    # equal values at the last rung: the one that gained more between the rungs is predicted lower
    assert plan.extrapolated_loss(2.6, 2.2, 3.0, 100.0) < plan.extrapolated_loss(2.3, 2.2, 3.0, 100.0)
    # one that got worse is predicted worse still; no length ahead, no change
    assert plan.extrapolated_loss(2.1, 2.2, 3.0, 100.0) > 2.2
    assert plan.extrapolated_loss(2.6, 2.2, 3.0, 1.0) == 2.2


def test_without_a_target_promotions_after_the_first_rung_rank_by_the_extrapolated_loss(text, tmp_path,
                                                                                      monkeypatch):
    settings = HalvingSettings(min_chars=400, eta=3, top=2, starts=18, sampler="random")
    short = tmp_path / "short.jsonl"
    halve(_F(text), settings, out=short, budget_chars=240_000)
    # rungs shorter than MIN_EXTRAPOLATED_CHARS (networks still in their first descent): by value
    assert all("predicted" not in line for line in read_halving(short).of_type("promotion"))
    monkeypatch.setattr(plan, "MIN_EXTRAPOLATED_CHARS", 400)  # this test's rungs count as long
    out = tmp_path / "auto.jsonl"
    halve(_F(text), settings, out=out, budget_chars=240_000)
    run = read_halving(out)
    first, last = run.of_type("promotion")
    assert "predicted" not in first  # one value per network yet: ranked by it
    records = {(r["rung"], r["trial"]): r for r in run.of_type("record")}
    predicted = dict((t, v) for t, v in last["predicted"])
    assert sorted(predicted) == sorted(first["trials"])
    spent = sum(r["steps"] * r["x"][1] for (rung, _), r in records.items() if rung == 1) + sum(
        r["steps"] * r["x"][1] for (rung, t), r in records.items() if rung == 0 and t not in predicted)
    for trial, value in predicted.items():
        below, now = records[(0, trial)]["fun"], records[(1, trial)]["fun"]
        horizon = 1200 + (240_000 - spent) / 2
        assert value == pytest.approx(plan.extrapolated_loss(below, now, 3.0, horizon / 1200), rel=1e-12)
    ranked = sorted(predicted, key=lambda t: (predicted[t], t))
    assert last["trials"] == sorted(ranked[:2])
    assert [t for t, _ in last["predicted"]] == ranked


def test_calibration_times_a_long_enough_batch_twice_and_keeps_the_shorter(monkeypatch):
    """A one-off cost inside the timing that ends the calibration (numba compiling a kernel variant
    on the first run after installing) must not pass for a slow machine: the batch is timed again."""
    from fastrnn.tuning import halving_lanes

    clock = [0.0]
    monkeypatch.setattr(halving_lanes.time, "perf_counter", lambda: clock[0])
    per_update = 2e-4  # seconds per update of a (128, 25) network on one lane
    compiled = []

    class FakeLanes:
        count, vocab_size = 2, 65

        def advance(self, states, steps, score):
            if not score and steps[0] >= 640 and not compiled:
                compiled.append(True)
                clock[0] += 5.0  # the compile, once
            clock[0] += per_update * max(steps)
            return [None] * len(states)

    found = halving_lanes.calibrate(FakeLanes(), "float32")
    assert compiled
    # the pace of the trainings alone: per_update seconds for an update's work (25 characters)
    assert found == pytest.approx(per_update / halving_lanes.work(128, 25, 65, 25, itemsize=4), rel=1e-12)
