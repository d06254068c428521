"""Issue 17: F's settings as one value, samplers that ask, run files that grow by one trial a step."""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from fastrnn.cli.main import cli

from fastrnn.objective import settings as settings_module
from fastrnn.objective.function import Objective
from fastrnn.objective.settings import (
    Flag,
    HeldoutSettings,
    PaperSettings,
    differences,
    flags,
    make_settings,
    setting,
    settings_from_record,
)
from fastrnn.optimize.samplers import RandomSampler, history_from_records, trial_rng
from fastrnn.tuning.runner import RunFileError, read_run, tune
from fastrnn.tuning.trials import trials as run_trials

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the settings value -------------------------------------------------------------------------------


def test_keywords_and_the_value_build_the_same_objective(small_corpus):
    by_keywords = Objective(small_corpus, alpha=3, beta=2, kind="paper", seed=4)
    by_value = Objective(PaperSettings(corpus=small_corpus, alpha=3, beta=2, seed=4))
    assert by_keywords.definition == by_value.definition
    assert by_keywords.settings() == by_value.settings()
    assert by_keywords((24.5, 7.5, 0.1)) == by_value((24.5, 7.5, 0.1))


def test_a_record_reads_back_to_the_same_settings(small_corpus):
    for F in (Objective(small_corpus, alpha=3, kind="paper"), Objective(small_corpus, train_chars=400, heldout_chars=1000)):
        assert differences(settings_from_record(json.loads(json.dumps(F.settings()))), F.definition) == []


def test_differences_name_every_field_that_differs(small_corpus):
    a = HeldoutSettings(corpus=small_corpus, beta=2, train_chars=400, heldout_chars=1000)
    b = dataclasses.replace(a, beta=3, noise="fresh")
    assert differences(a, b) == [("beta", 2, 3), ("noise", "common", "fresh")]
    assert differences(a, PaperSettings(corpus=small_corpus)) == [("kind", "heldout", "paper")]


def test_a_setting_of_the_other_kind_is_refused_unless_it_is_the_default():
    with pytest.raises(ValueError, match="train_chars belongs to the held-out objective"):
        make_settings("paper", train_chars=500)
    assert make_settings("paper", heldout_chars=20_000).alpha == 100  # the other kind's default: harmless


def test_a_new_field_is_a_flag_a_record_entry_and_a_resume_check_with_nothing_else_written(monkeypatch):
    """Adding a setting is one dataclass field: the command line's flags, the run file's settings line
    and the resume comparison all come from the fields."""

    @dataclasses.dataclass(frozen=True)
    class Wider(HeldoutSettings):
        warmup_chars: int = setting(0, Flag("--warmup-chars", "count", "heldout: characters read before scoring.",
                                           minimum=0))

    monkeypatch.setitem(settings_module.SETTINGS_CLASSES, "heldout", Wider)
    assert flags()["warmup_chars"][0].name == "--warmup-chars"
    a = Wider(corpus=None, warmup_chars=5)
    record = a.record()
    assert record["warmup_chars"] == 5
    read_back = settings_from_record(record)
    assert isinstance(read_back, Wider) and read_back.warmup_chars == 5
    assert differences(read_back, dataclasses.replace(a, warmup_chars=7)) == [("warmup_chars", 5, 7)]


def test_the_command_line_flags_are_the_settings_fields():
    """Every flagged field is an option of the commands that define F, and nothing else is."""
    runner = CliRunner()
    help_text = runner.invoke(cli, ["objective", "--help"]).output
    for name, (flag, _, _) in flags().items():
        assert flag.name in help_text, name
    assert "--objective" in help_text


# -- samplers in the ask/tell shape --------------------------------------------------------------------


def test_a_sampler_asked_for_k_points_gives_the_next_k_trials():
    box = np.array([[0.0, 1.0], [2.0, 3.0]])
    sampler = RandomSampler(box, {})
    history = [([0.5, 2.5], 1.0)]
    two = sampler.ask(history, [trial_rng(7, 1), trial_rng(7, 2)])
    one = sampler.ask(history, [trial_rng(7, 1)])
    assert np.array_equal(two[0], one[0]) and not np.array_equal(two[0], two[1])


def test_tpe_leaves_skipped_trials_out_of_its_model():
    # a skipped trial (value None: its batch would have overrun a time budget) was never trained:
    # it is a failed trial to Optuna, so TPE proposes as if it had not been asked
    pytest.importorskip("optuna")
    from fastrnn.optimize.samplers import TPESampler

    box = np.array([[0.0, 1.0], [0.0, 1.0]])
    rng = np.random.default_rng(5)
    history = [(list(rng.uniform(0, 1, 2)), float(v)) for v in rng.uniform(0, 1, 15)]
    with_skipped = history[:7] + [([0.5, 0.5], None), ([0.9, 0.1], None)] + history[7:]

    def ask(history):
        sampler = TPESampler(box, {"startup_trials": 10})
        return [point.tolist() for point in sampler.ask(history, [trial_rng(0, 20 + j) for j in range(3)])], sampler

    (plain, _), (skipped, sampler) = ask(history), ask(with_skipped)
    assert skipped == plain
    assert [t.state.name for t in sampler._study.trials[:17]].count("FAIL") == 2


def test_tpe_keeps_one_study_and_rebuilds_it_from_the_history(small_corpus):
    pytest.importorskip("optuna")
    from fastrnn.optimize.samplers import TPESampler

    box = np.array([[0.0, 1.0], [0.0, 1.0]])
    rng = np.random.default_rng(0)
    history = [(list(rng.uniform(0, 1, 2)), float(v)) for v in rng.uniform(0, 1, 6)]
    running = TPESampler(box, {"startup_trials": 2})
    asked = []
    for n in range(3, 7):  # asked step by step, one study
        asked.append(running.ask(history[:n], [trial_rng(1, n)])[0])
    study = running._study
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 6  # each trial added once
    rebuilt = TPESampler(box, {"startup_trials": 2}).ask(history[:6], [trial_rng(1, 6)])[0]
    assert np.array_equal(rebuilt, asked[-1])  # a resumed run proposes what the running one did


class _Stub:
    """A cheap F through the protocol: the objective's bookkeeping, a smooth bowl for its values."""

    def __init__(self, F):
        self.F = F

    def __call__(self, points):
        points = np.asarray(points, dtype=float)
        return ((np.log2(points[:, 0]) - 7) ** 2 + (np.log10(points[:, 2]) + 2) ** 2).astype(float)


def _stub_objective(corpus):
    F = Objective(corpus, train_chars=400, heldout_chars=1000)
    F.evaluate_many = _Stub(F)
    return F


def test_run_files_grow_by_a_constant_per_trial(small_corpus, tmp_path):
    sizes = {}
    for trials in (100, 1000):
        path = tmp_path / f"random-{trials}.jsonl"
        tune(_stub_objective(small_corpus), "random", seed=0, max_steps=trials, out=path)
        run = read_run(path)
        assert len(run.records) == trials + 1  # one record per trial, whatever --record-every says
        assert len(history_from_records(run.records)) == trials + 1
        sizes[trials] = os.path.getsize(path) / trials
    assert sizes[1000] <= 1.05 * sizes[100], sizes  # bytes per trial do not grow with the trials


# -- format 1 -----------------------------------------------------------------------------------------


def _as_format_1(path, out):
    """A format-2 sampler run written as format 1 wrote it: every trial in every record's state,
    a zero gradient, the backend in the objective's settings."""
    lines = [json.loads(line) for line in open(path, encoding="utf-8")]
    settings = lines[0]
    settings["format_version"] = 1
    settings["objective"]["backend"] = settings.pop("evaluation")["backend"]
    trials = []
    for entry in lines[1:]:
        if entry["type"] == "record":
            trial = entry.pop("trial")
            trials.append([trial.get("z", trial["x"]), trial["fun"]])
            entry["gradient_norm"] = 0.0
            entry["state"].update(gradient=[0.0, 0.0, 0.0], trials=[list(t) for t in trials])
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(entry) + "\n" for entry in lines)


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_a_format_1_sampler_run_is_read_resumed_and_plotted(small_corpus, tmp_path, method):
    if method == "tpe":
        pytest.importorskip("optuna")
    options = {"startup_trials": 2} if method == "tpe" else {}

    def F():
        return Objective(small_corpus, train_chars=400, heldout_chars=1000)

    whole = tune(F(), method, seed=2, max_steps=6, **options)
    tune(F(), method, seed=2, max_steps=3, out=tmp_path / "new.jsonl", **options)
    old = tmp_path / "old.jsonl"
    _as_format_1(tmp_path / "new.jsonl", old)
    run = read_run(old)
    assert run.settings["format_version"] == 1 and len(history_from_records(run.records)) == 4
    resumed = tune(F(), method, seed=2, max_steps=6, out=old, resume=True, **options)
    assert resumed.x.tolist() == whole.x.tolist() and resumed.fun == whole.fun and resumed.nit == 6
    assert len(history_from_records(read_run(old).records)) == 7
    result = CliRunner().invoke(cli, ["plot", str(old), "-o", str(tmp_path / "old.png")])
    assert result.exit_code == 0, result.output
    # the trials of a format-1 file (in the search space's coordinates) are those it was made from
    first = [(t.step, t.x, t.fun) for t in run_trials(read_run(tmp_path / "new.jsonl"))]
    assert [(t.step, t.x, t.fun) for t in run_trials(read_run(old))][:len(first)] == first


def test_every_committed_run_file_is_read_with_its_settings():
    paths = glob.glob(os.path.join(ROOT, "docs", "*", "*.jsonl")) + glob.glob(os.path.join(ROOT, "docs", "*", "*",
                                                                                            "*.jsonl"))
    paths = [path for path in paths if not path.endswith("-intensive.jsonl")]  # gradients, not run files
    assert paths
    for path in paths:
        run = read_run(path)
        settings = settings_from_record(run.settings["objective"])
        assert settings.kind == run.settings["objective"].get("kind", "paper")
        if run.settings["method"] in ("random", "tpe"):  # the start, then `batch` trials a step
            batch = run.settings["options"].get("batch", 1)
            assert len(history_from_records(run.records)) == 1 + batch * run.records[-1]["step"]


def test_a_newer_format_is_refused_in_one_line(small_corpus, tmp_path):
    path = tmp_path / "run.jsonl"
    tune(Objective(small_corpus, alpha=2, kind="paper"), "gd", x0=[25, 8, 0.1], max_steps=1, out=path)
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace('"format_version": 2', '"format_version": 3')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RunFileError, match="format_version"):
        read_run(path)
