"""The pace of each network's shape: backends report the seconds each state trained on a thread of
its own, the run learns a pace per (h, s) from them, and the top phase sizes each network's
stretch by its own pace, so that networks the cost model misjudges still end their stretches
together (no lane waits for another)."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

from fastrnn.backends import get_backend
from fastrnn.backends.numba import NumbaBackend
from fastrnn.tuning.halving_budget import BudgetDecisions
from fastrnn.tuning.halving_lanes import MIN_TIMED_SECONDS, Lanes, Pace

from helpers import assert_same_run, copy_state, fresh_state

#: Extra seconds per kernel call of the network made slow below (the cost model cannot see it).
DELAY = 0.01


@pytest.fixture
def slow_hidden_24(monkeypatch):
    """Every numba kernel call that trains a network of h = 24 alone (about 50 updates) also
    sleeps DELAY, the GIL released as the kernel releases it: a shape far slower than the cost
    model says."""
    original = NumbaBackend._kernel_train_batch

    def slowed(self, args, threads):
        original(self, args, threads)
        if len(args[1]) == 1 and int(args[1][0]) == 24:
            time.sleep(DELAY)

    monkeypatch.setattr(NumbaBackend, "_kernel_train_batch", slowed)
    monkeypatch.setattr("fastrnn.backends._base.CHUNK_COST", 50 * 8 * (24 * 24 + 24 * 45))  # ~50 updates a call


def test_train_many_reports_each_states_own_seconds_and_keeps_its_bits(word_corpus, any_backend, monkeypatch):
    monkeypatch.setattr("fastrnn.backends._base.CHUNK_COST", 200_000)
    states = [fresh_state(word_corpus, 24, 8, 0.05, seed=1), fresh_state(word_corpus, 16, 5, 0.05, seed=2),
              fresh_state(word_corpus, 8, 3, 0.05, seed=3)]
    alone = [copy_state(s) for s in states]
    began = time.perf_counter()
    seconds = any_backend.train_many(word_corpus.data, states, [300, 200, 0], threads=2)
    wall = time.perf_counter() - began
    assert seconds.shape == (3,) and seconds[2] == 0.0  # a state that did not train took no time
    assert all(0 < x <= wall for x in seconds[:2])  # each on a thread of its own: its time is known
    for state, n in zip(alone, [300, 200, 0]):
        any_backend.train_many(word_corpus.data, [state], n, threads=1)
    for timed, straight in zip(states, alone):
        assert_same_run(timed, straight)


def test_a_state_sharing_its_kernel_calls_has_no_own_time(word_corpus, backend):
    states = [fresh_state(word_corpus, 8, 3, 0.05, seed=k) for k in range(3)]
    seconds = backend.train_many(word_corpus.data, states, 5, threads=1)  # one thread steps them all
    assert np.isnan(seconds).all()
    one = backend.train_many(word_corpus.data, states[:1], 5, threads=2)
    assert np.isfinite(one).all() and one[0] > 0  # alone in its calls: their time is its own


class _TopPhase(BudgetDecisions):
    """What :meth:`BudgetDecisions._updates_in` reads of a run: two lanes, a pace, no character budget."""

    def __init__(self, pace: Pace, vocab_size: int):
        self.pace, self.vocab_size = pace, vocab_size
        self.lanes = SimpleNamespace(count=2)
        self.F = SimpleNamespace(dtype="float64")
        self.budgets = {"budget_chars": None}


def test_stretches_sized_by_each_shapes_own_pace_end_together(word_corpus, slow_hidden_24, monkeypatch):
    """A shape the cost model rates 3x too fast would keep the other lane waiting two thirds of
    every stretch; its own pace, learnt from one stretch, gives it the updates that fill the same time."""
    monkeypatch.setattr("fastrnn.tuning.halving_lanes.MIN_TIMED_SECONDS", 0.1)
    lanes = Lanes(SimpleNamespace(backend=get_backend("numba"), executor=SimpleNamespace(threads=2),
                                  corpus=word_corpus, heldout=word_corpus))
    states = [fresh_state(word_corpus, 24, 8, 0.05, seed=1), fresh_state(word_corpus, 40, 8, 0.05, seed=2)]
    pace = Pace(1e-9)
    run = _TopPhase(pace, word_corpus.vocab_size)
    lanes.advance(states, [200, 200], score=False)  # compiled and loaded outside the timings
    for steps in ([3000, 30000], None):
        steps = steps or run._updates_in(states, 1.0)
        _, seconds = lanes.advance(states, steps, score=False)
        assert all(math.isfinite(x) and x > 0 for x in seconds)
        for st, n, own in zip(states, steps, seconds):
            pace.observe_shape((st.hidden, st.seq_length), run.cost(st.hidden, st.seq_length, n * st.seq_length), own)
    slow, fast = pace.of_shape((24, 8)), pace.of_shape((40, 8))
    assert slow > 3 * fast  # the model's one pace would misjudge the pair by that much
    assert steps[0] < steps[1] and 0.5 < seconds[0] / seconds[1] < 2.0, (steps, seconds)
    assert pace.of_shape((99, 9)) == pace.seconds_per_unit  # a shape not timed: the run's pace


def test_a_shapes_pace_moves_as_the_runs_does():
    pace = Pace(2e-9)
    pace.observe_shape((50, 10), 1e9, float("nan"))  # trained beside others: no time of its own
    pace.observe_shape((50, 10), 1e9, MIN_TIMED_SECONDS / 2)  # too short to count
    pace.observe_shape((50, 10), 0.0, 1.0)
    assert pace.shapes == {} and pace.of_shape((50, 10)) == 2e-9
    pace.observe_shape((50, 10), 1e9, 4.0)
    assert pace.of_shape((50, 10)) == 4e-9
    pace.observe_shape((50, 10), 1e9, 2.0)  # faster: halfway
    assert pace.of_shape((50, 10)) == pytest.approx(3e-9)
    pace.observe_shape((50, 10), 1e9, 5.0)  # slower: at once (the budget must hold)
    assert pace.of_shape((50, 10)) == pytest.approx(5e-9)
    assert pace.seconds_per_unit == 2e-9


class _Search(BudgetDecisions):
    """What :meth:`BudgetDecisions.stretched_length` reads of a run: two lanes, a pace, a time
    budget of 600 s with 50 s spent, and the networks promoted."""

    def __init__(self, pace: Pace, shapes, auto: bool = True, budget_seconds: float | None = 600.0):
        self.pace, self.vocab_size = pace, 65
        self.lanes = SimpleNamespace(count=2)
        self.F = SimpleNamespace(dtype="float32", heldout=SimpleNamespace(data=np.zeros(20_000)))
        self.budgets = {"budget_chars": None, "budget_seconds": budget_seconds}
        self.settings = SimpleNamespace(search_share=0.25, eta=3)
        self.trials = {k: SimpleNamespace(hidden=h, seq_length=s) for k, (h, s) in enumerate(shapes)}

    def elapsed(self) -> float:
        return 50.0


def test_the_last_selective_rung_fills_the_searchs_share_of_the_time_at_the_pace_measured():
    """The plan costs later rungs with the costliest networks drawn; once the promoted networks are
    known and the pace measured, the last selective rung is as long as the search's share allows
    (here 150 s - 50 s spent = 100 s), its scoring included, within its planned length and eta**2
    times the rung below."""
    from fastrnn.tuning.halving_lanes import work

    shapes = [(100, 10), (50, 20)]
    plan = dict(auto=True, rungs=[300_000, 900_000, None], stretch_last_rung=True)
    below = plan["rungs"][0]

    def seconds(pace, chars):  # two lanes, each network on one: the longer of the two, or half the sum
        works = [work(h, s, 65, chars - below, itemsize=4) + work(h, s, 65, 20_000, True, itemsize=4)
                 for h, s in shapes]
        return pace * max(max(works), sum(works) / 2)

    for pace in (2e-9, 4e-9):
        run = _Search(Pace(pace), shapes)
        # the predicted time is linear in the length: where it reaches 100 s
        at_a, at_b = seconds(pace, 1_000_000), seconds(pace, 2_000_000)
        exact = 1_000_000 + (100.0 - at_a) * 1_000_000 / (at_b - at_a)
        assert 900_000 < exact < 2_700_000
        stretched = run.stretched_length(plan, 1, [0, 1])
        assert stretched == math.floor(exact) or abs(stretched - exact) <= 1
        assert seconds(pace, stretched) <= 100.0 < seconds(pace, stretched + 2)
    assert _Search(Pace(1e-11), shapes).stretched_length(plan, 1, [0, 1]) == 2_700_000  # at most eta**2 x below
    assert _Search(Pace(1e-7), shapes).stretched_length(plan, 1, [0, 1]) == 900_000  # never shorter than planned
    # with a target, in a plan written before (format 2), without a time budget, or before the last
    # selective rung: as planned
    for planned_before in (dict(plan, auto=False), {k: v for k, v in plan.items() if k != "stretch_last_rung"}):
        assert _Search(Pace(2e-9), shapes).stretched_length(planned_before, 1, [0, 1]) == 900_000
    assert _Search(Pace(2e-9), shapes, budget_seconds=None).stretched_length(plan, 1, [0, 1]) == 900_000
    deeper = dict(auto=True, rungs=[100_000, 300_000, 900_000, None], stretch_last_rung=True)
    assert _Search(Pace(2e-9), shapes).stretched_length(deeper, 1, [0, 1]) == 300_000
