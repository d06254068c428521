"""What tune's progress bar counts and says (issue 22, item 5)."""
from __future__ import annotations

from fastrnn.cli.progress import TuneProgress


def _record(step, chars, trainings, fun=3.0, trial=None):
    record = {"step": step, "x": [40.0, 10.0, 0.1], "fun": fun,
              "counters": {"training_chars": chars, "trainings_run": trainings}}
    if trial is not None:
        record["trial"] = trial
    return record


def _form(x):
    return "[" + ", ".join(f"{v:g}" for v in x) + "]"


def test_a_budget_drives_the_bar_not_the_step_limit():
    shown = TuneProgress(10_000, 3_000_000, None, {"training_chars": 0, "trainings_run": 0})
    assert (shown.total, shown.unit) == (3_000_000, "char")
    assert shown.position(_record(3, 400_000, 4)) == 400_000
    assert shown.position(_record(40, 3_100_000, 31)) == 3_000_000  # the last batch may pass the budget
    networks = TuneProgress(10_000, None, 48, {"training_chars": 0, "trainings_run": 0})
    assert (networks.total, networks.unit, networks.position(_record(2, 0, 12))) == (48, "network", 12)
    assert shown.warning(_record(1, 100_000, 4), 2.0) is None


def test_without_a_budget_the_bar_says_early_where_the_steps_lead():
    shown = TuneProgress(10_000, None, None, {"training_chars": 0, "trainings_run": 0})
    assert (shown.total, shown.unit, shown.position(_record(3, 0, 0))) == (10_000, "step", 3)
    assert shown.warning(_record(0, 0, 0), 1.0) is None  # the start tells no pace
    message = shown.warning(_record(1, 0, 0), 11.0)  # 11 s a step: 9,999 more steps take 30:33:09
    assert "no budget" in message and "10,000 steps" in message and "30:33:09" in message
    assert shown.warning(_record(2, 0, 0), 22.0) is None  # said once


def test_a_sampler_shows_its_trial_beside_the_best():
    shown = TuneProgress(100, None, 20, {"training_chars": 0, "trainings_run": 0})
    shown.postfix(_record(1, 0, 1, fun=2.5), _form)
    text = shown.postfix(_record(2, 0, 2, fun=2.5, trial={"x": [64.0, 20.0, 0.01], "fun": 3.1}), _form)
    assert text == "trial=[64, 20, 0.01] F=3.1000 best=2.5000"
