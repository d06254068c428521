"""Issue 11, run files: resume from the file's settings, torn lines, finished runs, existing files,
locks, malformed lines, missing folders and reproduce folders made with other settings."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys

import pytest

from fastrnn.objective.function import Objective
from fastrnn.tuning.runner import RunFileError, read_run, tune

from helpers import assert_one_line_error, invoke


def _start(corpus_file, out, steps="4", *extra):
    return ["tune", "--method", "gd", "--step", "0.5", "--alpha", "4", "--beta", "2", "--corpus", corpus_file,
            "--seed", "2", "--record-every", "2", "--x0", "26.5,9.5,0.2", "--steps", steps, "--quiet",
            "--out", str(out), *extra]


def test_resume_takes_its_settings_from_the_file(tmp_path, corpus_file):
    whole = invoke(_start(corpus_file, tmp_path / "whole.jsonl", "9"))
    assert whole.exit_code == 0, whole.output
    part = tmp_path / "part.jsonl"
    assert invoke(_start(corpus_file, part, "4")).exit_code == 0
    resumed = invoke(["tune", "--resume", str(part), "--steps", "9", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout == whole.stdout
    assert read_run(part).result["x"] == read_run(tmp_path / "whole.jsonl").result["x"]


def test_resume_with_nothing_but_the_file_continues_a_stopped_run(tmp_path, corpus_file, monkeypatch):
    out = tmp_path / "run.jsonl"
    whole = invoke(_start(corpus_file, tmp_path / "whole.jsonl", "8"))
    calls = {"n": 0}
    original = Objective.evaluate_many

    def interrupted(self, points):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, points)

    monkeypatch.setattr(Objective, "evaluate_many", interrupted)
    stopped = invoke(_start(corpus_file, out, "8"))
    assert stopped.exit_code == 130
    monkeypatch.setattr(Objective, "evaluate_many", original)
    resumed = invoke(["tune", "--resume", str(out)])  # no --steps, --corpus, --alpha ...: all from the file
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout == whole.stdout


@pytest.mark.parametrize("extra,fragments", [
    (["--alpha", "5"], ["--alpha", "5 conflicts with 4"]),
    (["--step", "0.1"], ["--step", "0.1 conflicts with 0.5"]),
    (["--method", "bfgs"], ["--method", "bfgs conflicts with gd"]),
    (["--noise", "fresh"], ["--noise", "fresh conflicts with common"]),
    (["--seed", "3"], ["--seed", "3 conflicts with 2"]),
    (["--multiplier", "2"], ["--multiplier", "does not apply to the gd run"]),
])
def test_resume_refuses_an_explicit_option_that_conflicts(tmp_path, corpus_file, extra, fragments):
    out = tmp_path / "run.jsonl"
    assert invoke(_start(corpus_file, out, "2")).exit_code == 0
    before = out.read_bytes()
    assert_one_line_error(invoke(["tune", "--resume", str(out), "--steps", "4", *extra]), *fragments)
    assert out.read_bytes() == before
    # The same values as stored are fine.
    agreed = invoke(["tune", "--resume", str(out), "--steps", "3", "--alpha", "4", "--step", "0.5", "--quiet"])
    assert agreed.exit_code == 0, agreed.output


def test_resume_refuses_another_corpus(tmp_path, corpus_file):
    out = tmp_path / "run.jsonl"
    assert invoke(_start(corpus_file, out, "2")).exit_code == 0
    other = tmp_path / "other.txt"
    other.write_text("something else entirely, and long enough for sequences\n" * 20)
    assert_one_line_error(invoke(["tune", "--resume", str(out), "--corpus", str(other)]), "--corpus", "conflicts")
    with open(corpus_file, "a") as f:
        f.write("changed")
    assert_one_line_error(invoke(["tune", "--resume", str(out)]), "--corpus", "not the text")


def test_torn_last_line_is_cut_before_resuming(tmp_path, corpus_file):
    out = tmp_path / "run.jsonl"
    whole = invoke(_start(corpus_file, tmp_path / "whole.jsonl", "8"))
    assert invoke(_start(corpus_file, out, "8")).exit_code == 0
    lines = out.read_text().splitlines(keepends=True)
    # Killed while writing the third record: two records survive, then half a line.
    out.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    resumed = invoke(["tune", "--resume", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout == whole.stdout
    entries = [json.loads(line) for line in out.read_text().splitlines()]  # every line is whole JSON
    assert [e["type"] for e in entries].count("result") == 1
    assert invoke(["plot", str(out), "-o", str(tmp_path / "fig.png")]).exit_code == 0


def test_complete_last_line_without_its_newline_is_kept(tmp_path, small_corpus):
    path = tmp_path / "run.jsonl"
    F = Objective(small_corpus, alpha=3, kind="paper")
    tune(F, "gd", x0=[25.5, 8.5, 0.1], max_steps=6, record_every=1, out=path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:4]))  # record of step 2 complete, its newline lost
    assert read_run(path).records[-1]["step"] == 2
    tune(Objective(small_corpus, alpha=3, kind="paper"), "gd", x0=[25.5, 8.5, 0.1], max_steps=6, record_every=1, out=path,
         resume=True)
    steps = [r["step"] for r in read_run(path).records]
    assert steps == list(range(7))


def test_finished_run_is_reported_not_continued(tmp_path, corpus_file):
    out = tmp_path / "run.jsonl"
    first = invoke(_start(corpus_file, out, "3"))
    assert first.exit_code == 0
    before = out.read_bytes()
    again = invoke(["tune", "--resume", str(out)])
    assert again.exit_code == 0, again.output
    assert again.stdout == first.stdout
    assert again.stderr.startswith(f"{out} is finished: maximum number of steps reached after 3 steps")
    assert out.read_bytes() == before  # no second result line
    # A larger step limit continues it.
    longer = invoke(["tune", "--resume", str(out), "--steps", "5", "--quiet"])
    assert longer.exit_code == 0
    assert read_run(out).result["nit"] == 5


def test_library_resume_of_a_finished_run_appends_nothing(tmp_path, small_corpus):
    path = tmp_path / "run.jsonl"
    done = tune(Objective(small_corpus, alpha=3, kind="paper"), "gd", x0=[25.5, 8.5, 0.1], max_steps=3, out=path)
    before = path.read_bytes()
    again = tune(Objective(small_corpus, alpha=3, kind="paper"), "gd", x0=[25.5, 8.5, 0.1], max_steps=3, out=path, resume=True)
    assert path.read_bytes() == before
    assert again.x.tolist() == done.x.tolist() and again.nit == 3 and again.status == done.status


def test_out_refuses_an_existing_file_unless_forced(tmp_path, corpus_file):
    out = tmp_path / "run.jsonl"
    out.write_text("precious\n")
    assert_one_line_error(invoke(_start(corpus_file, out, "2")), "--out",
                           "exists; use --resume to continue it or --force to overwrite it")
    assert out.read_text() == "precious\n"
    forced = invoke(_start(corpus_file, out, "2", "--force"))
    assert forced.exit_code == 0, forced.output
    assert read_run(out).result["nit"] == 2
    assert_one_line_error(invoke(["tune", "--resume", str(out), "--force"]), "--force")


def test_a_file_in_use_by_another_process_is_refused(tmp_path, corpus_file, small_corpus):
    out = tmp_path / "run.jsonl"
    assert invoke(_start(corpus_file, out, "2")).exit_code == 0
    before = out.read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'rb'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('locked', flush=True); time.sleep(60)", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert_one_line_error(invoke(["tune", "--resume", str(out), "--steps", "4"]), "--resume",
                               "in use by another process")
        assert_one_line_error(invoke(_start(corpus_file, out, "2", "--force")), "--out", "in use by another process")
    finally:
        holder.kill()
        holder.wait()
    assert out.read_bytes() == before


def test_the_lock_is_held_while_the_run_writes(tmp_path, small_corpus):
    path = tmp_path / "run.jsonl"
    seen = []

    def try_lock(record):
        with open(path, "rb") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append("free")
            except OSError:
                seen.append("held")

    tune(Objective(small_corpus, alpha=2, kind="paper"), "gd", x0=[25.5, 8.5, 0.1], max_steps=2, out=path, on_step=try_lock)
    assert seen == ["held"] * 3
    with open(path, "rb") as other:  # released at the end
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _malformed(lines, index, replacement):
    return lines[:index] + [replacement] + lines[index + 1:]


@pytest.mark.parametrize("damage,fragment", [
    (lambda ls: _malformed(ls, 1, "123"), "line 2 is not a run file entry"),
    (lambda ls: _malformed(ls, 1, '"text"'), "line 2 is not a run file entry"),
    (lambda ls: _malformed(ls, 2, json.dumps({k: v for k, v in json.loads(ls[2]).items() if k != "state"})),
     "line 3: its record has no 'state'"),
    (lambda ls: _malformed(ls, 2, json.dumps({**json.loads(ls[2]), "counters": {"bogus": 1}})),
     "line 3: unknown counter(s) 'bogus'"),
    (lambda ls: _malformed(ls, 2, json.dumps({**json.loads(ls[2]), "state": {"method": "gd"}})),
     "line 3: its optimizer state has no 'nit'"),
    (lambda ls: _malformed(ls, 2, json.dumps({**json.loads(ls[2]), "x": "oops"})), "line 3: its record has a malformed 'x'"),
    (lambda ls: _malformed(ls, 0, json.dumps({**json.loads(ls[0]), "objective": None})),
     "line 1: its settings has a malformed 'objective'"),
    (lambda ls: ls[:2] + ["{not json"] + ls[2:], "line 3 is not JSON"),
])
def test_wrong_shaped_lines_exit_2_with_the_line_number(tmp_path, corpus_file, damage, fragment):
    out = tmp_path / "run.jsonl"
    assert invoke(_start(corpus_file, out, "4", "--record-every", "1")).exit_code == 0
    lines = out.read_text().splitlines()
    out.write_text("\n".join(damage(lines)) + "\n")
    assert_one_line_error(invoke(["tune", "--resume", str(out), "--steps", "6"]), "--resume", fragment)
    assert_one_line_error(invoke(["plot", str(out), "-o", str(tmp_path / "f.png")]), "RUN.jsonl", fragment)
    with pytest.raises(RunFileError, match="damaged"):
        read_run(out)


@pytest.mark.parametrize("trial,fine", [
    ({"x": [30.0, 10.0, 0.1], "fun": None, "skipped": True}, True),  # skipped before training (a time budget)
    ({"x": [30.0, 10.0, 0.1], "fun": None}, False),  # a value lost, not a skipped trial
    ({"x": [30.0, 10.0, 0.1], "fun": 2.5, "skipped": True}, True),  # the value is what counts
])
def test_a_sampler_record_holds_a_value_or_says_its_trial_was_skipped(tmp_path, corpus_file, trial, fine):
    out = tmp_path / "run.jsonl"
    args = ["tune", "--method", "random", "--alpha", "4", "--corpus", corpus_file, "--steps", "2", "--quiet",
            "--out", str(out)]
    assert invoke(args).exit_code == 0
    lines = out.read_text().splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "trial": trial})
    out.write_text("\n".join(lines) + "\n")
    if fine:
        read_run(out)
    else:
        with pytest.raises(RunFileError, match="line 3: its record has a malformed 'trial'"):
            read_run(out)


def test_missing_directory(tmp_path, corpus_file):
    out = tmp_path / "no" / "such" / "run.jsonl"
    # a new run's folders are made when it writes its first line (as a halving run's and train --save's)
    assert invoke(_start(corpus_file, out, "2")).exit_code == 0
    assert read_run(out).records
    assert_one_line_error(invoke(["plot", str(tmp_path / "no" / "run.jsonl"), "-o", "x.png"]), "does not exist")


def test_reproduce_into_a_folder_made_with_other_settings(tmp_path, corpus_file):
    out = tmp_path / "rep"
    args = ["reproduce", "--trial", "4", "--scale", "0.0005", "--out", str(out), "--corpus", corpus_file, "--quiet",
            "--no-intensive"]
    assert invoke(args).exit_code == 0
    assert_one_line_error(invoke(args + ["--noise", "fresh"]), "cannot resume", "objective")
    assert_one_line_error(invoke(args[:4] + ["0.0001"] + args[5:]), "more than the")
    (out / "summary.json").write_text("{not json")
    assert_one_line_error(invoke(args), "summary.json")


def test_reproduce_reports_a_damaged_run_file(tmp_path, corpus_file):
    out = tmp_path / "rep"
    args = ["reproduce", "--trial", "4", "--scale", "0.0005", "--out", str(out), "--corpus", corpus_file, "--quiet",
            "--no-intensive"]
    assert invoke(args).exit_code == 0
    run = next(out.glob("trial4-*.jsonl"))
    run.write_text("123\n" + run.read_text())
    assert_one_line_error(invoke(args), "line 1")



def test_a_failed_write_is_a_run_file_error_that_keeps_the_records():
    from fastrnn.tuning.runner import RunFileError, _write

    class FullDisk:
        def write(self, data):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

    with pytest.raises(RunFileError, match="No space left on device; the records written so far are kept"):
        _write(FullDisk(), {"type": "record"})


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_cli_a_full_disk_is_one_line_not_a_traceback(corpus_file):
    from click.testing import CliRunner
    from fastrnn.cli.main import cli

    with open("/dev/full", "w") as full:  # stdout on a full disk
        done = subprocess.run([sys.executable, "-c", "from fastrnn.cli.main import main; main()", "corpus", "default"],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "No space left on device" in lines[0], done.stderr
    result = CliRunner().invoke(cli, ["tune", "--method", "random", "--corpus", corpus_file, "--alpha", "2",
                                      "--heldout-fraction", "0.5", "--heldout-chars", "1000", "--steps", "1", "--out",
                                      "/dev/full", "--force", "-q"],
                                prog_name="fastrnn")
    assert result.exit_code == 2 and "cannot write run file '/dev/full'" in result.stderr


@pytest.mark.parametrize("method", ["gd", "bfgs"])
def test_an_interrupted_run_keeps_its_last_finished_step_whatever_record_every(tmp_path, small_corpus, monkeypatch,
                                                                               method):
    def F():
        return Objective(small_corpus, alpha=3, kind="paper", threads=1)

    x0 = [25.5, 8.5, 0.1]
    calls = {"n": 0, "stop_at": None}
    original = Objective.evaluate_many

    def counted(self, points):
        calls["n"] += 1
        if calls["n"] == calls["stop_at"]:
            raise KeyboardInterrupt
        return original(self, points)

    monkeypatch.setattr(Objective, "evaluate_many", counted)
    calls_after_step = {}
    whole = tune(F(), method, x0=x0, max_steps=6, record_every=100, out=tmp_path / "whole.jsonl",
                 on_step=lambda record: calls_after_step.setdefault(record["step"], calls["n"]))
    assert whole.nit >= 3
    calls.update(n=0, stop_at=calls_after_step[2] + 1)  # in step 3, after steps 1 and 2 finished
    part = tmp_path / "part.jsonl"
    with pytest.raises(KeyboardInterrupt):
        tune(F(), method, x0=x0, max_steps=6, record_every=100, out=part)
    assert [record["step"] for record in read_run(part).records] == [0, 2]  # without the fix: [0]
    calls["stop_at"] = None
    resumed = tune(F(), method, x0=x0, max_steps=6, record_every=100, out=part, resume=True)
    assert resumed.x.tolist() == whole.x.tolist() and resumed.fun == whole.fun and resumed.nit == whole.nit


def test_a_model_file_given_as_a_run_file_is_named_as_such(tmp_path, corpus_file):
    model = tmp_path / "m.npz"
    assert invoke(["train", "--hidden", "5", "--seq", "3", "--steps", "2", "--corpus", corpus_file,
                   "--save", str(model), "--quiet"]).exit_code == 0
    with pytest.raises(RunFileError, match="is a model file .* not a run file"):
        read_run(model)
    # `plot` draws a model's learning curve (issue 20), and refuses the run files' figures for it
    assert invoke(["plot", str(model), "-o", str(tmp_path / "f.png")]).exit_code == 0
    assert_one_line_error(invoke(["plot", str(model), "--kind", "trials", "-o", str(tmp_path / "f.png")]),
                          "--kind", "learning curve")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs a folder that refuses new files (Linux /proc)")
def test_a_folder_that_refuses_new_files_is_not_called_a_missing_file(corpus_file):
    result = invoke(_start(corpus_file, "/proc/x.jsonl"))
    assert_one_line_error(result, "cannot create run file", "/proc", "choose another folder")
    assert "does not exist" not in result.stderr


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGTERM") or sys.platform == "win32", reason="POSIX signals")
def test_sigterm_ends_a_run_like_ctrl_c_keeping_its_last_finished_step(tmp_path, corpus_file):
    import signal
    import time

    out = tmp_path / "run.jsonl"
    args = _start(corpus_file, out, "1000000")
    args[args.index("--record-every") + 1] = "100000"
    args[1:1] = ["--objective", "paper"]  # _start's flags (--alpha) are the paper's objective's
    process = subprocess.Popen([sys.executable, "-m", "fastrnn.cli.main", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (out.exists() and '"record"' in out.read_text()):
            time.sleep(0.2)  # step 0 is written once the first evaluation is done: the run is under way
        time.sleep(5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()  # a failure leaves no process behind
    assert process.returncode == 130 and "interrupted; continue with --resume" in stderr, stderr
    steps = [record["step"] for record in read_run(out).records]
    assert steps[0] == 0 and len(steps) == 2 and steps[1] > 0  # without the handler: [0] (and no exit 130)
