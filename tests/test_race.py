"""`fastrnn compare --budget-seconds`: methods at equal wall-clock time, judged at the target length."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import click.testing
import pytest

from fastrnn.objective.settings import HeldoutSettings
from fastrnn.tuning import halving, race
from fastrnn.tuning.race import best_at, time_to_reach
from fastrnn.tuning.run_files import read_run

from helpers import assert_one_line_error, invoke, methods_available, synthetic_text


def race_args(corpus_file, out, *extra, budget="2.5", target="600", methods="random"):
    return ["compare", "--corpus", corpus_file, "--budget-seconds", budget, "--target-chars", target,
            "--methods", methods, "--repeats", "1", "--out", str(out), *extra]


def strict_json(text: str):
    """JSON as the standard has it: NaN and Infinity are not JSON."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


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
    for method in methods:  # a run file, or a refusal race.json explains (halving: 1.5 s is too short)
        refused = {entry["seed"] for entry in summary["methods"][method]["refused"]}
        for seed in range(2):
            assert f"{method}-seed{seed}.jsonl" in run_files or seed in refused, (method, seed)
    for name in run_files:  # every file named like a run holds one
        assert json.loads((out / name).read_text(encoding="utf-8").splitlines()[0])["type"] == "settings", name
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


def test_a_folder_holds_one_race_and_refuses_other_settings(tmp_path, corpus_file):
    out = tmp_path / "race"
    out.mkdir()
    # an earlier fastrnn wrote a refusal in a run file's place: no run, tried again
    (out / "random-seed0.jsonl").write_text('{"type": "refused", "why": "too short"}\n', encoding="utf-8")
    args = race_args(corpus_file, out, "--heldout-chars", "1000")
    first = invoke(args, paper=False)  # without --quiet: stderr is not a terminal here
    assert first.exit_code == 0, first.output
    assert first.stderr == ""  # no progress lines for a pipe or a file
    assert read_run(out / "random-seed0.jsonl").records  # a run now
    kept = {p.name: p.read_bytes() for p in out.iterdir()}
    other_corpus = tmp_path / "other.txt"
    other_corpus.write_text(synthetic_text(20_000, seed=5), encoding="utf-8")
    for changes, fragment in [({"--target-chars": "700"}, "--target-chars 600, not 700"),
                              ({"--budget-seconds": "3"}, "--budget-seconds 2.5, not 3.0"),
                              ({"--corpus": str(other_corpus)}, "--corpus"),
                              ({"--heldout-chars": "1200"}, "--heldout-chars 1000, not 1200"),
                              ({"--eta": "2", "--min-chars": "40"}, "--eta 3, not 2")]:
        changed = list(args)
        for flag, value in changes.items():
            if flag in changed:
                changed[changed.index(flag) + 1] = value
            else:
                changed += [flag, value]
        result = invoke(changed, paper=False)
        assert_one_line_error(result, "--out", fragment, "another --out folder")
        assert "--out file" not in result.stderr
        assert {p.name: p.read_bytes() for p in out.iterdir()} == kept  # refused before anything changed
    # a folder an earlier fastrnn made has no race-settings.json: the run files it would reuse are checked
    (out / race.SETTINGS_FILE).unlink()
    changed = list(args)
    changed[changed.index("--target-chars") + 1] = "700"
    assert_one_line_error(invoke(changed, paper=False), "--out", "train_chars 600 there, 700 here",
                          "another --out folder")
    again = invoke(args + ["--quiet"], paper=False)  # the same settings: the finished run is reused
    assert again.exit_code == 0, again.output
    assert (out / "random-seed0.jsonl").read_bytes() == kept["random-seed0.jsonl"]
    assert (out / race.SETTINGS_FILE).exists()


def test_a_budget_too_short_for_every_run_is_refused(tmp_path, corpus_file):
    out = tmp_path / "race"
    result = invoke(race_args(corpus_file, out, "--heldout-chars", "1000", budget="0.001"), paper=False)
    assert_one_line_error(result, "--budget-seconds", "is too short", "none of the race's 1 run",
                          "raise --budget-seconds")
    assert not (out / "race.md").exists() and not (out / "race.json").exists()
    assert not list(out.glob("*.jsonl"))  # a refusal is not a run file
    # nothing was kept, so the folder takes a larger budget (not refused as another race)
    again = invoke(race_args(corpus_file, out, "--heldout-chars", "1000", "--quiet"), paper=False)
    assert again.exit_code == 0, again.output
    assert strict_json((out / "race.json").read_text(encoding="utf-8"))["methods"]["random"]["found"] == 1


def test_a_race_with_some_runs_refused_reports_them(tmp_path, corpus_file, monkeypatch):
    """halving refuses (a fake: its refusal without the time it takes to decide it); random runs.
    The held-out part of the 20,000-character corpus is 2,000 characters, fewer than --heldout-chars
    asks (20,000 by default): the report says what networks read. Progress shows at a terminal."""
    calls = []

    def refusing_halve(F, settings, *, out, resume, budget_seconds, **_):
        calls.append(out)
        raise halving.BudgetError(f"--budget-seconds {budget_seconds:g} is too short for one network (fake)")

    monkeypatch.setattr(halving, "halve", refusing_halve)
    monkeypatch.setattr(click.testing._NamedTextIOWrapper, "isatty", lambda self: True, raising=False)
    out = tmp_path / "race"
    args = race_args(corpus_file, out, methods="random,halving")
    result = invoke(args, paper=False)
    assert result.exit_code == 0, result.output
    assert "random seed 0" in result.stderr and "halving seed 0" in result.stderr  # the bar, at a terminal
    summary = strict_json((out / "race.json").read_text(encoding="utf-8"))
    halving_runs = summary["methods"]["halving"]
    assert halving_runs["final_values"] == [None] and halving_runs["found"] == 0
    assert halving_runs["refused"] == [dict(seed=0, why="--budget-seconds 2.5 is too short for one network (fake)")]
    assert summary["methods"]["random"]["found"] == 1 and math.isfinite(summary["methods"]["random"]["final_values"][0])
    assert not (out / "halving-seed0.jsonl").exists()  # no file named like a run for a run that never was
    assert summary["heldout_chars"] == 2000
    report = (out / "race.md").read_text(encoding="utf-8")
    assert "networks read 2,000 held-out characters" in report
    assert "| halving | 0/1 |" in report and "| random | 1/1 |" in report
    assert "* halving seed 0: --budget-seconds 2.5 is too short for one network (fake)" in report
    quiet = invoke(args + ["--quiet"], paper=False)  # the same race again: the refused run is tried again
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == "" and len(calls) == 2


def test_race_json_has_no_nan_and_old_summaries_still_report(small_corpus):
    settings = race.RaceSettings(objective=HeldoutSettings(corpus=small_corpus, train_chars=600, heldout_chars=1000),
                                 budget_seconds=10.0, min_chars=40)
    curves = {"tpe/0": ([1.0, 5.0], [2.5, 2.0]), "tpe/1": ([2.0], [2.2]), "random/0": ([3.0], [2.4]),
              "random/1": ([], [])}
    costs = {key: dict(wall=10.0, cpu=15.0) for key in curves}
    reference = SimpleNamespace(best=SimpleNamespace(order=3, smoothing="Kneser-Ney", nats=2.3))
    summary = race._summary(settings, ["tpe", "random"], 2, curves, costs, {"random/1": "too short"}, reference,
                            "tpe", "")
    text = json.dumps(summary, allow_nan=False)  # raises on NaN or infinity
    random_runs = strict_json(text)["methods"]["random"]
    assert random_runs["final_values"] == [2.4, None] and random_runs["found"] == 1
    assert random_runs["time_to_reference"] is None and random_runs["reached_reference"] == 0  # never: null
    assert summary["reference_value"] == pytest.approx(2.1) and summary["methods"]["tpe"]["reached_reference"] == 1
    report = race.race_report(json.loads(text))
    assert "| random | 1/2 |" in report and "never (median)" in report and "* random seed 1: too short" in report
    # race.json as an earlier fastrnn wrote it: Infinity and NaN, no counts or refusals
    old = json.loads(text)
    for runs in old["methods"].values():
        for key in ("refused", "found", "reached_reference"):
            del runs[key]
    old["methods"]["random"].update(time_to_reference=math.inf, final_values=[2.4, math.nan])
    assert "| random | 1/2 |" in race.race_report(old) and "never (median)" in race.race_report(old)


def test_compare_at_equal_characters_names_the_folder(tmp_path, corpus_file):
    out = tmp_path / "cmp"
    args = ["compare", "--corpus", corpus_file, "--methods", "random", "--repeats", "1", "--budget-chars", "4800",
            "--train-chars", "600", "--heldout-chars", "1000", "--final-factor", "1", "--out", str(out), "--quiet"]
    assert invoke(args, paper=False).exit_code == 0
    other = list(args)
    other[other.index("--train-chars") + 1] = "700"
    result = invoke(other, paper=False)
    assert_one_line_error(result, "--out", "train_chars 600 there, 700 here", "another --out folder")
    assert "--out file" not in result.stderr


def test_the_reports_kept_in_docs_are_strict_json():
    """Readers other than Python's (jq, JavaScript) refuse NaN and Infinity: the published
    summaries and run files hold null there, as fastrnn now writes them."""
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs"
    summaries, runs = sorted(docs.rglob("*.json")), sorted(docs.rglob("*.jsonl"))
    assert summaries and runs, "docs/ keeps the race summaries and run files"
    for path in summaries:
        strict_json(path.read_text(encoding="utf-8"))
    for path in runs:
        for line in path.read_text(encoding="utf-8").splitlines():
            strict_json(line)
