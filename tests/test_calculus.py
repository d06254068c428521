"""Finite-difference derivatives against analytic ones, the paper's code, and scipy.

Tolerances follow the error orders in fastrnn.optimize.calculus: truncation
O(h) (forward, recursive) or O(h^2) (central, stencil) times the size of the
next derivative, plus rounding of about eps |f| / h (gradients) or
eps |f| / h^2 (Hessians).
"""

import numpy as np
import pytest
from scipy.optimize import rosen, rosen_der, rosen_hess

from fastrnn.optimize.calculus import (
    GRADIENT_METHODS,
    HESSIAN_METHODS,
    CountedFunction,
    _evaluate,
    gradient,
    hessian,
    value_and_gradient,
    value_gradient_and_hessian,
)

from helpers import BatchRecorder

EPS = np.finfo(float).eps

A = np.array([[3.0, 1.0, -0.5], [1.0, 2.0, 0.25], [-0.5, 0.25, 4.0]])
B = np.array([1.0, -2.0, 0.5])


def quadratic(x):
    return 0.5 * x @ A @ x + B @ x + 7.0


def exp_sin(x):
    return np.exp(x[0]) * np.sin(x[1])


def exp_sin_gradient(x):
    e = np.exp(x[0])
    return np.array([e * np.sin(x[1]), e * np.cos(x[1])])


def exp_sin_hessian(x):
    e = np.exp(x[0])
    return np.array([[e * np.sin(x[1]), e * np.cos(x[1])], [e * np.cos(x[1]), -e * np.sin(x[1])]])


X3 = np.array([0.5, -1.0, 2.0])
X2 = np.array([0.3, 0.7])


# --- the paper's code, transcribed from its Code section -------------------


def paper_gradient(f, v, h=1e-8):
    grad = [0 for _ in range(len(v))]
    for i in range(len(v)):
        step = v[:]
        step[i] += h
        grad[i] = (f(step) - f(v)) / h
    return grad


def paper_mixed_partial_derivative(f, v, order):
    h = 1e-6
    if len(order) == 1:
        step = v[:]
        step[order[0]] += h
        return (f(step) - f(v)) / h
    step = v[:]
    step[order[len(order) - 1]] += h
    return (
        paper_mixed_partial_derivative(f, step, order[0 : len(order) - 1])
        - paper_mixed_partial_derivative(f, v, order[0 : len(order) - 1])
    ) / h


def on_list(f):
    return lambda v: f(np.array(v, dtype=float))


def test_forward_gradient_is_bitwise_the_papers():
    for f, x in ((quadratic, X3), (exp_sin, X2)):
        expected = paper_gradient(on_list(f), x.tolist())
        np.testing.assert_array_equal(gradient(f, x), expected)


def test_recursive_hessian_is_bitwise_the_papers_mixed_partial_derivative():
    for f, x in ((quadratic, X3), (exp_sin, X2), (rosen, np.array([-1.2, 1.0]))):
        n = x.size
        expected = [
            [paper_mixed_partial_derivative(on_list(f), x.tolist(), [i, j]) for j in range(n)]
            for i in range(n)
        ]
        np.testing.assert_array_equal(hessian(f, x, method="recursive"), expected)


# --- accuracy ----------------------------------------------------------------


def test_gradients_of_a_quadratic():
    exact = A @ X3 + B
    # forward: truncation h/2 * A_ii <= 2e-8, rounding eps*|f|/h ~ 2e-7.
    np.testing.assert_allclose(gradient(quadratic, X3), exact, atol=1e-6)
    # central is exact on quadratics up to rounding eps*|f|/h (~2e-11 at h=1e-4).
    np.testing.assert_allclose(gradient(quadratic, X3, h=1e-4, method="central"), exact, atol=1e-9)


def test_hessians_of_a_quadratic_are_exact_up_to_rounding():
    # Both second differences are exact on quadratics; the rest is rounding
    # eps*|f|/h^2 (|f| ~ 10): ~2e-7 at h=1e-4 and ~2e-3 at the paper's 1e-6.
    np.testing.assert_allclose(hessian(quadratic, X3, h=1e-4), A, atol=1e-5)
    np.testing.assert_allclose(hessian(quadratic, X3), A, atol=2e-2)
    np.testing.assert_allclose(hessian(quadratic, X3, method="stencil"), A, atol=1e-5)


def test_derivatives_of_exp_sin():
    np.testing.assert_allclose(gradient(exp_sin, X2), exp_sin_gradient(X2), atol=1e-7)
    np.testing.assert_allclose(
        gradient(exp_sin, X2, h=1e-5, method="central"), exp_sin_gradient(X2), atol=1e-9
    )
    # recursive at h=1e-4: truncation ~ h * |third derivatives| (~2) -> 1e-3.
    np.testing.assert_allclose(hessian(exp_sin, X2, h=1e-4), exp_sin_hessian(X2), atol=1e-3)
    # stencil default: truncation ~ h^2 ~ 1e-8, rounding ~ eps/h^2 ~ 1e-8.
    np.testing.assert_allclose(
        hessian(exp_sin, X2, method="stencil"), exp_sin_hessian(X2), atol=1e-6
    )


def test_rosenbrock_against_scipys_analytic_derivatives():
    x = np.array([-1.2, 1.0])
    # |f| ~ 24, third derivatives ~ 1e3: forward error ~ 1e3*h + eps*24/h.
    np.testing.assert_allclose(gradient(rosen, x), rosen_der(x), atol=1e-5)
    np.testing.assert_allclose(gradient(rosen, x, h=1e-6, method="central"), rosen_der(x), atol=1e-7)
    # Rosenbrock is quartic: the stencil's h^2 truncation is 2 h^2 * 100 ~ 3e-6.
    np.testing.assert_allclose(hessian(rosen, x, method="stencil"), rosen_hess(x), atol=1e-4)
    # recursive at the paper's 1e-6: truncation ~ 1e3*h, rounding eps*24/h^2 ~ 5e-3.
    np.testing.assert_allclose(hessian(rosen, x), rosen_hess(x), atol=5e-2)


def test_central_is_more_accurate_than_forward():
    exact = exp_sin_gradient(X2)
    for h in (1e-3, 1e-5):
        forward_error = np.abs(gradient(exp_sin, X2, h=h) - exact).max()
        central_error = np.abs(gradient(exp_sin, X2, h=h, method="central") - exact).max()
        assert central_error < forward_error / 100


@pytest.mark.parametrize(
    "derivative, method, order",
    [(gradient, "forward", 1), (gradient, "central", 2), (hessian, "recursive", 1), (hessian, "stencil", 2)],
)
def test_error_order(derivative, method, order):
    # Truncation-dominated steps: halving h divides the error by about 2**order.
    exact = exp_sin_gradient(X2) if derivative is gradient else exp_sin_hessian(X2)
    errors = [np.abs(derivative(exp_sin, X2, h=h, method=method) - exact).max() for h in (1e-2, 5e-3)]
    assert errors[0] / errors[1] == pytest.approx(2**order, rel=0.1)


def test_recursive_hessian_is_symmetric_up_to_finite_difference_error():
    for f, x, h, tol in ((exp_sin, X2, 1e-4, 1e-6), (quadratic, X3, 1e-6, 2e-2)):
        H = hessian(f, x, h=h)
        # Same four values, different rounding order: |H - H^T| ~ eps*|f|/h^2.
        np.testing.assert_allclose(H, H.T, atol=tol)


def test_stencil_hessian_is_symmetric_by_construction():
    H = hessian(rosen, np.array([-1.2, 1.0, 0.7]), method="stencil")
    np.testing.assert_array_equal(H, H.T)


def test_known_value_saves_an_evaluation_and_changes_nothing():
    counted = CountedFunction(quadratic)
    fx = quadratic(X3)
    np.testing.assert_array_equal(gradient(counted, X3, f0=fx), gradient(quadratic, X3))
    assert counted.nfev == 3
    assert value_and_gradient(quadratic, X3, f0=fx)[0] == fx


# --- batching and counts -----------------------------------------------------


@pytest.mark.parametrize(
    "compute, distinct_points",
    [
        (lambda f: gradient(f, X3), 4),  # n + 1
        (lambda f: gradient(f, X3, f0=1.0), 3),  # n
        (lambda f: gradient(f, X3, method="central"), 6),  # 2n
        (lambda f: value_and_gradient(f, X3), 4),
        (lambda f: value_and_gradient(f, X3, method="central"), 7),
        (lambda f: hessian(f, X3), 10),  # (n + 1)(n + 2)/2
        (lambda f: hessian(f, X3, method="stencil"), 19),  # 2n^2 + 1
        (lambda f: value_gradient_and_hessian(f, X3), 13),  # x, n gradient, n + n(n+1)/2 Hessian
    ],
)
def test_each_derivative_is_one_batch_of_distinct_points(compute, distinct_points):
    recorder = BatchRecorder(quadratic)
    counted = CountedFunction(recorder)
    compute(counted)
    assert len(recorder.batches) == 1
    assert recorder.single_calls == 0
    batch = recorder.batches[0]
    assert len(batch) == distinct_points
    assert len({p.tobytes() for p in batch}) == distinct_points
    assert counted.nfev == distinct_points


def test_batched_and_looped_evaluation_agree():
    np.testing.assert_array_equal(hessian(BatchRecorder(exp_sin), X2), hessian(exp_sin, X2))
    points = [X3, 2 * X3]
    np.testing.assert_array_equal(_evaluate(quadratic, points), [quadratic(p) for p in points])


def test_counted_function_counts_calls_and_batch_points():
    counted = CountedFunction(quadratic)
    counted(X3)
    counted.evaluate_many([X3, X3, X3])
    assert counted.nfev == 4


def test_evaluate_many_must_return_one_value_per_point():
    class Broken:
        def __call__(self, x):
            return 0.0

        def evaluate_many(self, points):
            return np.zeros(len(points) - 1)

    with pytest.raises(ValueError, match="returned 3 values for 4 points"):
        gradient(Broken(), X3)


# --- validation --------------------------------------------------------------


def test_unknown_methods_list_the_valid_ones():
    with pytest.raises(ValueError, match="forward, central"):
        gradient(quadratic, X3, method="backward")
    with pytest.raises(ValueError, match="recursive, stencil"):
        hessian(quadratic, X3, method="complex")
    assert GRADIENT_METHODS == ("forward", "central")
    assert HESSIAN_METHODS == ("recursive", "stencil")


@pytest.mark.parametrize("bad_x", [[np.nan, 1.0], [np.inf, 0.0], [], [[1.0]]])
def test_bad_points_are_rejected(bad_x):
    with pytest.raises(ValueError):
        gradient(exp_sin, bad_x)
    with pytest.raises(ValueError):
        hessian(exp_sin, bad_x)


@pytest.mark.parametrize("bad_h", [0.0, -1e-8, np.inf, np.nan])
def test_bad_steps_are_rejected(bad_h):
    with pytest.raises(ValueError, match="positive finite"):
        gradient(exp_sin, X2, h=bad_h)
    with pytest.raises(ValueError, match="positive finite"):
        hessian(exp_sin, X2, h=bad_h, method="stencil")
