"""`fastrnn compare --budget-seconds`: methods at equal wall-clock time, judged at the target length."""

from __future__ import annotations

import json
import math

import pytest

from fastrnn.tuning.race import best_at, time_to_reach

from helpers import assert_one_line_error, invoke, methods_available


def test_curve_arithmetic():
    curve = ([1.0, 2.0, 4.0], [3.0, 2.5, 2.0])
    assert math.isnan(best_at(curve, 0.5)) and best_at(curve, 2.0) == 2.5 and best_at(curve, 10) == 2.0
    assert time_to_reach(curve, 2.5) == 2.0 and time_to_reach(curve, 1.0) == math.inf


def test_a_race_reports_every_method_and_reuses_finished_runs(tmp_path, corpus_file):
    methods = ["random", "gd", "halving"] + (["tpe", "optuna-hyperband"] if "tpe" in methods_available() else [])
    out = tmp_path / "race"
    args = ["compare", "--corpus", corpus_file, "--budget-seconds", "1.5", "--target-chars", "600", "--heldout-chars",
            "1000", "--methods", ",".join(methods), "--repeats", "2", "--out", str(out), "--quiet"]
    result = invoke(args, paper=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "race.json").read_text(encoding="utf-8"))
    assert set(summary["methods"]) == set(methods) and summary["target_chars"] == 600
    assert summary["ngram"]["nats"] < math.log(summary.get("vocab_size", 1e9))
    report = (out / "race.md").read_text(encoding="utf-8")
    for method in methods:
        assert f"| {method} |" in report
        assert len(summary["methods"][method]["final_values"]) == 2
    assert (out / "race.png").stat().st_size > 0
    run_files = sorted(p.name for p in out.glob("*-seed*.jsonl"))
    assert len(run_files) == 2 * len(methods)
    before = {name: (out / name).read_bytes() for name in run_files}
    again = invoke(args, paper=False)  # finished runs are reused, not run again
    assert again.exit_code == 0, again.output
    assert {name: (out / name).read_bytes() for name in run_files} == before


def test_a_race_gives_halving_networks_at_the_target(tmp_path, corpus_file):
    """The race above gives each method 1.5 s, too short for halving (refused there); with 8 s it
    trains networks to the target and is judged by them."""
    out = tmp_path / "race"
    args = ["compare", "--corpus", corpus_file, "--budget-seconds", "8", "--target-chars", "600", "--heldout-chars",
            "1000", "--methods", "halving", "--repeats", "1", "--out", str(out), "--quiet"]
    result = invoke(args, paper=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "race.json").read_text(encoding="utf-8"))
    final, = summary["methods"]["halving"]["final_values"]
    run = [json.loads(line) for line in (out / "halving-seed0.jsonl").read_text(encoding="utf-8").splitlines()]
    tops = [line["fun"] for line in run if line["type"] == "record" and line["chars"] == 600]
    assert run[-1]["type"] == "result" and run[-1]["chars"] == 600
    assert tops and final == min(tops) and math.isfinite(final)


@pytest.mark.parametrize("extra, flag", [
    (["--budget-chars", "1000"], "--budget-chars"),           # two budgets
    (["--train-chars", "600"], "--train-chars"),               # a race judges at --target-chars
    (["--min-chars", "5000", "--target-chars", "600"], "--min-chars"),
    (["--methods", "sgd"], "--methods"),
])
def test_race_bad_input_is_one_line(tmp_path, extra, flag):
    args = ["compare", "--budget-seconds", "1", "--out", str(tmp_path / "r"), "--quiet", *extra]
    assert_one_line_error(invoke(args, paper=False), flag)
