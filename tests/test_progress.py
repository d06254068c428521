"""What tune's progress bar counts and says (issue 22, item 5)."""
from __future__ import annotations

from fastrnn.cli.progress import TuneProgress


def _record(step, chars, trainings, fun=3.0, trial=None, **fields):
    record = {"step": step, "x": [40.0, 10.0, 0.1], "fun": fun,
              "counters": {"training_chars": chars, "trainings_run": trainings}, **fields}
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


def test_a_skipped_batch_says_why():
    shown = TuneProgress(100, None, 20, {"training_chars": 0, "trainings_run": 0})
    shown.postfix(_record(1, 0, 1, fun=2.5), _form)
    skipped = _record(2, 0, 2, fun=2.5, rule="skipped", note="the batch would take about 9.0 s, 4.0 s are left",
                      trials=[{"x": [700.0, 30.0, 0.01], "fun": None, "skipped": True}] * 2)
    assert shown.postfix(skipped, _form) == ("2 trials skipped: the batch would take about 9.0 s, 4.0 s are left; "
                                             "best=2.5000")
    one = _record(3, 0, 2, fun=2.5, rule="skipped", note="the batch would take about 9.0 s, 3.0 s are left",
                  trial={"x": [700.0, 30.0, 0.01], "fun": None, "skipped": True})
    assert shown.postfix(one, _form).startswith("1 trial skipped: ")


def test_an_interrupt_closes_the_bar_before_it_says_so(corpus_file, monkeypatch):
    # The message was written on the bar's line, and the bar drawn again after it (issue 22, item 9).
    import click
    from fastrnn.cli import train, tune

    from fastrnn.objective import Objective

    from helpers import invoke

    events = []

    class Bar:
        disable = True
        n = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            events.append("exit")

        def close(self):
            events.append("close")

        def update(self, n):
            pass

        def set_postfix_str(self, text):
            pass

    echo = click.echo

    def recording_echo(message=None, *args, **kwargs):
        if message and str(message).startswith("Error: interrupted"):
            events.append("error")
        return echo(message, *args, **kwargs)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    for module in (train, tune):
        monkeypatch.setattr(module, "progress_bar", lambda *a, **k: Bar())
        monkeypatch.setattr(module.click, "echo", recording_echo)
    import fastrnn.network.session as session

    monkeypatch.setattr(session, "train", interrupted)
    monkeypatch.setattr(Objective, "evaluate_many", lambda self, points: interrupted())
    for args in (["train", "--corpus", corpus_file, "--steps", "5", "--hidden", "8", "--seq", "5"],
                 ["tune", "--corpus", corpus_file, "--objective", "paper", "--alpha", "2", "--steps", "3"]):
        events.clear()
        assert invoke(args, paper=False).exit_code == 130
        assert events.index("close") < events.index("error"), events
