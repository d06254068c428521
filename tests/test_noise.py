"""The noise-aware finite differences of fastrnn.optimize.calculus: ECnoise and ``h="auto"``.

The test functions have a known slope and curvature plus deterministic noise: a hash of the
point, uniform with standard deviation sigma, so any two distinct points get independent
noise (as for the RNN objective, whose value at nearby learning rates is chaotic).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fastrnn.optimize.calculus import (
    NOISE_DETECTED,
    NOISE_STEP_TOO_LARGE,
    NOISE_STEP_TOO_SMALL,
    CountedFunction,
    estimate_noise,
    gradient,
    value_and_gradient,
    value_gradient_and_hessian,
)
from fastrnn.optimize.methods import minimize

SIGMAS = (1e-3, 1e-4, 1e-5, 1e-6)
POINTS = ((0.7, -1.3), (1.9, 0.4), (-0.8, 2.2))


def hashed_noise(x) -> float:
    """Uniform on [-sqrt(3), sqrt(3)] (standard deviation 1), a deterministic function of x."""
    digest = hashlib.blake2b(np.asarray(x, dtype=float).tobytes(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") / 2.0**64 * 2 - 1) * 3**0.5


class Noisy:
    """f(x) = a.x + x^T B x / 2 + sigma * noise(x): slope a + B x, curvature B."""

    a = np.array([1.5, -2.0])
    B = np.array([[1.6, 1.0], [1.0, 0.0]])  # straight along x1 (no curvature to find there)

    def __init__(self, sigma: float):
        self.sigma = sigma

    def smooth(self, x):
        return float(self.a @ x + 0.5 * x @ self.B @ x)

    def __call__(self, x):
        return self.smooth(x) + self.sigma * hashed_noise(x)

    def slope(self, x):
        return self.a + self.B @ np.asarray(x)


def _relative_errors(g, true):
    return np.abs(g - true) / np.abs(true)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_ecnoise_recovers_sigma(sigma):
    """Nine points give a sample of the noise: each estimate is within a factor of about 2,
    and their geometric mean over 9 places and directions much closer."""
    estimates = []
    for x in POINTS:
        for direction in ((1.0, 0.0), (0.0, 1.0), (0.6, -0.8)):
            noise, info = estimate_noise(Noisy(sigma), x, direction)
            assert info["inform"] == NOISE_DETECTED
            estimates.append(noise)
    estimates = np.array(estimates)
    assert np.all((sigma / 2.5 <= estimates) & (estimates <= 2.5 * sigma))
    assert sigma / 1.5 <= np.exp(np.mean(np.log(estimates))) <= 1.5 * sigma


def test_ecnoise_uses_one_batch_of_m_plus_one_points():
    class Recorder:
        batches = []

        def __call__(self, x):
            raise AssertionError("called point by point")

        def evaluate_many(self, points):
            self.batches.append(len(points))
            return [Noisy(1e-4)(p) for p in points]

    f = Recorder()
    _, info = estimate_noise(f, [0.7, -1.3], [1.0, 0.0], m=6)
    assert f.batches == [7] and len(info["values"]) == 7 and len(info["levels"]) == 6


def test_ecnoise_reports_steps_too_small_and_too_large():
    _, info = estimate_noise(lambda x: 3.0, [1.0], [1.0])
    assert info["inform"] == NOISE_STEP_TOO_SMALL
    # f doubles over the points: the step is far too large to see noise
    _, info = estimate_noise(lambda x: np.exp(x[0]) + 1e-9 * hashed_noise(x), [0.0], [1.0], h=0.1)
    assert info["inform"] == NOISE_STEP_TOO_LARGE


def test_ecnoise_finds_rounding_noise_of_a_smooth_function():
    """A smooth function computed in float64 has noise at the rounding level only."""
    noise, info = estimate_noise(lambda x: np.sin(x[0]) * np.exp(x[1]), [0.4, 1.1], [1.0, 0.0])
    assert info["inform"] == NOISE_DETECTED
    assert 0 < noise < 1e-14


@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("x", POINTS)
@pytest.mark.parametrize("method", ("central", "forward"))
def test_auto_step_recovers_the_slope_where_a_fixed_step_fails(sigma, x, method):
    f = Noisy(sigma)
    true = f.slope(x)
    assert np.all(_relative_errors(gradient(f, x, "auto", method), true) < 0.10)
    assert np.any(_relative_errors(gradient(f, x, 1e-8, method), true) > 0.10)


@pytest.mark.parametrize("sigma", (1e-3, 1e-6))
def test_auto_diagnostics(sigma):
    f = Noisy(sigma)
    x = np.array(POINTS[0])
    diagnostics = {}
    value, g = value_and_gradient(f, x, "auto", "central", diagnostics=diagnostics)
    assert value == f(x)
    assert diagnostics["noise_status"] == [NOISE_DETECTED, NOISE_DETECTED]
    noise, step, snr = (np.array(diagnostics[k]) for k in ("noise", "step", "snr"))
    assert np.all((sigma / 2 <= noise) & (noise <= 2 * sigma))
    np.testing.assert_allclose(snr, np.abs(g) * step / noise)
    assert np.all(snr > 10)
    # curvature 1.6 along x0 found; along x1 f is straight, so none is accepted
    assert diagnostics["curvature"][0] == pytest.approx(1.6, rel=0.25)
    assert np.isnan(diagnostics["curvature"][1]) and diagnostics["curvature_status"][1] == "none"
    # the step along x0 is More and Wild's 8**(1/4) sqrt(noise / curvature)
    assert step[0] == pytest.approx(8**0.25 * np.sqrt(noise[0] / diagnostics["curvature"][0]))


def _smooth(x):
    return np.sin(x[0]) + np.exp(0.5 * x[1]) + x[0] * x[1] ** 2


def _smooth_slope(x):
    return np.array([np.cos(x[0]) + x[1] ** 2, 0.5 * np.exp(0.5 * x[1]) + 2 * x[0] * x[1]])


@pytest.mark.parametrize("method, tolerance", (("central", 1e-7), ("forward", 1e-6)))
@pytest.mark.parametrize("x", POINTS)
def test_auto_step_on_noiseless_functions(method, tolerance, x):
    x = np.array(x)
    diagnostics = {}
    g = gradient(_smooth, x, "auto", method, diagnostics=diagnostics)
    assert np.all(_relative_errors(g, _smooth_slope(x)) < tolerance)
    assert max(diagnostics["noise"]) < 1e-13


def test_auto_step_on_an_exactly_linear_function():
    g = gradient(lambda x: 3.0 * x[0] - 0.5 * x[1], [1.0, 2.0], "auto", "central")
    np.testing.assert_allclose(g, [3.0, -0.5], rtol=1e-9)


def test_auto_batches_and_f0():
    f = CountedFunction(Noisy(1e-4))
    x = np.array(POINTS[1])
    value, _ = value_and_gradient(f, x, "auto", "central", f0=f.function(x))
    assert value == f.function(x)
    # 8 ECnoise points per coordinate (x known), 2 or 4 curvature points, 2 for the difference
    assert 2 * (8 + 2 + 2) <= f.nfev <= 2 * (8 + 4 + 2)


def test_fixed_step_diagnostics_hold_the_step():
    diagnostics = {"stale": 1}
    gradient(_smooth, [0.1, 0.2], 1e-6, "central", diagnostics=diagnostics)
    assert diagnostics == {"step": [1e-6, 1e-6]}


def test_auto_gradient_with_hessian():
    f = Noisy(1e-5)
    x = np.array(POINTS[0])
    diagnostics = {}
    value, g, hess = value_gradient_and_hessian(f, x, "auto", "central", hessian_method="stencil",
                                                hessian_step=0.05, diagnostics=diagnostics)
    assert np.all(_relative_errors(g, f.slope(x)) < 0.10)
    assert value == f(x) and hess.shape == (2, 2) and len(diagnostics["noise"]) == 2


@pytest.mark.parametrize("h", ("Auto", "", -1.0, 0.0, np.nan))
def test_bad_steps(h):
    with pytest.raises(ValueError, match="step h must be a positive finite number"):
        gradient(_smooth, [0.1, 0.2], h)


def test_estimate_noise_rejects_bad_input():
    with pytest.raises(ValueError, match="direction must be a finite non-zero vector"):
        estimate_noise(_smooth, [0.1, 0.2], [0.0, 0.0])
    with pytest.raises(ValueError, match="direction must be a finite non-zero vector"):
        estimate_noise(_smooth, [0.1, 0.2], [1.0])
    with pytest.raises(ValueError, match="m must be a whole number >= 3"):
        estimate_noise(_smooth, [0.1, 0.2], [1.0, 0.0], m=2)


@pytest.mark.parametrize("method", ("gd", "newton", "bfgs"))
def test_optimizers_take_the_auto_step_and_record_its_diagnostics(method):
    f = Noisy(1e-4)
    options = dict(grad_step="auto", grad_method="central")
    if method == "newton":
        options.update(hessian_method="stencil", hessian_step=0.05)
    result = minimize(f, x0=[0.7, -1.3], method=method, max_steps=3, gtol=0, **options)
    assert all(len(record["gradient_noise"]["noise"]) == 2 for record in result.trajectory)
    # resuming from a record continues to the same result
    resumed = minimize(f, method=method, max_steps=3, gtol=0, state=result.trajectory[1]["state"], **options)
    np.testing.assert_array_equal(resumed.x, result.x)
    assert resumed.trajectory[0]["gradient_noise"] == result.trajectory[1]["gradient_noise"]


def test_optimizer_rejects_other_step_strings():
    with pytest.raises(ValueError, match="option grad_step must be a positive number or 'auto'"):
        minimize(Noisy(0), x0=[0.0, 0.0], grad_step="automatic")
    with pytest.raises(ValueError, match="option grad_step must be a positive number or 'auto'"):
        minimize(Noisy(0), x0=[0.0, 0.0], grad_step=0.0)


def test_fixed_step_records_are_unchanged():
    result = minimize(Noisy(0), x0=[0.7, -1.3], max_steps=2)
    assert all("gradient_noise" not in record and "gradient_noise" not in record["state"]
               for record in result.trajectory)
