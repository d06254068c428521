"""The noise-aware finite-difference step (``h="auto"`` of :mod:`fastrnn.optimize.calculus`, whose
docstring gives the rule): Moré & Wild's ECnoise on a row of values, the noise along every
coordinate, the curvature trials, and the gradient with a step per component from them.

Nothing here evaluates f itself: every function takes ``evaluate``, f's values at a list of
points, each point computed once (calculus's memo, which hands every batch to ``evaluate_many``).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

#: ECnoise: points per direction minus one, and the spacing relative to max(1, |x_i|).
NOISE_POINTS = 8
NOISE_RELATIVE_STEP = 1e-6
NOISE_RETRIES = 2
#: Moré & Wild's thresholds for accepting a curvature estimate.
CURVATURE_TAU1 = 100.0
CURVATURE_TAU2 = 0.1
#: ECnoise's outcomes (its ``inform``).
NOISE_DETECTED, NOISE_STEP_TOO_SMALL, NOISE_STEP_TOO_LARGE = 1, 2, 3


def ecnoise(values: np.ndarray) -> tuple[float, int, np.ndarray]:
    """Moré & Wild's ECnoise on f at m + 1 equally spaced points (in order).

    The j-th differences of noise of standard deviation eps satisfy
    gamma_j E[(Delta^j f)^2] = eps^2 with gamma_j = (j!)^2 / (2j)!, so each
    column of the difference table gives a level sqrt(gamma_j mean((Delta^j f)^2)).
    The smooth part's differences shrink like h^j, so once they are below the
    noise three consecutive levels agree (within a factor 4) and the j-th
    differences change sign: that level is the noise.  Returns (noise, inform,
    levels); inform 1: detected; 2: h too small (half the first differences are
    exactly 0); 3: h too large (f varies by more than 10% over the points, or no
    level is consistent); the noise is 0 for 2 and 3.
    """
    values = np.asarray(values, dtype=float)
    nf = values.size
    levels = np.zeros(nf - 1)
    scale = max(abs(values.max()), abs(values.min()))
    if scale > 0 and (values.max() - values.min()) / scale > 0.1:
        return 0.0, NOISE_STEP_TOO_LARGE, levels
    changes_sign = np.zeros(nf - 1, dtype=bool)
    differences = values
    gamma = 1.0
    for j in range(1, nf):
        differences = np.diff(differences)
        if j == 1 and np.count_nonzero(differences == 0) >= nf / 2:
            return 0.0, NOISE_STEP_TOO_SMALL, levels
        gamma *= 0.5 * j / (2 * j - 1)
        levels[j - 1] = math.sqrt(gamma * np.mean(differences**2))
        changes_sign[j - 1] = differences.min() * differences.max() < 0
    for k in range(nf - 3):
        window = levels[k : k + 3]
        if window.max() <= 4 * window.min() and changes_sign[k]:
            return float(levels[k]), NOISE_DETECTED, levels
    return 0.0, NOISE_STEP_TOO_LARGE, levels


def noise_points(x: np.ndarray, direction: np.ndarray, h: float, m: int) -> list[np.ndarray]:
    # x itself is the middle point (for even m), so other stencils share it
    return [x + (k - m // 2) * h * direction for k in range(m + 1)]


NOISE_MESSAGES = {
    NOISE_DETECTED: "noise detected",
    NOISE_STEP_TOO_SMALL: "h too small: half the differences are exactly 0; try about 100 h",
    NOISE_STEP_TOO_LARGE: "h too large: no consistent noise level; try about h / 100",
}


def auto_noise(evaluate: Callable, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ECnoise along every coordinate, retrying with 100x / 0.01x spacing where it failed."""
    n = x.size
    unit = np.eye(n)
    spacing = NOISE_RELATIVE_STEP * np.maximum(1.0, np.abs(x))
    noise = np.zeros(n)
    status = np.full(n, NOISE_STEP_TOO_LARGE)
    pending = list(range(n))
    for attempt in range(NOISE_RETRIES + 1):
        stencils = {i: noise_points(x, unit[i], spacing[i], NOISE_POINTS) for i in pending}
        evaluate([point for points in stencils.values() for point in points])
        for i in pending:
            noise[i], status[i], _ = ecnoise(evaluate(stencils[i]))
        pending = [i for i in pending if status[i] != NOISE_DETECTED]
        if not pending or attempt == NOISE_RETRIES:
            break
        for i in pending:
            spacing[i] *= 100.0 if status[i] == NOISE_STEP_TOO_SMALL else 0.01
    return noise, status


def second_differences(evaluate: Callable, x, fx, steps, components, noise):
    """Moré & Wild's curvature trial at ``steps[i]`` for each i in ``components``:
    (mu, accepted) arrays, one entry per component."""
    unit = np.eye(x.size)
    points = [x + sign * steps[i] * unit[i] for i in components for sign in (1, -1)]
    fv = evaluate(points).reshape(-1, 2)
    delta = fv[:, 0] - 2 * fx + fv[:, 1]
    mu = np.abs(delta) / steps[components] ** 2
    change = np.max(np.abs(fv - fx), axis=1)
    stands_out = np.abs(delta) >= CURVATURE_TAU1 * noise[components]
    moderate = change <= CURVATURE_TAU2 * np.maximum(abs(fx), np.max(np.abs(fv), axis=1))
    return mu, stands_out & moderate


def auto_gradient(evaluate: Callable, x: np.ndarray, method: str) -> tuple[float, np.ndarray, dict]:
    """``(f(x), gradient, diagnostics)`` by the noise-aware rule of :mod:`fastrnn.optimize.calculus`'s
    docstring; ``evaluate`` gives f's values at a list of points, each point once (a memo)."""
    n = x.size
    noise, status = auto_noise(evaluate, x)
    fx = float(evaluate([x])[0])
    # where no noise was detected, f is taken to be exact up to rounding
    rounding = np.finfo(float).eps * max(abs(fx), np.finfo(float).tiny)
    noise = np.where(noise > 0, noise, rounding)

    everyone = list(range(n))
    h_a = noise**0.25
    mu_a, ok_a = second_differences(evaluate, x, fx, h_a, everyone, noise)
    curvature = np.where(ok_a, mu_a, np.nan)
    curvature_status = ["a" if ok else "none" for ok in ok_a]
    fallback = h_a.copy()
    retry = [i for i in everyone if not ok_a[i] and 0 < mu_a[i] < np.inf]
    if retry:
        h_b = h_a.copy()
        h_b[retry] = (noise[retry] / mu_a[retry]) ** 0.25
        mu_b, ok_b = second_differences(evaluate, x, fx, h_b, retry, noise)
        for k, i in enumerate(retry):
            fallback[i] = min(h_a[i], h_b[i])
            if ok_b[k]:
                curvature[i], curvature_status[i] = mu_b[k], "b"
            elif abs(mu_a[i] - mu_b[k]) <= mu_b[k] / 2:
                curvature[i], curvature_status[i] = mu_b[k], "agree"

    found = np.isfinite(curvature) & (curvature > 0)
    steps = np.where(found, 8**0.25 * np.sqrt(noise / np.where(found, curvature, 1.0)), fallback)
    unit = np.eye(n)
    if method == "forward":
        grad = (evaluate([x + steps[i] * unit[i] for i in everyone]) - fx) / steps
    else:
        fv = evaluate([x + sign * steps[i] * unit[i] for i in everyone for sign in (1, -1)]).reshape(-1, 2)
        grad = (fv[:, 0] - fv[:, 1]) / (2 * steps)
    diagnostics = dict(
        noise=noise.tolist(),
        step=steps.tolist(),
        curvature=curvature.tolist(),
        # measured against a detected noise level only (see calculus's docstring)
        snr=np.where(status == NOISE_DETECTED, np.abs(grad) * steps / noise, np.nan).tolist(),
        noise_status=[int(v) for v in status],
        curvature_status=curvature_status,
    )
    return fx, grad, diagnostics
