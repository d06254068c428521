"""minimize(): convergence, pinned counts, every rule and status, resumption, batching."""

import json

import numpy as np
import pytest
import scipy.optimize

from fastrnn.objective.paper import PAPER_BOUNDS, random_start
from fastrnn.optimize.methods import (
    METHOD_TABLE,
    SKIPPED_UPDATE_NOTE,
    BFGSUpdate,
    DFPUpdate,
    OptimizeResult,
    Status,
    minimize,
)
from fastrnn.optimize.samplers import history_from_records

from helpers import BatchRecorder, methods_available

A = np.array([[3.0, 1.0], [1.0, 2.0]])
QUADRATIC_MINIMUM = np.array([1.0, -2.0])
ROSENBROCK_START = [-1.2, 1.0]

# Textbook step settings where the paper's are not the point of a test:
# Armijo c = 1e-4, and central differences so FD noise stays below gtol.
STANDARD_LINE_SEARCH = {"c": 1e-4}
ACCURATE_GRADIENT = {"grad_method": "central", "grad_step": 1e-6}


def quadratic(x):
    d = x - QUADRATIC_MINIMUM
    return 0.5 * d @ A @ d


def double_well(x):
    """Concave in x[0] for |x[0]| < 1/sqrt(3): curvature s.y < 0 there."""
    return x[0] ** 4 - 2 * x[0] ** 2 + x[1] ** 2


SANE_MINIMUM = np.array([300.0, 20.0, 0.1])


def rosen(x):
    """Rosenbrock's function in plain multiplications: scipy's ``rosen`` uses ``** 2.0``, whose
    rounding changed in numpy 2.x, and the pinned counts below follow every rounding."""
    return sum(100.0 * (b - a * a) * (b - a * a) + (1.0 - a) * (1.0 - a) for a, b in zip(x[:-1], x[1:]))


class PaperLike:
    """A smooth stand-in loss inside the paper's sanity box, the paper's penalty outside.

    Penalty per absurd hyperparameter (its sanityChecks): 1e6 + (value - centre)^2
    with centres 410, 25, 0.5 and ranges [20, 800], [5, 40], [1e-4, 1]. Like the RNN
    objective, it starts where the paper does and offers the paper's box as its bounds.
    """

    bounds = PAPER_BOUNDS

    def __call__(self, x):
        h, s, l = x
        loss = 1e-4 * (h - 300) ** 2 + 1e-2 * (s - 20) ** 2 + (l - 0.1) ** 2
        for value, (low, high), centre in zip(x, ((20, 800), (5, 40), (1e-4, 1)), (410, 25, 0.5)):
            if value < low or value > high:
                loss += 1e6 + (value - centre) ** 2
        return loss

    @staticmethod
    def initial_point(seed):
        return random_start(seed)


paper_like = PaperLike()


def inside_sane_box(x):
    return all(low <= v <= high for v, (low, high) in zip(x, ((20, 800), (5, 40), (1e-4, 1))))


def rule_counts(result):
    counts = {}
    for record in result.trajectory:
        counts[record["rule"]] = counts.get(record["rule"], 0) + 1
    return counts


# --- convergence and pinned counts -------------------------------------------


@pytest.mark.parametrize(
    "method, options, nit, nfev",
    [
        ("newton", {}, 2, 24),  # 2 steps + start, 8 distinct points a batch (n=2)
        ("bfgs", STANDARD_LINE_SEARCH, 5, 19),
        ("dfp", STANDARD_LINE_SEARCH, 5, 19),
    ],
)
def test_quadratic_converges_with_pinned_counts(method, options, nit, nfev):
    result = minimize(quadratic, [4.0, 3.0], method, **options)
    assert result.status == 0 and result.success and result.message == "converged"
    np.testing.assert_allclose(result.x, QUADRATIC_MINIMUM, atol=1e-4)
    assert (result.nit, result.nfev) == (nit, nfev)


def test_gradient_descent_oscillates_within_a_step_of_the_minimum():
    # Normalised steps never shrink, so |g| < gtol is out of reach: it ends
    # zig-zagging at the step size.
    step = 0.1
    result = minimize(quadratic, [4.0, 3.0], "gd", max_steps=200, step=step)
    assert result.status == 1 and result.message == "maximum number of steps reached"
    assert (result.nit, result.nfev) == (200, 603)  # one batch of n + 1 per point
    assert np.linalg.norm(result.x - QUADRATIC_MINIMUM) < step
    lengths = np.linalg.norm(np.diff([r["x"] for r in result.trajectory], axis=0), axis=1)
    np.testing.assert_allclose(lengths, step)


def test_gradient_descent_converges_when_it_lands_inside_gtol():
    result = minimize(lambda x: x @ x, [0.35, 0.0], "gd", gtol=0.2)
    assert result.status == 0 and result.nit == 3
    # The forward-difference bias h = 1e-8 in g tilts the steps slightly.
    np.testing.assert_allclose(result.x, [0.05, 0.0], atol=1e-8)


def test_newton_on_rosenbrock():
    result = minimize(rosen, ROSENBROCK_START, "newton")
    assert result.status == 0
    # About 9 steps; the exact count follows the last bits of the BLAS in use (its kernels
    # depend on the CPU), so the test asks for quadratic convergence's few steps, not a number.
    assert 6 <= result.nit <= 12 and result.nfev <= 10 * result.nit
    # gtol 1e-4 on a valley whose flat direction has curvature about 0.4 stops within ~2e-5.
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=2e-5)


def test_bfgs_on_rosenbrock_matches_scipy():
    reference = scipy.optimize.minimize(rosen, ROSENBROCK_START, method="BFGS")
    result = minimize(rosen, ROSENBROCK_START, "bfgs", **STANDARD_LINE_SEARCH, **ACCURATE_GRADIENT)
    assert result.status == 0
    assert result.nit <= 40 and result.nfev <= 8 * result.nit  # scipy: 33 iterations (CPU-dependent digits)
    # scipy stops at its gtol = 1e-5 about 1e-5 short of (1, 1).
    np.testing.assert_allclose(result.x, reference.x, atol=3e-5)
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=1e-5)


@pytest.mark.parametrize("method", ["bfgs", "dfp"])
def test_quasi_newton_with_the_papers_settings_on_rosenbrock(method):
    # c = 0.99 only accepts alpha <= 2(1 - c) = 0.02 of a Newton step on a
    # quadratic model, so progress is slow but steady: about 940 steps of about 9 evaluations
    # (the exact counts follow the BLAS's last bits, which depend on the CPU).
    result = minimize(rosen, ROSENBROCK_START, method)
    assert result.status == 0
    assert 800 <= result.nit <= 1100 and 8 * result.nit <= result.nfev <= 10 * result.nit
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=2e-4)
    reference = scipy.optimize.minimize(rosen, ROSENBROCK_START, method="BFGS")
    np.testing.assert_allclose(result.x, reference.x, atol=2e-4)


def test_quadratic_matches_scipy():
    reference = scipy.optimize.minimize(quadratic, [4.0, 3.0], method="BFGS")
    for method in ("newton", "bfgs", "dfp"):
        options = {} if method == "newton" else STANDARD_LINE_SEARCH
        result = minimize(quadratic, [4.0, 3.0], method, **options)
        np.testing.assert_allclose(result.x, reference.x, atol=1e-4)


# --- the paper's setting: x0 in [0, 10]^3, penalty outside the sane box ------


def test_default_start_is_uniform_in_0_10_cubed_from_the_seed():
    result = minimize(paper_like, method="gd", seed=7, max_steps=0)
    expected = np.random.default_rng(7).uniform(0, 10, size=3)
    np.testing.assert_array_equal(result.trajectory[0]["x"], expected)
    assert result.nit == 0 and result.status == 1


@pytest.mark.parametrize("method", ["gd", "bfgs", "dfp"])
@pytest.mark.parametrize("seed", [0, 1])
def test_each_method_moves_into_the_sane_box(method, seed):
    result = minimize(paper_like, method=method, seed=seed, max_steps=300)
    assert not inside_sane_box(result.trajectory[0]["x"])
    assert inside_sane_box(result.x)
    assert result.fun < 20


@pytest.mark.parametrize("seed, nit", [(0, 3), (1, 2), (2, 2)])
def test_newton_with_the_stencil_hessian_jumps_to_the_minimum(seed, nit):
    # Outside the box the objective is quadratic, so a Newton step lands in
    # the box; the next lands (nearly) on the smooth minimum.
    result = minimize(paper_like, method="newton", seed=seed, hessian_method="stencil")
    assert (result.status, result.nit, result.nfev) == (0, nit, 22 * (nit + 1))
    np.testing.assert_allclose(result.x, SANE_MINIMUM, rtol=1e-6)


def test_newton_with_the_papers_recursive_hessian_is_unstable():
    # The h = 1e-6 Hessian's rounding (eps*|f|/h^2: ~200 near the 1e6 penalty,
    # ~2e-3 inside the box, above the hidden-size curvature 2e-4) makes
    # det(H) == 0 often and Newton steps wild -- as in the paper's trial 6,
    # it reaches the box and a Newton step then makes the hidden size negative.
    result = minimize(paper_like, method="newton", seed=0, max_steps=30)
    assert (result.nit, result.nfev) == (30, 13 * 31)
    assert rule_counts(result) == {"start": 1, "gd-fallback": 19, "newton": 11}
    records = result.trajectory
    assert inside_sane_box(records[5]["x"])
    assert records[6]["rule"] == "newton" and records[6]["x"][0] < 0
    for before, after in zip(records, records[1:]):
        if after["rule"] == "gd-fallback":
            assert np.linalg.norm(np.subtract(after["x"], before["x"])) == pytest.approx(10.0)


# --- every rule and note appears ----------------------------------------------


def test_newton_falls_back_on_a_singular_hessian():
    flat_in_y = lambda x: (x[0] - 1.0) ** 2  # noqa: E731
    result = minimize(flat_in_y, [3.0, 0.0], "newton", max_steps=1, fallback_step=0.5)
    assert result.trajectory[1]["rule"] == "gd-fallback"
    np.testing.assert_allclose(result.x, [2.5, 0.0], atol=1e-6)


def test_quasi_newton_falls_back_out_of_range():
    result = minimize(paper_like, method="bfgs", seed=0, max_steps=3)
    assert [r["rule"] for r in result.trajectory] == ["start"] + ["gd-fallback-out-of-range"] * 3
    steps = np.diff([r["x"] for r in result.trajectory], axis=0)
    np.testing.assert_allclose(np.linalg.norm(steps, axis=1), 1.0)  # fallback_step
    # Nothing but the gradients is evaluated: no line search outside the box.
    assert result.nfev == 4 * 4


def test_bounds_auto_takes_the_problems_box_and_nothing_without_one():
    plain = lambda x: paper_like(x)  # noqa: E731 - the same function without .bounds
    with_box = minimize(paper_like, random_start(0), "bfgs", max_steps=1)
    without_box = minimize(plain, random_start(0), "bfgs", max_steps=1)
    assert with_box.trajectory[1]["rule"] == "gd-fallback-out-of-range"
    assert without_box.trajectory[1]["rule"] == "bfgs"


def test_without_x0_the_problem_says_where_to_start():
    with pytest.raises(ValueError, match="give x0"):
        minimize(lambda x: x @ x, method="gd")
    result = minimize(paper_like, method="gd", seed=3, max_steps=0)
    np.testing.assert_array_equal(result.x, random_start(3))


def test_statuses_are_an_int_enum_with_the_run_file_values():
    assert [int(s) for s in Status] == [0, 1, 2, 3, 4, 5]
    result = minimize(quadratic, [4.0, 3.0], "gd", max_steps=1)
    assert result.status is Status.MAX_STEPS and result.status == 1
    assert json.dumps(result.status) == "1" and result.message == Status.MAX_STEPS.message


def test_bounds_none_disables_the_range_fallback():
    result = minimize(paper_like, method="bfgs", seed=0, max_steps=3, bounds=None)
    assert "gd-fallback-out-of-range" not in rule_counts(result)


def test_quasi_newton_falls_back_on_a_short_step():
    # Near the minimum c = 0.99 keeps alpha p below min_step before |g| < gtol.
    result = minimize(quadratic, [4.0, 3.0], "bfgs", max_steps=800)
    short = [r for r in result.trajectory if r["rule"] == "gd-fallback-short-step"]
    assert [r["step"] for r in short] == [727]
    assert rule_counts(result)["bfgs"] == 799


def test_min_step_triggers_the_short_step_fallback():
    result = minimize(quadratic, [4.0, 3.0], "dfp", max_steps=2, min_step=100.0)
    assert [r["rule"] for r in result.trajectory[1:]] == ["gd-fallback-short-step"] * 2


@pytest.mark.parametrize("method", ["bfgs", "dfp"])
def test_curvature_update_is_skipped_where_s_dot_y_is_not_positive(method):
    result = minimize(double_well, [0.1, 1.0], method, max_steps=5)
    record = result.trajectory[2]
    assert record["rule"] == method and record["note"] == SKIPPED_UPDATE_NOTE
    np.testing.assert_array_equal(
        record["state"]["inverse_hessian"], result.trajectory[1]["state"]["inverse_hessian"]
    )


def test_line_search_failure_is_noted():
    # With max_halvings = 1 only alpha = 1 is tried; c = 0.99 rejects it here.
    result = minimize(quadratic, [4.0, 3.0], "bfgs", max_steps=1, max_halvings=1)
    record = result.trajectory[1]
    assert record["rule"] == "bfgs"
    assert record["note"] == "line search: Armijo condition not met in 1 tries"


def test_rules_name_their_method():
    assert {r["rule"] for r in minimize(quadratic, [4.0, 3.0], "gd", max_steps=3).trajectory} == {"start", "gd"}
    assert rule_counts(minimize(quadratic, [4.0, 3.0], "newton"))["newton"] == 2
    assert rule_counts(minimize(quadratic, [4.0, 3.0], "dfp", max_steps=3))["dfp"] == 3


# --- statuses -------------------------------------------------------------------


def test_non_finite_value_stops_with_status_2():
    cliff = lambda x: -x[0] if x[0] < 1 else np.nan  # noqa: E731
    result = minimize(cliff, [0.95], "gd")
    assert result.status == 2 and result.message == "non-finite objective value or gradient"
    assert result.nit == 1 and result.trajectory[-1]["step"] == 1


def test_callback_stop_with_status_3():
    seen = []

    def callback(record):
        seen.append(record["step"])
        return record["step"] == 3

    result = minimize(quadratic, [4.0, 3.0], "gd", callback=callback)
    assert (result.status, result.message, result.nit) == (3, "stopped by callback", 3)
    assert seen == [0, 1, 2, 3]


def test_callback_at_the_start_stops_before_any_step():
    result = minimize(quadratic, [4.0, 3.0], "bfgs", callback=lambda record: True)
    assert (result.status, result.nit, len(result.trajectory)) == (3, 0, 1)


# --- records ------------------------------------------------------------------------


@pytest.mark.parametrize("record_every, steps", [(1, list(range(11))), (3, [0, 3, 6, 9, 10]), (5, [0, 5, 10])])
def test_record_every(record_every, steps):
    seen = []
    result = minimize(
        quadratic, [4.0, 3.0], "gd", max_steps=10, record_every=record_every, callback=seen.append
    )
    assert [r["step"] for r in result.trajectory] == steps
    assert seen == result.trajectory


def test_records_are_plain_json():
    for method in methods_available():
        result = minimize(paper_like, method=method, seed=0, max_steps=3)
        for record in result.trajectory:
            assert json.loads(json.dumps(record)) == record
            # a gradient method records its gradient's norm; a sampler the trial it made instead
            own = "trial" if METHOD_TABLE[method].is_sampler else "gradient_norm"
            assert set(record) == {"step", "x", "fun", own, "rule", "note", "nfev", "state"}
        assert json.loads(json.dumps(result.state)) == result.state
        assert result.trajectory[-1]["state"] == result.state
        assert result.trajectory[-1]["nfev"] == result.nfev


def test_result_is_frozen():
    result = minimize(quadratic, [4.0, 3.0], "gd", max_steps=1)
    assert isinstance(result, OptimizeResult)
    with pytest.raises(AttributeError):
        result.nit = 5


# --- resumption ----------------------------------------------------------------------


@pytest.mark.parametrize("method, function, x0", [
    (method, function, x0) for method in methods_available() for function, x0 in [(paper_like, None), (rosen, ROSENBROCK_START)]
    # the samplers need a box, which rosen has not (test_samplers_need_a_box)
    if not METHOD_TABLE[method].is_sampler or hasattr(function, "bounds")
])
def test_resumed_run_matches_an_uninterrupted_one(method, function, x0):
    full = minimize(function, x0, method, seed=0, max_steps=10)
    first = minimize(function, x0, method, seed=0, max_steps=4)
    saved = json.loads(json.dumps(first.state))  # as it would be written to disk
    # a sampler's history lives in its records, one trial each; a state carries none
    history = history_from_records(json.loads(json.dumps(first.trajectory)))
    resumed = minimize(function, method=method, max_steps=10, state=saved, history=history)

    np.testing.assert_array_equal(resumed.x, full.x)
    assert (resumed.nit, resumed.nfev, resumed.fun, resumed.status) == (
        full.nit, full.nfev, full.fun, full.status,
    )
    assert first.trajectory + resumed.trajectory[1:] == full.trajectory
    # A record's state resumes just as well as a result's.
    from_record = minimize(function, method=method, max_steps=10, state=full.trajectory[4]["state"],
                           history=history_from_records(full.trajectory))
    assert from_record.trajectory == resumed.trajectory


def test_resume_keeps_the_inverse_hessian():
    first = minimize(rosen, ROSENBROCK_START, "bfgs", max_steps=4)
    assert first.state["inverse_hessian"] != np.eye(2).tolist()


def test_state_from_another_method_is_rejected():
    state = minimize(quadratic, [4.0, 3.0], "bfgs", max_steps=2).state
    with pytest.raises(ValueError, match="saved by method 'bfgs', not 'dfp'"):
        minimize(quadratic, method="dfp", state=state)
    with pytest.raises(ValueError, match="x0 or state"):
        minimize(quadratic, [4.0, 3.0], "bfgs", state=state)


# --- batching -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, options, batch_size",
    [
        ("gd", {}, 4),  # x and n forward points
        ("gd", {"grad_method": "central"}, 7),  # x and 2n central points
        ("newton", {}, 13),  # x, n gradient points, n + n(n+1)/2 Hessian points
    ],
)
def test_each_point_is_one_batch(method, options, batch_size):
    recorder = BatchRecorder(paper_like)
    result = minimize(recorder, random_start(0), method=method, max_steps=5, **options)
    assert recorder.batch_sizes == [batch_size] * (result.nit + 1)
    assert recorder.single_calls == 0
    assert result.nfev == batch_size * (result.nit + 1)


def test_quasi_newton_batches_gradients_and_searches_point_by_point():
    recorder = BatchRecorder(rosen)
    result = minimize(recorder, ROSENBROCK_START, "bfgs", max_steps=5)
    # f(x) comes with the first gradient; after that the line search's accepted
    # value is reused, so each later gradient batch holds only the n steps.
    assert recorder.batch_sizes == [3] + [2] * 5
    assert result.nfev == sum(recorder.batch_sizes) + recorder.single_calls
    assert recorder.single_calls > 0


# --- validation -------------------------------------------------------------------------


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="gd, newton, bfgs, dfp"):
        minimize(quadratic, [0.0, 0.0], "lbfgs")


@pytest.mark.parametrize(
    "method, option, valid",
    [
        ("gd", "multiplier", "backtrack, grad_method, grad_step, min_step, restart_trials, snap, start_trials, step"),
        ("newton", "c", "fallback_step, grad_method, grad_step, hessian_method, hessian_step, multiplier, snap, "
                        "start_trials"),
        ("bfgs", "step", "bounds, c, fallback_step, grad_method, grad_step, max_halvings, min_step, snap, "
                         "start_trials, tau"),
    ],
)
def test_unknown_option_names_it_and_the_valid_ones(method, option, valid):
    with pytest.raises(ValueError, match=f"unknown option.*{option}.*{method!r}.*valid options: {valid}"):
        minimize(quadratic, [0.0, 0.0], method, **{option: 1.0})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "gd", "step": 0.0},
        {"method": "gd", "grad_method": "backward"},
        {"method": "newton", "hessian_method": "exact"},
        {"method": "bfgs", "c": 1.0},
        {"method": "dfp", "tau": 0.0},
        {"method": "bfgs", "max_halvings": 0},
        {"method": "bfgs", "bounds": [(0, 1)]},
        {"method": "gd", "max_steps": -1},
        {"method": "gd", "record_every": 0},
        {"method": "gd", "gtol": -1.0},
    ],
)
def test_bad_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        minimize(quadratic, [4.0, 3.0], **kwargs)


def test_paper_bounds_and_update_formulas():
    assert PAPER_BOUNDS == ((20.0, 800.0), (5.0, 40.0), (1e-6, 1.0))
    rng = np.random.default_rng(0)
    root = rng.normal(size=(3, 3))
    V, s, y = root @ root.T + np.eye(3), rng.normal(size=3), rng.normal(size=3)
    if s @ y < 0:
        y = -y
    for update in (BFGSUpdate, DFPUpdate):
        V_new = update.update(V, s, y)
        np.testing.assert_allclose(V_new @ y, s)  # the secant condition
        np.testing.assert_allclose(V_new, V_new.T)


# --- the samplers: random search and TPE ------------------------------------------------


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_samplers_need_a_box(method):
    with pytest.raises(ValueError, match="samples a box"):
        minimize(rosen, ROSENBROCK_START, method, max_steps=2)


@pytest.mark.parametrize("method", [m for m in methods_available() if m in ("random", "tpe")])
def test_samplers_keep_the_best_point_and_never_converge_by_gradient(method):
    result = minimize(paper_like, method=method, seed=3, max_steps=30)
    assert result.status == Status.MAX_STEPS and result.nit == 30 and result.nfev == 31
    trials = history_from_records(result.trajectory)
    values = [value for _, value in trials]
    assert result.fun == min(values) and len(values) == 31
    best = [record["fun"] for record in result.trajectory]
    assert best == sorted(best, reverse=True)  # best so far never gets worse
    assert all("gradient_norm" not in record and "gradient" not in record["state"] for record in result.trajectory)
    for z, _ in trials[1:]:  # every sample inside the box
        assert all(low <= v <= high for v, (low, high) in zip(z, PAPER_BOUNDS))


def test_random_search_is_uniform_in_the_box_from_the_seed():
    def trials(seed):
        return history_from_records(minimize(paper_like, method="random", seed=seed, max_steps=3).trajectory)

    first, again, other = trials(5), trials(5), trials(6)
    assert first == again and first[1:] != other[1:]
    expected = np.random.default_rng([5, 1]).uniform(*np.array(PAPER_BOUNDS).T)
    np.testing.assert_array_equal(first[1][0], expected)


def test_tpe_beats_random_search_on_a_smooth_bowl():
    pytest.importorskip("optuna")  # the extra; CI installs it
    # 60 trials on the stand-in loss: TPE's model concentrates near the minimum.
    tpe = minimize(paper_like, method="tpe", seed=0, max_steps=60)
    random = minimize(paper_like, method="random", seed=0, max_steps=60)
    assert tpe.fun < random.fun


def test_tpe_without_optuna_says_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ValueError, match=r"pip install 'fastrnn\[optuna\]'"):
        minimize(paper_like, method="tpe", seed=0, max_steps=1)


def test_a_function_can_stop_the_run_mid_step_and_the_run_ends_at_the_last_whole_step():
    from fastrnn.optimize.methods import StopOptimization

    calls = []

    def limited(x):
        calls.append(1)
        if len(calls) > 10:
            raise StopOptimization(Status.BUDGET)
        return quadratic(x)

    result = minimize(limited, [4.0, 3.0], "gd", max_steps=50)
    assert result.status == Status.BUDGET and result.message == "training budget spent"
    assert result.nit == 2  # the start and 2 steps took 9 evaluations; the 3rd step was dropped at its 11th
    assert result.trajectory[-1]["step"] == 2 and result.state["nit"] == 2
    reference = minimize(quadratic, [4.0, 3.0], "gd", max_steps=2)
    np.testing.assert_array_equal(result.x, reference.x)
