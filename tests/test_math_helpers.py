"""The Numba kernel's own tanh, exp and 2**k against NumPy's (libm's), over their whole ranges."""
import numpy as np
import pytest

from fastrnn.backends import _numba_kernel as numba_kernel


def _ulps(a, b):
    """Distance in units of the last place between float64 arrays of one sign."""
    return np.abs(a.view(np.int64) - b.view(np.int64))


def test_pow2_is_exact_over_the_normal_exponents():
    for k in range(-1022, 1024):
        assert numba_kernel._f64_pow2(float(k)) == 2.0 ** k


@pytest.mark.parametrize("x", [0.0, -1e-300, -1e-9, -0.5, -0.34657359, -1.0, -20.0, -300.0, -707.9, -708.0])
def test_exp_nonpos_within_one_ulp_at_edges(x):
    assert _ulps(np.array([numba_kernel._exp_nonpos_f64(x)]), np.exp(np.array([x])))[0] <= 1


def test_exp_nonpos_within_one_ulp_over_its_range():
    x = -np.random.default_rng(0).uniform(0.0, 708.0, 20_000)
    got = np.array([numba_kernel._exp_nonpos_f64(v) for v in x])
    assert _ulps(got, np.exp(x)).max() <= 1


def test_tanh_within_three_ulp_and_odd():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0.0, 3.0, 20_000), rng.uniform(-25.0, 25.0, 2_000),
                        [0.0, 1e-300, 1e-8, 0.5, 17.0, 19.0, 20.0, 40.0, 1e6, np.inf]])
    got = np.array([numba_kernel._tanh_f64(v) for v in x])
    positive = x >= 0
    assert _ulps(np.abs(got[positive]), np.tanh(x[positive])).max() <= 3
    assert np.array_equal(np.array([numba_kernel._tanh_f64(-v) for v in x]), -got)


def test_nan_in_nan_out():
    assert np.isnan(numba_kernel._tanh_f64(np.nan))
    assert np.isnan(numba_kernel._exp_nonpos_f64(np.nan))
    assert np.isnan(numba_kernel._tanh_f32(np.float32(np.nan)))
