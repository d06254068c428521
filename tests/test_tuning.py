"""Tuning runs end to end: run files, resuming after an interruption, the CLI, plots, presets."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from click.testing import CliRunner
from fastrnn.cli.main import cli

from fastrnn.objective.function import Objective
from fastrnn.tuning import reproduce
from fastrnn.tuning.runner import RunFileError, read_run, tune
from fastrnn.tuning.trials import trials as run_trials

ALPHA = 5


def _F(corpus, noise="common"):
    return Objective(corpus, alpha=ALPHA, beta=1, noise=noise, seed=3, threads=2, kind="paper")


@pytest.mark.parametrize("method,options", [("gd", {"step": 0.5}), ("newton", {"multiplier": 1.0}),
                                            ("bfgs", {}), ("dfp", {})])
@pytest.mark.parametrize("noise", ["common", "fresh"])
def test_resumed_run_ends_like_an_uninterrupted_one(small_corpus, tmp_path, method, options, noise):
    x0 = [24.3, 8.6, 0.2]
    whole = tune(_F(small_corpus, noise), method, x0=x0, seed=1, max_steps=9, record_every=2,
                 out=tmp_path / "whole.jsonl", **options)
    part = tmp_path / "part.jsonl"
    tune(_F(small_corpus, noise), method, x0=x0, seed=1, max_steps=5, record_every=2, out=part, **options)
    resumed = tune(_F(small_corpus, noise), method, x0=x0, seed=1, max_steps=9, record_every=2, out=part,
                   resume=True, **options)
    assert resumed.x.tolist() == whole.x.tolist()
    assert resumed.fun == whole.fun and resumed.nit == whole.nit == 9
    steps = [r["step"] for r in read_run(part).records]
    assert steps == sorted(set(steps))  # no record written twice
    # The interrupted run also recorded its last step (5); every other record is the same.
    resumed_records = {r["step"]: r["x"] for r in read_run(part).records}
    whole_records = {r["step"]: r["x"] for r in read_run(tmp_path / "whole.jsonl").records}
    assert set(resumed_records) == set(whole_records) | {5}
    assert all(resumed_records[step] == x for step, x in whole_records.items())


def test_killed_run_loses_at_most_the_last_record(small_corpus, tmp_path):
    path = tmp_path / "run.jsonl"
    whole = tune(_F(small_corpus), "gd", x0=[30.2, 9.1, 0.3], seed=1, max_steps=8, record_every=1, out=path, step=0.5)
    lines = path.read_text().splitlines()
    # A process killed while writing record 5: records 0-4 survive, then half a line.
    path.write_text("\n".join(lines[:6]) + "\n" + lines[6][: len(lines[6]) // 2])
    run = read_run(path)
    assert [r["step"] for r in run.records] == [0, 1, 2, 3, 4] and run.result is None
    with open(path, "w") as f:  # resuming appends after the last complete line
        f.write("\n".join(lines[:6]) + "\n")
    resumed = tune(_F(small_corpus), "gd", x0=[30.2, 9.1, 0.3], seed=1, max_steps=8, record_every=1, out=path,
                   resume=True, step=0.5)
    assert resumed.x.tolist() == whole.x.tolist()
    run = read_run(path)
    assert run.result["x"] == whole.x.tolist()
    assert run.result["counters"]["trainings_run"] > 0


def test_run_file_layout(small_corpus, tmp_path):
    path = tmp_path / "run.jsonl"
    tune(_F(small_corpus), "gd", x0=[25.0, 10.0, 0.1], seed=0, max_steps=5, record_every=2, out=path, step=0.1)
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["type"] for e in entries] == ["settings", "record", "record", "record", "record", "result"]
    assert [e["step"] for e in entries if e["type"] == "record"] == [0, 2, 4, 5]
    settings = entries[0]
    assert settings["method"] == "gd" and settings["options"] == {"step": 0.1}
    assert settings["objective"]["alpha"] == ALPHA and settings["objective"]["corpus_fingerprint"]
    record = entries[1]
    assert {"x", "fun", "gradient_norm", "rule", "state", "counters"} <= set(record)


def test_resume_refuses_other_settings(small_corpus, tmp_path):
    path = tmp_path / "run.jsonl"
    tune(_F(small_corpus), "gd", x0=[25.0, 10.0, 0.1], seed=0, max_steps=2, out=path, step=0.1)
    with pytest.raises(RunFileError, match="options"):
        tune(_F(small_corpus), "gd", x0=[25.0, 10.0, 0.1], seed=0, max_steps=4, out=path, resume=True, step=0.2)
    other = Objective(small_corpus, alpha=ALPHA + 1, beta=1, seed=3, kind="paper")
    with pytest.raises(RunFileError, match="objective"):
        tune(other, "gd", x0=[25.0, 10.0, 0.1], seed=0, max_steps=4, out=path, resume=True, step=0.1)


def test_not_a_run_file(tmp_path):
    bogus = tmp_path / "x.jsonl"
    bogus.write_text('{"type": "record"}\n')
    with pytest.raises(RunFileError, match="not a fastrnn run file"):
        read_run(bogus)
    with pytest.raises(RunFileError, match="does not exist"):
        read_run(tmp_path / "missing.jsonl")


def test_cli_tune_prints_the_papers_form_and_resumes(tmp_path, corpus_file):
    runner = CliRunner()
    out = tmp_path / "run.jsonl"
    args = ["tune", "--objective", "paper", "--method", "gd", "--step", "0.5", "--alpha", "5", "--corpus", corpus_file,
            "--seed", "2",
            "--record-every", "3", "--quiet"]
    whole = runner.invoke(cli, args + ["--steps", "10", "--out", str(tmp_path / "whole.jsonl")])
    assert whole.exit_code == 0, whole.output
    final = whole.stdout.strip()
    assert final.startswith("[") and final.count(",") == 2
    assert len([float(part) for part in final.strip("[]").split(",")]) == 3
    assert runner.invoke(cli, args + ["--steps", "4", "--out", str(out)]).exit_code == 0
    resumed = runner.invoke(cli, args + ["--steps", "10", "--resume", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.strip() == final


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["tune", "--objective", "paper", "--method", "sgd"], "--method"),
        (["tune", "--objective", "paper", "--method", "newton", "--step", "0.1", "--steps", "1"], "step"),
        (["tune", "--objective", "paper", "--x0", "1,2"], "--x0"),
        (["tune", "--objective", "paper", "--resume", "/no/such/run.jsonl"], "does not exist"),
        (["reproduce", "--trial", "10"], "--trial"),
        (["plot", "/no/such/run.jsonl", "-o", "x.png"], "does not exist"),
    ],
)
def test_cli_tune_bad_input(args, fragment, corpus_file):
    result = CliRunner().invoke(cli, args + ["--corpus", corpus_file] if args[0] != "plot" else args)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr


def test_cli_gradient(corpus_file, small_corpus):
    result = CliRunner().invoke(cli, ["gradient", "--objective", "paper", "24.5", "8.5", "0.1", "--alpha", "5", "--beta", "2",
                                      "--corpus", corpus_file])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    F = Objective(small_corpus, alpha=5, beta=2, kind="paper")
    f0 = F((24.5, 8.5, 0.1))
    expected_h = (F((24.5 + 1e-8, 8.5, 0.1)) - f0) / 1e-8
    assert record["gradient"][0] == expected_h
    assert record["magnitude"] == pytest.approx(np.linalg.norm(record["gradient"]))
    assert record["gradient_paper_units"][0] == pytest.approx(expected_h * 1e-8)


def test_cli_plot_writes_a_png(tmp_path, small_corpus):
    runs = []
    for step in (0.1, 0.5):
        path = tmp_path / f"run{step}.jsonl"
        tune(_F(small_corpus), "gd", x0=[25.0, 10.0, 0.1], seed=0, max_steps=4, record_every=1, out=path, step=step)
        runs.append(str(path))
    png = tmp_path / "fig.png"
    result = CliRunner().invoke(cli, ["plot", *runs, "-o", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reproduce_presets_match_the_paper():
    assert [t.method for t in reproduce.TRIALS.values()] == ["gd"] * 5 + ["newton"] * 2 + ["bfgs", "dfp"]
    assert [(t.alpha, t.beta) for t in reproduce.TRIALS.values()] == [(100, 1)] * 3 + [(10, 1), (1, 1)] + \
        [(10, 1)] * 2 + [(10, 10)] * 2
    assert [o["step"] for o in reproduce.TRIALS[1].runs] == [0.1, 0.01, 0.5]
    assert reproduce.TRIALS[7].runs[0]["multiplier"] == 1000
    assert reproduce.trial_numbers("all") == list(range(1, 10))
    assert reproduce.trial_numbers("1,6") == [1, 6]


def test_cli_reproduce_small_scale(tmp_path, corpus_file):
    out = tmp_path / "rep"
    args = ["reproduce", "--trial", "4,8", "--scale", "0.0005", "--out", str(out), "--corpus", corpus_file, "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    assert "[20.6689, 5.4620, 0.3758]" in report  # the paper's trial 4 beside ours
    assert "trial4.png" in report and (out / "trial8.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert [t["number"] for t in summary["trials"]] == [4, 8]
    assert all("intensive" in run for t in summary["trials"] for run in t["runs"])
    # A second invocation reuses the finished runs instead of recomputing them.
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.jsonl")}
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.jsonl")} == before


def test_cli_ctrl_c_keeps_the_run_and_resume_finishes_it(tmp_path, corpus_file, monkeypatch):
    """Ctrl-C in the middle of `fastrnn tune`: exit 130, one line, records kept; --resume finishes it."""
    runner = CliRunner()
    args = ["tune", "--objective", "paper", "--method", "gd", "--step", "0.5", "--alpha", "5", "--corpus", corpus_file,
            "--seed", "4",
            "--record-every", "2", "--steps", "12", "--quiet", "--x0", "26.5,9.5,0.2"]
    whole = runner.invoke(cli, args + ["--out", str(tmp_path / "whole.jsonl")])
    assert whole.exit_code == 0, whole.output

    calls = {"n": 0}
    original = Objective.evaluate_many

    def interrupted(self, points):
        calls["n"] += 1
        if calls["n"] == 6:  # one batch per step: step 5 is interrupted
            raise KeyboardInterrupt
        return original(self, points)

    monkeypatch.setattr(Objective, "evaluate_many", interrupted)
    out = tmp_path / "run.jsonl"
    result = runner.invoke(cli, args + ["--out", str(out)])
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines() == [f"Error: interrupted; continue with --resume {out}"]
    kept = read_run(out)
    assert kept.records and kept.result is None
    monkeypatch.setattr(Objective, "evaluate_many", original)
    resumed = runner.invoke(cli, args + ["--resume", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout == whole.stdout


# -- what a library caller of tune() can rely on ----------------------------------------------------
def _budget_F(corpus):
    return Objective(corpus, alpha=ALPHA, beta=1, seed=3, threads=1, kind="paper")


def test_budget_counts_only_the_runs_training_and_leaves_the_objective_usable(small_corpus, tmp_path):
    F = _budget_F(small_corpus)
    F((30, 9, 0.1))
    F((41, 12, 0.1))  # spend before the run: 2 trainings
    before = F.counters.trainings_run
    first = tune(F, "random", seed=0, max_steps=50, budget_trainings=3, out=tmp_path / "a.jsonl")
    assert first.status == 5 and first.nit >= 1  # BUDGET, after steps of its own
    assert F.counters.trainings_run - before >= 3
    assert F.before_training is None
    F((22, 7, 0.1))  # the objective is not left behind a spent budget
    second = tune(F, "random", seed=1, max_steps=50, budget_trainings=3)  # the same budget, again
    assert second.status == 5 and second.nit >= 1
    settings = read_run(tmp_path / "a.jsonl").settings
    assert settings["counters_at_start"]["trainings_run"] == before
    # the finished run is finished for the budget it had, and a larger one continues it
    resumed = tune(_budget_F(small_corpus), "random", seed=0, max_steps=50, budget_trainings=3,
                   out=tmp_path / "a.jsonl", resume=True)
    assert resumed.nit == first.nit
    more = tune(_budget_F(small_corpus), "random", seed=0, max_steps=50, budget_trainings=6,
                out=tmp_path / "a.jsonl", resume=True)
    assert more.nit > first.nit
    run = read_run(tmp_path / "a.jsonl")
    assert run.result["counters"]["trainings_run"] - before >= 6


def test_tune_restores_the_objectives_own_hook(small_corpus):
    F = _budget_F(small_corpus)

    def own(specs):
        pass

    F.before_training = own
    tune(F, "random", seed=0, max_steps=2, budget_trainings=1)
    assert F.before_training is own


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_a_sampler_skips_a_batch_that_would_overrun_its_time_and_goes_on(small_corpus, tmp_path, monkeypatch, method):
    # A sampler stopped at the first batch predicted to overrun its time budget: one large network
    # drawn early ended a 120 s TPE run after 3 s. Now the batch is skipped, recorded as such, and
    # the sampler asks again.
    import time as time_module

    if method == "tpe":
        pytest.importorskip("optuna")
    tune(_heldout_F(small_corpus), method, seed=0, max_steps=1)  # kernels loaded before the clock is faked
    monkeypatch.setattr(time_module, "perf_counter", _FakeClock())
    out = tmp_path / "run.jsonl"
    tune(_heldout_F(small_corpus), method, seed=0, budget_seconds=30.0, out=out)
    records = read_run(out).records
    rules = [record["rule"] for record in records]
    assert "skipped" in rules and rules[-1] == method  # it trained on after skipping
    k = rules.index("skipped")
    skipped, before = records[k], records[k - 1]
    assert skipped["trial"]["fun"] is None and skipped["trial"]["skipped"] is True
    assert "the batch would take about" in skipped["note"]
    assert (skipped["x"], skipped["fun"]) == (before["x"], before["fun"])  # nothing trained, the best unchanged
    assert skipped["counters"]["trainings_run"] == before["counters"]["trainings_run"]
    assert all(trial.fun is not None for trial in run_trials(read_run(out)))  # reports list trained networks only
    message = read_run(out).result["message"]
    assert "training budget spent" in message

    # The skipped trial keeps its place in the history: resumed from just after it, the run asks
    # for the next trial what the uninterrupted run asked (TPE learns nothing from a skipped trial).
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:lines.index(next(line for line in lines if '"skipped"' in line)) + 1]))
    tune(_heldout_F(small_corpus), method, seed=0, budget_seconds=30.0, max_steps=k + 1, out=out, resume=True)
    assert read_run(out).records[k + 1]["trial"]["x"] == records[k + 1]["trial"]["x"]


@pytest.mark.parametrize("bad", [dict(stepp=0.1), dict(max_steps=-1), dict(record_every=0), dict(record_every=True),
                                 dict(gtol=float("nan")), dict(x0=[30, 10]), dict(x0=[[30, 10, 0.1]]),
                                 dict(x0=[float("nan"), 10, 0.1]), dict(x0=[-30, 10, 0.1])])
def test_a_refused_call_changes_no_file(small_corpus, tmp_path, bad):
    F = Objective(small_corpus, alpha=ALPHA, beta=1, threads=1)  # log space: x0 must be positive
    good = tmp_path / "good.jsonl"
    tune(F, "random", seed=0, max_steps=2, record_every=1, out=good)
    kept = good.read_bytes()
    arguments = {"seed": 0, "max_steps": 2, **bad}
    with pytest.raises(ValueError):
        tune(F, "random", out=good, overwrite=True, **arguments)
    assert good.read_bytes() == kept
    with pytest.raises(ValueError):
        tune(F, "random", out=tmp_path / "new.jsonl", **arguments)
    assert not (tmp_path / "new.jsonl").exists()


def test_a_finished_run_resumes_to_the_result_a_run_returns(small_corpus, tmp_path):
    from fastrnn.optimize.methods import Status

    fresh = tune(_budget_F(small_corpus), "gd", x0=[30.2, 9.1, 0.3], max_steps=2, record_every=1,
                 out=tmp_path / "d.jsonl", step=0.5)
    stored = tune(_budget_F(small_corpus), "gd", x0=[30.2, 9.1, 0.3], max_steps=2, record_every=1,
                  out=tmp_path / "d.jsonl", resume=True, step=0.5)
    assert isinstance(stored.status, Status) and stored.status == fresh.status
    assert stored.message == fresh.status.message
    assert [set(r) for r in stored.trajectory] == [set(r) for r in fresh.trajectory]
    assert stored.x.tolist() == fresh.x.tolist() and stored.fun == fresh.fun


def test_a_start_where_corner_differences_vanish_is_step_lost_not_converged(small_corpus):
    """At h = 1e300, h + 1 == h: every corner difference is 0, which is not a minimum."""
    from fastrnn.optimize.methods import Status

    F = Objective(small_corpus, alpha=ALPHA, beta=1, threads=1)
    assert F.steps_lost([1e300, 5, 0.1]) and F.steps_lost([20, 2.0**53, 0.1]) and not F.steps_lost([2.0**40, 5, 0.1])
    result = tune(F, "gd", x0=[1e300, 5, 0.1], max_steps=5)
    assert result.status == Status.STEP_LOST and result.nit == 0


def test_cli_gradient_refuses_a_point_where_corner_differences_vanish(corpus_file):
    result = CliRunner().invoke(cli, ["gradient", "--corpus", corpus_file, "--alpha", "2", "--heldout-chars", "1000",
                                      "--heldout-fraction", "0.5", "1e300", "5", "0.1"], prog_name="fastrnn")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "2**52" in lines[0]


def test_cli_resumes_a_run_from_another_directory(tmp_path, small_corpus, monkeypatch):
    """The run's text is found beside the run file, and the same text under another spelling of
    its path is the same run (its SHA-256 decides, not its name)."""
    run_dir = tmp_path / "mv"
    run_dir.mkdir()
    (run_dir / "c.txt").write_text(small_corpus.text, encoding="utf-8")
    common = ["--method", "random", "--alpha", "2", "--heldout-fraction", "0.5", "--heldout-chars", "1000", "-q"]
    monkeypatch.chdir(run_dir)
    first = CliRunner().invoke(cli, ["tune", "--corpus", "c.txt", "--steps", "2", "--out", "r.jsonl", *common],
                               prog_name="fastrnn")
    assert first.exit_code == 0, first.output
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--corpus", "mv/c.txt"], ["--corpus", str(run_dir / "c.txt")]):
        steps = str(3 + len(extra))
        result = CliRunner().invoke(cli, ["tune", "--resume", "mv/r.jsonl", "--steps", steps, "-q", *extra],
                                    prog_name="fastrnn")
        assert result.exit_code == 0, result.output
    assert read_run(run_dir / "r.jsonl").result["nit"] == 5


def _heldout_F(corpus):
    return Objective(corpus, beta=4, train_chars=600, heldout_chars=1000, threads=2)


@pytest.mark.parametrize("method", ["gd", "newton"])
def test_a_budget_does_not_start_a_step_it_cannot_finish(small_corpus, tmp_path, method):
    # issue 22, item 4: `--method gd --beta 4 --budget-trainings 48` trained 48 networks and
    # returned the start: step 1's 16 trainings were spent and the step dropped
    out = tmp_path / "run.jsonl"
    F = _heldout_F(small_corpus)
    tune(F, method, seed=0, max_steps=0)
    step_cost = F.counters.trainings_run  # step 0: the start's value and gradient
    budget = step_cost + step_cost // 2  # room for half a step more
    F = _heldout_F(small_corpus)
    result = tune(F, method, seed=0, budget_trainings=budget, out=out)
    assert result.status == 5 and result.nit == 0
    assert F.counters.trainings_run == step_cost  # nothing trained and thrown away
    assert f"{budget - step_cost} trainings left cannot pay for another step" in result.message
    run = read_run(out)
    assert run.result["counters"] == run.records[-1]["counters"]
    again = tune(_heldout_F(small_corpus), method, seed=0, budget_trainings=budget, out=out, resume=True)
    assert again.nit == 0 and again.message == result.message  # finished for this budget
    # a budget of two steps takes one, and resuming with it reaches the same answer
    more = tune(_heldout_F(small_corpus), method, seed=0, budget_trainings=2 * step_cost, max_steps=3, out=out,
                resume=True)
    straight = tune(_heldout_F(small_corpus), method, seed=0, budget_trainings=2 * step_cost, max_steps=3)
    assert more.nit == straight.nit >= 1
    assert more.x.tolist() == straight.x.tolist() and more.fun == straight.fun


class _FakeClock:
    """time.perf_counter advancing by ``tick`` seconds a call: a time budget tested without timing."""

    def __init__(self, tick=0.5):  # at least the calibration's 0.3 s, so it takes one measurement
        self.now, self.tick = 1000.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now


@pytest.mark.parametrize("method", ["random", "gd"])
def test_a_time_budget_ends_the_run_within_it_and_resumes_with_more(small_corpus, tmp_path, monkeypatch, method):
    import time as time_module

    monkeypatch.setattr(time_module, "perf_counter", _FakeClock())
    out = tmp_path / "run.jsonl"
    result = tune(_heldout_F(small_corpus), method, seed=0, budget_seconds=30.0, out=out)
    assert result.status == 5
    run = read_run(out)
    assert run.settings["budget_seconds"] == 30.0
    elapsed = [record["elapsed"] for record in run.records]
    # each batch is predicted from the speed measured so far: every batch ends within the budget, and
    # the run with it, up to the clock reads of bookkeeping after its last batch (5 of this clock's
    # 0.5 s: the fake clock charges every read, the calibration's too)
    assert elapsed == sorted(elapsed) and elapsed[-1] <= 30.0 and 0 < run.result["elapsed"] <= 30.0 + 5 * 0.5
    again = tune(_heldout_F(small_corpus), method, seed=0, budget_seconds=30.0, out=out, resume=True)
    assert again.nit == result.nit  # finished for this budget
    more = tune(_heldout_F(small_corpus), method, seed=0, budget_seconds=60.0, out=out, resume=True)
    assert more.nit > result.nit
    resumed = read_run(out)  # the earlier session's time counts
    assert resumed.records[-1]["elapsed"] <= 60.0 and 30.0 < resumed.result["elapsed"] <= 60.0 + 5 * 0.5


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf", "soon"])
def test_budget_seconds_must_be_a_positive_number(bad):
    result = CliRunner().invoke(cli, ["tune", "--budget-seconds", bad, "--steps", "1"])
    assert result.exit_code == 2 and "--budget-seconds" in result.output and "Traceback" not in result.output


# -- what a refused or new run does to the disk (audit: refusals, folders, stop reasons, messages) ------
def _small_F(corpus):
    return Objective(corpus, beta=1, train_chars=300, heldout_chars=1000, threads=2)


SMALL_HELDOUT = ["--train-chars", "300", "--heldout-chars", "1000", "--quiet"]


def test_a_start_the_budget_cannot_pay_for_leaves_the_disk_as_it_was(corpus_file, tmp_path):
    from helpers import assert_one_line_error, invoke

    # gd wrote its settings line before its start was refused: --force destroyed the earlier run,
    # and without --force a header-only file was left that the same command then called "exists"
    args = ["tune", "--method", "gd", "--corpus", corpus_file, *SMALL_HELDOUT, "--budget-trainings", "3"]
    out = tmp_path / "f.jsonl"
    out.write_text("an earlier run\n")
    assert_one_line_error(invoke([*args, "--out", str(out), "--force"], paper=False), "cannot pay for the start")
    assert out.read_text() == "an earlier run\n"
    fresh = tmp_path / "new" / "g.jsonl"
    for _ in range(2):  # the same refusal, again: nothing was left behind to say "exists"
        assert_one_line_error(invoke([*args, "--out", str(fresh)], paper=False), "cannot pay for the start")
        assert not (tmp_path / "new").exists()


def test_a_sampler_refused_at_its_start_changes_no_file(small_corpus, tmp_path):
    from fastrnn.optimize.methods import BudgetTooSmall

    good = tmp_path / "good.jsonl"
    good.write_text("an earlier run\n")
    with pytest.raises(BudgetTooSmall, match="cannot pay for the start"):  # the calibration alone takes longer
        tune(_small_F(small_corpus), "random", seed=0, budget_seconds=1e-3, out=good, overwrite=True)
    assert good.read_text() == "an earlier run\n"
    with pytest.raises(BudgetTooSmall):
        tune(_small_F(small_corpus), "random", seed=0, budget_seconds=1e-3, out=tmp_path / "new.jsonl")
    assert not (tmp_path / "new.jsonl").exists()


def test_a_new_run_file_is_written_once_its_start_is_done_and_locked_from_then(small_corpus, tmp_path):
    import fcntl

    out = tmp_path / "run.jsonl"
    out.write_text("an earlier run\n")
    seen = []

    def look(record):
        seen.append(out.read_text().splitlines()[0])
        with open(out, "rb") as other:
            with pytest.raises(OSError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)

    tune(_small_F(small_corpus), "random", seed=0, max_steps=1, out=out, overwrite=True, on_step=look)
    assert seen and all(json.loads(line)["type"] == "settings" for line in seen)
    assert read_run(out).result["nit"] == 1


def test_the_stop_reason_names_the_budget_that_stopped_the_run(small_corpus, tmp_path):
    from fastrnn.tuning.run_files import format_seconds

    # it said "the 998.8 seconds left are too few for the next batch" when the trainings ran out
    for seconds in (1000.0, 1e308):
        out = tmp_path / f"run{seconds:g}.jsonl"
        result = tune(_small_F(small_corpus), "random", seed=0, budget_trainings=4, budget_seconds=seconds, out=out,
                      batch=4)
        assert result.status == 5
        assert re.fullmatch(r"training budget spent \(\d+ trainings of a budget of 4\)", result.message), result.message
        assert read_run(out).result["message"] == result.message
    assert (format_seconds(998.84), format_seconds(1e308), format_seconds(2.5e6)) == ("998.8", "1e+308", "2.5e+06")


def test_the_stop_reason_names_a_time_budget_too(small_corpus, tmp_path, monkeypatch):
    import time as time_module

    tune(_small_F(small_corpus), "random", seed=0, max_steps=1)  # kernels loaded before the clock is faked
    monkeypatch.setattr(time_module, "perf_counter", _FakeClock())
    result = tune(_small_F(small_corpus), "random", seed=0, budget_trainings=1000, budget_seconds=30.0)
    assert result.status == 5 and "of a budget of 1,000" not in result.message
    assert re.search(r"\d seconds", result.message) and len(result.message) < 200, result.message


@pytest.mark.parametrize("method", ["gd", "random"])
def test_out_creates_its_folders_and_refuses_a_folder(corpus_file, tmp_path, method):
    from helpers import assert_one_line_error, invoke

    args = ["tune", "--method", method, "--corpus", corpus_file, "--steps", "1", *SMALL_HELDOUT]
    out = tmp_path / "a" / "b" / "run.jsonl"
    result = invoke([*args, "--out", str(out)], paper=False)  # as halving and train --save do
    assert result.exit_code == 0, result.output
    assert read_run(out).result is not None and "no network saved" not in result.stderr
    assert (tmp_path / "a" / "b" / "run.npz").exists()
    folder = str(tmp_path / "newdir") + os.sep
    assert_one_line_error(invoke([*args, "--out", folder], paper=False), "--out", "names a folder",
                          os.path.join(str(tmp_path / "newdir"), "run.jsonl"))
    assert not (tmp_path / "newdir").exists()
    blocked = tmp_path / "file.txt"
    blocked.write_text("not a folder")
    assert_one_line_error(invoke([*args, "--out", str(blocked / "run.jsonl")], paper=False), "--out", "is a file")
    assert blocked.read_text() == "not a folder"


@pytest.mark.parametrize("content", ["some notes\nin a text file\n", '{"a": 1}\n', "[1, 2]\n",
                                     '{"type": "record", "step": 0}\n'])
def test_resume_of_a_file_that_is_no_run_file_says_so(tmp_path, content):
    from helpers import assert_one_line_error, invoke

    path = tmp_path / "notes.jsonl"
    path.write_text(content)
    for method in ([], ["--method", "gd"], ["--method", "halving"]):
        result = invoke(["tune", "--resume", str(path), *method], paper=False)
        assert_one_line_error(result, "--resume", "is not a fastrnn run file", "give a run file")
        assert "damaged" not in result.stderr
    with pytest.raises(RunFileError, match="not a fastrnn run file"):
        read_run(path)
    assert path.read_text() == content


def test_resume_with_another_method_than_the_runs_names_both(tmp_path, corpus_file):
    from helpers import assert_one_line_error, invoke

    out = tmp_path / "gd.jsonl"
    assert invoke(["tune", "--objective", "paper", "--method", "gd", "--alpha", "2", "--x0", "26.5,9.5,0.2",
                   "--steps", "1", "--corpus", corpus_file, "--quiet", "--out", str(out)]).exit_code == 0
    before = out.read_bytes()
    # it said "settings line lacks run_id, halving; the file is damaged"
    assert_one_line_error(invoke(["tune", "--resume", str(out), "--method", "halving"]), "--method",
                          "halving conflicts with gd", "is a gd run file", "drop --method")
    assert out.read_bytes() == before
