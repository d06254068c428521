"""The top networks' cooldown without a target (:mod:`fastrnn.tuning.halving_top`): the decay's
pieces against an independent rule, the delivered network against straight training with that
rule, resuming through the decay, time budgets, and the settings that refuse it."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from fastrnn.cli.main import cli

from fastrnn.network.checkpoint import load_model
from fastrnn.network.corpus import Corpus
from fastrnn.network.model import TrainState
from fastrnn.network.schedule import COOLDOWN_PIECES, Cooldown
from fastrnn.objective import Objective
from fastrnn.tuning import halving_plan as plan
from fastrnn.tuning.halving import HalvingSettings, halve
from fastrnn.tuning.halving_lanes import Pace
from fastrnn.tuning.halving_store import companion_paths, read_halving
from fastrnn.tuning.halving_top import rounds_of

from helpers import synthetic_text

AUTO = dict(min_chars=400, eta=3, top=2, sampler="random")


@pytest.fixture(scope="module")
def text() -> Corpus:
    return Corpus.from_text(synthetic_text(30_000, seed=4), name="cooldown text")


def _F(text, threads=2):
    return Objective(text, heldout_chars=1000, seed=2, threads=threads)


def _factor(update: int, start: int, end: int) -> float:
    """The rate's factor at ``update``, from the rule as documented, written independently: the
    decay's D updates cut into P pieces whose first updates are start + floor(D k / P); update u
    (offset o) lies in the last piece k with floor(D k / P) <= o, i.e. k = ceil((o + 1) P / D) - 1."""
    if update < start:
        return 1.0
    offset, span = update - start, end - start
    piece = -(-(offset + 1) * COOLDOWN_PIECES // span) - 1
    return 1.0 - (piece + 0.5) / COOLDOWN_PIECES


@pytest.mark.parametrize("start, end", [(100, 140), (0, 7), (50, 50 + 3 * COOLDOWN_PIECES + 11), (10, 1000)])
def test_the_decay_is_a_function_of_the_update_however_its_training_is_split(start, end):
    decay = Cooldown(start, end)
    expected = [_factor(u, start, end) for u in range(end)]
    assert expected[-1] > 0 and all(a >= b for a, b in zip(expected, expected[1:]))
    rng = np.random.default_rng(start + end)
    for _ in range(5):
        cuts = sorted({0, end, *rng.integers(0, end, size=4).tolist()})
        factors = []
        for a, b in zip(cuts, cuts[1:]):
            runs = decay.runs(a, b - a)
            assert sum(n for n, _ in runs) == b - a and all(n > 0 for n, _ in runs)
            factors += [f for n, f in runs for _ in range(n)]
        assert factors == expected
    with pytest.raises(ValueError, match="past the cooldown's end"):
        decay.runs(end - 1, 2)


def test_rounds_keep_each_networks_rates_and_cut_every_stretch_at_the_same_fractions():
    decays = [Cooldown(100, 140), None, Cooldown(0, 1000), Cooldown(5, 9)]
    positions, steps = [90, 3, 10, 5], [50, 7, 600, 4]
    rounds = rounds_of(positions, steps, decays)
    for k, (position, n, decay) in enumerate(zip(positions, steps, decays)):
        trained = [f for counts, factors in rounds for f in [factors[k]] * counts[k]]
        expected = [_factor(u, decay.start, decay.end) if decay else 1.0 for u in range(position, position + n)]
        assert trained == expected
    done = [0] * len(steps)
    for counts, _ in rounds:  # every round ends each network's stretch at the same fraction (to an update)
        done = [d + c for d, c in zip(done, counts)]
        fractions = [d / n for d, n in zip(done, steps)]
        assert max(fractions) - min(fractions) <= max(1 / n for n in steps)
    assert rounds_of(positions, steps, [None] * 4) == [] and rounds_of([100], [0], [Cooldown(100, 140)]) == []


def test_a_character_budget_delivers_straight_training_with_the_documented_decay(text, tmp_path):
    out = tmp_path / "auto.jsonl"
    F = _F(text)
    result = halve(F, HalvingSettings(**AUTO), out=out, budget_chars=240_000)
    run = read_halving(out)
    assert run.settings["format_version"] == 3 and run.settings["halving"]["cooldown"] == plan.DEFAULT_COOLDOWN
    (line,) = run.of_type("cooldown")
    cap = next(seg["cap"] for seg in run.of_type("segment") if seg.get("cap") is not None)
    below = run.of_type("bracket")[0]["rungs"][-2]
    begins = cap - int(plan.DEFAULT_COOLDOWN * (cap - below))
    h, s, lr = result.x
    start, end = dict(zip(line["trials"], line["updates"]))[result.trial]
    assert (start, end) == (-(-begins // s), -(-cap // s)) == tuple(result.cooldown)
    assert result.steps == end and "decayed to zero over its last" in result.message
    # the answer, trained straight from its seed with the rule above, is the delivered network
    straight = TrainState.fresh(h, s, lr, F.corpus.vocab_size, F.seed, F.dtype)
    F.backend.train_many(F.corpus.data, [straight], start, threads=1)
    update = start
    while update < end:
        factor = _factor(update, start, end)
        n = 1
        while update + n < end and _factor(update + n, start, end) == factor:
            n += 1
        straight.learning_rate = lr * factor
        F.backend.train_many(F.corpus.data, [straight], n, threads=1)
        update += n
    model = load_model(companion_paths(out)[1])
    assert model.state.params.tobytes() == straight.params.tobytes()
    assert model.state.memory.tobytes() == straight.memory.tobytes()
    assert model.state.learning_rate == lr and model.info["from_run"]["cooldown"] == [start, end]
    # without the decay the same run trains the same networks at a constant rate: another answer
    flat = halve(_F(text), HalvingSettings(**AUTO, cooldown=0), out=tmp_path / "flat.jsonl", budget_chars=240_000)
    assert not read_halving(tmp_path / "flat.jsonl").of_type("cooldown") and flat.cooldown is None
    assert flat.fun != result.fun


class _Stop(KeyboardInterrupt):
    pass


def _interrupt_at(kind: str, count: int):
    seen = [0]

    def on_event(entry):
        if entry["type"] == kind:
            seen[0] += 1
            if seen[0] == count:
                raise _Stop

    return on_event


@pytest.mark.parametrize("kind, count", [("cooldown", 1), ("segment", -2), ("segment", -1)])
def test_a_run_killed_in_its_decay_resumes_to_the_uninterrupted_answer(text, tmp_path, monkeypatch, kind, count):
    """Killed as the decay is decided, inside it, and at its last stretch (counted from the end).
    The pace is fixed (a character budget's stretches follow it) so that the decay spans several
    stretches, at the same places in both runs."""
    monkeypatch.setattr("fastrnn.tuning.halving_lanes.MIN_TIMED_SECONDS", float("inf"))  # never re-measured
    fixed = Pace.__init__
    monkeypatch.setattr(Pace, "__init__", lambda self, seconds_per_unit=None: fixed(self, 1e-9))
    monkeypatch.setattr("fastrnn.tuning.halving_budget.CHECKPOINT_SECONDS", 5.0)
    whole = tmp_path / "whole.jsonl"
    first = halve(_F(text), HalvingSettings(**AUTO), out=whole, budget_chars=240_000)
    segments = read_halving(whole).of_type("segment")
    kinds = [line["type"] for line in read_halving(whole).lines]
    assert 3 <= kinds[kinds.index("cooldown"):].count("segment") <= 50  # stretches inside the decay
    count = count if count > 0 else len(segments) + count
    part = tmp_path / "part.jsonl"
    with pytest.raises(_Stop):
        halve(_F(text), HalvingSettings(**AUTO), out=part, budget_chars=240_000, on_event=_interrupt_at(kind, count))
    again = halve(_F(text, threads=1), HalvingSettings(**AUTO), out=part, resume=True, budget_chars=240_000)
    assert (again.x, again.fun, again.steps, again.cooldown) == (first.x, first.fun, first.steps, first.cooldown)
    assert load_model(companion_paths(part)[1]).state.params.tobytes() == \
        load_model(companion_paths(whole)[1]).state.params.tobytes()


def test_a_time_budget_starts_the_decay_for_the_last_share_of_the_top_phase(text, tmp_path):
    out = tmp_path / "time.jsonl"
    result = halve(_F(text), HalvingSettings(**AUTO, starts=18), out=out, budget_seconds=8.0)
    run = read_halving(out)
    (line,) = run.of_type("cooldown")
    top = [p for p in run.of_type("promotion") if p["rung"] == len(run.of_type("bracket")[0]["rungs"]) - 1][0]
    reserve = 1.0
    planned = 8.0 - reserve - plan.DEFAULT_COOLDOWN * (8.0 - reserve - top["seconds"])
    assert line["seconds"] >= planned - 0.5 and sorted(line["trials"]) == sorted(top["trials"])
    decays = dict(zip(line["trials"], line["updates"]))
    records = {r["trial"]: r for r in run.of_type("record") if r["trial"] in decays and r["rung"] == top["rung"]}
    for trial, (start, end) in decays.items():
        assert start <= records[trial]["steps"] <= end  # no network trains past its decay's end
    assert result.cooldown == decays[result.trial] or records[result.trial]["steps"] == decays[result.trial][0]


def test_settings_refuse_a_cooldown_that_cannot_apply_and_old_files_resume_without_one(corpus_file, tmp_path):
    assert HalvingSettings().resolved().cooldown == plan.DEFAULT_COOLDOWN
    assert HalvingSettings(target_chars=2700).resolved().cooldown == 0.0
    for bad in (1.0, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match=r"--cooldown must lie in \[0, 1\)"):
            HalvingSettings(cooldown=bad)
    with pytest.raises(ValueError, match="drop --cooldown or --target-chars"):
        HalvingSettings(target_chars=2700, cooldown=0.2)
    old = {k: v for k, v in HalvingSettings(**AUTO).resolved().record().items() if k != "cooldown"}
    assert plan.settings_from_record(old).cooldown == 0.0
    base = ["tune", "--method", "halving", "--corpus", corpus_file, "--heldout-chars", "1000"]
    for extra, fragment in ((["--cooldown", "nan"], "must be a finite number"),
                            (["--cooldown", "1"], "not in the range 0<=x<1"),
                            (["--cooldown", "0.3", "--target-chars", "3600"], "drop --cooldown or --target-chars")):
        outcome = CliRunner().invoke(cli, base + extra + ["--out", str(tmp_path / "x.jsonl")])
        lines = outcome.stderr.strip().splitlines()
        assert outcome.exit_code == 2 and len(lines) == 1 and fragment in lines[0], outcome.stderr
        assert not (tmp_path / "x.jsonl").exists()


def test_the_warm_up_compiles_and_refuses_an_unknown_precision(capsys):
    from fastrnn.tuning import warm_up

    assert warm_up.main(["float16"]) == 2
    assert "unknown precision 'float16'" in capsys.readouterr().err
    assert warm_up.main(["float32"]) == 0
    assert capsys.readouterr().err.startswith("numba kernels ready (float32) in ")
