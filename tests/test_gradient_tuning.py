"""Issue 21: what makes the gradient methods find good networks on held-out text.

The rules (span differences, start trials, snapped iterates, backtracking with restarts) against
independent expectations on plain functions; on the RNN objective, that they train whole networks
only, resume exactly and respect budgets; and, pinned, that span differences cut the gradient's
spread over seeds, the measurement docs/COMPARISON.md reports.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from fastrnn.cli.main import cli

from fastrnn.objective.function import Objective
from fastrnn.optimize.calculus import span_value_and_gradient
from fastrnn.optimize.methods import Status, minimize, resolve_options
from fastrnn.optimize.samplers import trial_rng
from fastrnn.optimize.steppers import NO_DECREASE_RULE, RESTART_RULE
from fastrnn.tuning.run_files import read_run
from fastrnn.tuning.runner import HELDOUT_SETTINGS, tune

from helpers import BatchRecorder

SLOPE = np.array([0.3, -1.2, 2.5])


def linear(x):
    return float(SLOPE @ np.asarray(x))


def snap_first_two(x):
    return np.array([round(x[0]), round(x[1]), x[2]])


class Bowl:
    """A quadratic bowl in a box, with a grid (whole first two coordinates), as the RNN objective."""

    bounds = np.array([[0.0, 10.0], [0.0, 10.0], [-3.0, 3.0]])
    minimum = np.array([6.0, 3.0, 0.5])

    def __call__(self, x):
        d = np.asarray(x, dtype=float) - self.minimum
        return float(d @ d)

    def snap(self, x):
        return snap_first_two(np.clip(x, self.bounds[:, 0], self.bounds[:, 1]))


# --- span differences -------------------------------------------------------------------


def test_span_differences_of_a_linear_function_are_its_slope_even_on_a_grid():
    # the divisor is the distance between the points evaluated, so snapping moves the difference
    # but does not bias it
    value, gradient = span_value_and_gradient(linear, [10.0, 7.0, -1.0], 0.7, snap_first_two)
    assert value == linear([10.0, 7.0, -1.0])
    np.testing.assert_allclose(gradient, SLOPE, rtol=1e-12)


def test_span_differences_of_a_quadratic_are_exact_central_differences():
    bowl = Bowl()
    x = np.array([2.0, 8.0, -1.0])
    _, gradient = span_value_and_gradient(bowl, x, 0.5)
    np.testing.assert_allclose(gradient, 2 * (x - bowl.minimum), rtol=1e-12)


def test_span_differences_stay_in_the_box_and_are_one_sided_at_its_edge():
    recorder = BatchRecorder(linear)
    box = np.array([[0.0, 10.0], [0.0, 10.0], [-3.0, 3.0]])
    _, gradient = span_value_and_gradient(recorder, [10.0, 0.0, 2.9], 0.5, snap_first_two, box)
    (points,) = recorder.batches  # one batch
    assert all(np.all(p >= box[:, 0]) and np.all(p <= box[:, 1]) for p in points)
    np.testing.assert_allclose(gradient, SLOPE, rtol=1e-12)


def test_a_span_that_stays_in_one_grid_cell_gives_zero_and_says_so():
    diagnostics = {}
    _, gradient = span_value_and_gradient(linear, [10.0, 7.0, 0.0], 0.2, snap_first_two, diagnostics=diagnostics)
    assert gradient[:2].tolist() == [0.0, 0.0] and gradient[2] == pytest.approx(SLOPE[2])
    assert diagnostics["span"][:2] == [0.0, 0.0]


def test_span_needs_a_number_not_auto():
    with pytest.raises(ValueError, match="span.*needs a number as grad_step"):
        resolve_options("gd", {"grad_method": "span", "grad_step": "auto"})


# --- start trials, snapped iterates, backtracking ---------------------------------------


def test_the_start_is_the_best_of_x0_and_the_trials_drawn_in_one_batch():
    recorder = BatchRecorder(Bowl())
    recorder.bounds, recorder.snap = Bowl.bounds, Bowl().snap
    x0 = np.array([9.0, 9.0, 2.0])
    result = minimize(recorder, x0, "gd", seed=3, max_steps=0, start_trials=6, grad_method="span", grad_step=1.0)
    first = recorder.batches[0]
    assert len(first) == 7 and first[0].tolist() == x0.tolist()
    # trial i is uniform in the box from trial_rng(seed, i), moved onto the grid, as a sampler's
    for i, point in enumerate(first[1:], start=1):
        assert point.tolist() == Bowl().snap(trial_rng(3, i).uniform(Bowl.bounds[:, 0], Bowl.bounds[:, 1])).tolist()
    trials = result.trajectory[0]["trials"]
    assert [t["x"] for t in trials] == [p.tolist() for p in first]
    best = min(trials, key=lambda t: t["fun"])
    assert result.x.tolist() == best["x"] and result.fun == best["fun"]
    assert "best of 7 trials" in result.trajectory[0]["note"]


def test_start_trials_need_a_box():
    with pytest.raises(ValueError, match="samples a box"):
        minimize(linear, [1.0, 2.0, 3.0], "gd", max_steps=0, start_trials=2)


@pytest.mark.parametrize("method", ["gd", "bfgs", "newton"])
def test_snapped_iterates_lie_on_the_grid(method):
    result = minimize(Bowl(), [0.3, 9.6, 2.2], method, max_steps=6, snap=True, grad_method="span", grad_step=1.0)
    for record in result.trajectory:
        assert record["x"][:2] == [round(v) for v in record["x"][:2]]


def test_backtracking_gd_only_takes_steps_that_lower_f_and_converges_when_none_does():
    # a normalised step of 4 overshoots a bowl whose minimum is 1 away: halvings find descent
    result = minimize(Bowl(), [7.0, 3.0, 0.5], "gd", max_steps=200, step=4.0, backtrack=3, min_step=1e-3,
                      grad_method="central", grad_step=1e-6)
    values = [record["fun"] for record in result.trajectory]
    assert all(b <= a for a, b in zip(values, values[1:]))
    taken = [r for r in result.trajectory if r["rule"] == "gd"]
    assert taken and all(r["fun"] < p["fun"] for p, r in zip(result.trajectory, result.trajectory[1:])
                         if r["rule"] == "gd")
    assert result.status == Status.CONVERGED and result.fun < 1e-6


class OffGridBowl(Bowl):
    minimum = np.array([6.4, 3.0, 0.5])


def test_backtracking_gd_lengthens_its_steps_while_they_succeed():
    # from 9.9 away on a round bowl every step along the gradient succeeds: a small --step grows,
    # doubling up to one unit of the log space (MAX_GROWN_STEP)
    result = minimize(Bowl(), [0.0, 10.0, -3.0], "gd", max_steps=6, step=0.1, backtrack=3,
                      grad_method="central", grad_step=1e-6)
    xs = np.array([record["x"] for record in result.trajectory])
    lengths = np.linalg.norm(np.diff(xs, axis=0), axis=1)
    np.testing.assert_allclose(lengths, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0], rtol=1e-9)


def test_without_restarts_a_stalled_gd_converges_and_says_why():
    # the gradient points from 6 towards 6.4, but every step it allows rounds back to 6
    result = minimize(OffGridBowl(), [6.0, 3.0, 0.5], "gd", max_steps=50, step=0.5, backtrack=2, snap=True,
                      grad_method="span", grad_step=1.0, min_step=0.01)
    assert result.status == Status.CONVERGED and result.trajectory[-1]["state"]["stalled"]
    assert any(r["rule"] == NO_DECREASE_RULE and "no lower value in 3 tries" in r["note"] for r in result.trajectory)


def test_a_stalled_gd_with_restart_trials_restarts_from_the_best_of_new_trials():
    recorder = BatchRecorder(OffGridBowl())
    recorder.bounds, recorder.snap = Bowl.bounds, Bowl().snap
    result = minimize(recorder, [6.0, 3.0, 0.5], "gd", seed=1, max_steps=12, step=0.5, backtrack=1, snap=True,
                      grad_method="span", grad_step=1.0, min_step=0.2, start_trials=2, restart_trials=4)
    restarts = [r for r in result.trajectory if r["rule"] == RESTART_RULE]
    assert restarts and result.status == Status.MAX_STEPS
    for record in restarts:
        assert len(record["trials"]) == 5  # the iterate and 4 new points
        assert record["fun"] == min(t["fun"] for t in record["trials"])
    # every restart draws new points: trial indices never repeat
    drawn = [tuple(t["x"]) for r in result.trajectory for t in r.get("trials", [])[1:]]
    assert result.trajectory[-1]["state"]["trials_drawn"] == 2 + 4 * len(restarts) >= len(set(drawn))


def test_a_backtracking_run_with_restarts_resumes_to_the_uninterrupted_result():
    options = dict(step=0.5, backtrack=1, snap=True, grad_method="span", grad_step=1.0, min_step=0.2,
                   start_trials=2, restart_trials=3)
    full = minimize(OffGridBowl(), [2.0, 3.0, 0.5], "gd", seed=1, max_steps=12, **options)
    first = minimize(OffGridBowl(), [2.0, 3.0, 0.5], "gd", seed=1, max_steps=5, **options)
    resumed = minimize(OffGridBowl(), method="gd", seed=1, max_steps=12, state=json.loads(json.dumps(first.state)),
                       **options)
    assert first.trajectory + resumed.trajectory[1:] == full.trajectory


# --- on the RNN objective ----------------------------------------------------------------


def _F(corpus, **settings):
    return Objective(corpus, train_chars=600, heldout_chars=1000, threads=2, **settings)


def test_span_gradients_of_the_rnn_objective_train_whole_networks_only(small_corpus):
    F = _F(small_corpus)
    view = F.log_space()
    z = view.space.from_point([40, 10, 0.1])
    view.value_and_gradient(z, 0.5, "span")
    assert F.counters.trainings_run == 7  # the point and two whole networks per coordinate
    assert all(key[-4] == int(key[-4]) and key[-3] == int(key[-3]) for key in F._memo)


def test_span_differences_see_the_trend_that_one_unit_differences_drown(small_corpus):
    # the measurement of docs/COMPARISON.md ("Differences that see the trend"), pinned small: the
    # spread over seeds of dF/dlog2(h) from the corners (h, h + 1) against a span of 0.5 octaves
    corners, spans = [], []
    for seed in range(5):
        view = _F(small_corpus, seed=seed).log_space()
        z = view.space.from_point([60, 10, 0.1])
        corners.append(view.value_and_gradient(z, 0.05, "forward")[1][0])
        spans.append(view.value_and_gradient(z, 0.5, "span")[1][0])
    assert np.std(spans) < np.std(corners) / 5


def test_the_held_out_gradient_methods_use_the_new_rules():
    for method in ("gd", "bfgs", "dfp", "newton"):
        settings = HELDOUT_SETTINGS[method]
        assert settings["grad_method"] == "span" and settings["snap"] and settings["start_trials"] > 0
    assert HELDOUT_SETTINGS["gd"]["backtrack"] > 0 and HELDOUT_SETTINGS["gd"]["restart_trials"] > 0


def test_a_held_out_gd_run_resumes_to_the_uninterrupted_result(small_corpus, tmp_path):
    out = tmp_path / "run.jsonl"
    options = HELDOUT_SETTINGS["gd"]
    straight = tune(_F(small_corpus), "gd", seed=2, max_steps=6, **options)
    tune(_F(small_corpus), "gd", seed=2, max_steps=3, out=out, record_every=1, **options)
    resumed = tune(_F(small_corpus), "gd", seed=2, max_steps=6, out=out, resume=True, record_every=1, **options)
    assert resumed.x.tolist() == straight.x.tolist() and resumed.fun == straight.fun
    records = read_run(out).records
    assert [r["x"] for r in records] == [r["x"] for r in straight.trajectory]
    assert any(r["rule"] == "gd-restart" for r in records)  # a restart resumed too
    for record in records:  # trials in (h, s, l), with their z
        for trial in record.get("trials", []):
            assert trial["x"][:2] == [round(v) for v in trial["x"][:2]] and len(trial["z"]) == 3


def test_a_budget_charges_the_start_trials_once_not_to_every_step(small_corpus):
    options = HELDOUT_SETTINGS["gd"]
    F = _F(small_corpus)
    tune(F, "gd", seed=0, max_steps=0, **options)
    step0 = F.counters.trainings_run
    trials = options["start_trials"]
    budget = step0 + 8  # more than a step's least cost (the gradient's 6 networks and one trial point)
    F = _F(small_corpus)
    result = tune(F, "gd", seed=0, budget_trainings=budget, **options)
    assert result.nit >= 1, f"step 0 cost {step0} (with {trials} start trials); the budget left room for a step"


@pytest.mark.parametrize("args, message", [
    (["--start-trials", "-1"], "--start-trials"),
    (["--snap", "maybe"], "--snap"),
    (["--backtrack", "1.5"], "--backtrack"),
    (["--grad-method", "span", "--grad-step", "auto"], "needs a number as grad_step"),
])
def test_bad_gradient_options_are_one_line_and_exit_2(args, message):
    result = CliRunner().invoke(cli, ["tune", "--method", "gd", "--steps", "1", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_fastrnn_gradient_shows_the_span_gradient_the_methods_use(corpus_file):
    args = ["gradient", "40", "10", "0.1", "--corpus", corpus_file, "--train-chars", "600", "--heldout-chars", "1000"]
    result = CliRunner().invoke(cli, [*args, "--method", "span"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["step"] == 0.5 and shown["counters"]["trainings_run"] == 7
    assert len(shown["diagnostics"]["span"]) == 3 and min(shown["diagnostics"]["span"]) > 0.9
    F = _F(corpus_file)
    view = F.log_space()
    _, expected = view.value_and_gradient(view.space.from_point([40, 10, 0.1]), 0.5, "span")
    assert shown["gradient_in_space"] == expected.tolist()


@pytest.mark.parametrize("args, message", [
    (["--method", "span", "--step", "auto"], "need a number as --step"),
    (["--method", "span", "--objective", "paper"], "held-out objective or --space log"),
])
def test_fastrnn_gradient_refuses_span_where_it_means_nothing(args, message):
    result = CliRunner().invoke(cli, ["gradient", "40", "10", "0.1", *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_a_budget_that_cannot_pay_for_the_start_is_one_line_and_exit_2(corpus_file, tmp_path):
    # the start (its point and 8 trials, one batch) cannot fit in 0.01 s: said so, not a traceback
    args = ["tune", "--method", "gd", "--corpus", corpus_file, "--train-chars", "600", "--heldout-chars", "1000",
            "--budget-seconds", "0.01", "--out", str(tmp_path / "run.jsonl")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "cannot pay for the start" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
