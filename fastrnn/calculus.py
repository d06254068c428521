"""Finite-difference gradients and Hessians of a scalar function of n variables.

The objective is any callable ``f(x) -> float`` on a length-n float array.  If
``f`` also has ``f.evaluate_many(points) -> array`` (the RNN objective trains
every network a batch of points needs in parallel), every point one derivative
needs is handed to it in ONE call; otherwise ``f`` is called point by point.
Points are deduplicated first, so each distinct point is evaluated once.

Methods (``e_i`` is the i-th unit vector, ``eps`` the float64 machine
epsilon; errors are truncation in the step h plus rounding for ``|f| ~ 1``):

gradient, method="forward" (the paper's), default h = 1e-8::

    g_i = (f(x + h e_i) - f(x)) / h                          error O(h) + O(eps/h)

gradient, method="central", default h = 1e-8::

    g_i = (f(x + h e_i) - f(x - h e_i)) / (2 h)              error O(h^2) + O(eps/h)

hessian, method="recursive" (the paper's mixedPartialDerivative), default h = 1e-6::

    H_ij = ((f(x + h e_j + h e_i) - f(x + h e_j)) / h
            - (f(x + h e_i) - f(x)) / h) / h                 error O(h) + O(eps/h^2)

hessian, method="stencil", default h_i = eps**(1/4) * max(1, |x_i|)::

    H_ii = (f(x + h_i e_i) - 2 f(x) + f(x - h_i e_i)) / h_i^2
    H_ij = (f(x + h_i e_i + h_j e_j) - f(x + h_i e_i - h_j e_j)
            - f(x - h_i e_i + h_j e_j) + f(x - h_i e_i - h_j e_j))
           / (4 h_i h_j)                                     error O(h^2) + O(eps/h^2)

Steps are absolute unless stated.  The paper's 1e-8 is near the
rounding-optimal eps**(1/2) for forward differences; central differences
would prefer about eps**(1/3).  The paper's recursive 1e-6 is far below its
optimum (about eps**(1/3)): it carries a rounding error of about
``eps |f| / h**2 ~ 2e-4 |f|`` -- about 200 near the paper's 1e6 penalty.
It is kept as the default for faithfulness.

Distinct evaluations: forward gradient n + 1 (n when ``f0`` is given),
central gradient 2n, recursive Hessian (n + 1)(n + 2)/2, stencil Hessian
2 n**2 + 1.

Wrap ``f`` in :class:`CountedFunction` to observe how many evaluations a
derivative used.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np

GRADIENT_METHODS = ("forward", "central")
HESSIAN_METHODS = ("recursive", "stencil")

DEFAULT_GRADIENT_STEP = 1e-8
DEFAULT_RECURSIVE_HESSIAN_STEP = 1e-6
STENCIL_RELATIVE_STEP = np.finfo(float).eps ** 0.25


class CountedFunction:
    """``f`` with a running count ``nfev`` of the points it was evaluated at.

    Always offers ``evaluate_many``; it forwards to ``f.evaluate_many`` when
    ``f`` has one, so wrapping never loses batching.
    """

    def __init__(self, f: Callable[[np.ndarray], float], nfev: int = 0):
        self.function = f
        self.nfev = nfev

    def __call__(self, x: np.ndarray) -> float:
        self.nfev += 1
        return float(self.function(x))

    def evaluate_many(self, points: Sequence[np.ndarray]) -> np.ndarray:
        values = _evaluate(self.function, points)
        self.nfev += len(points)
        return values


def _evaluate(f, points: Sequence[np.ndarray]) -> np.ndarray:
    """f at every point: one ``f.evaluate_many`` call if f has it, else a loop."""
    evaluate_many = getattr(f, "evaluate_many", None)
    if evaluate_many is None:
        return np.array([float(f(point)) for point in points], dtype=float)
    values = np.asarray(evaluate_many(list(points)), dtype=float).reshape(-1)
    if values.shape != (len(points),):
        raise ValueError(
            f"f.evaluate_many returned {values.size} values for {len(points)} points"
        )
    return values


class _Stencil(NamedTuple):
    """The points a derivative needs and how to combine f at them."""

    points: list[np.ndarray]
    combine: Callable[[np.ndarray], object]


def _point_key(point: np.ndarray) -> bytes:
    # + 0.0 maps -0.0 to 0.0 so the two spellings of zero share one evaluation.
    return (point + 0.0).tobytes()


def _evaluate_stencils(f, stencils: Sequence[_Stencil], known=None) -> list:
    """Combine every stencil from one batched evaluation of their distinct points.

    ``known`` maps points whose value the caller already has (as
    ``(point, value)`` pairs) so they are not evaluated again.
    """
    values_by_key = {_point_key(point): value for point, value in (known or ())}
    missing = {}
    for stencil in stencils:
        for point in stencil.points:
            key = _point_key(point)
            if key not in values_by_key:
                missing.setdefault(key, point)
    if missing:
        values_by_key.update(zip(missing, _evaluate(f, list(missing.values()))))
    return [
        stencil.combine(np.array([values_by_key[_point_key(p)] for p in stencil.points]))
        for stencil in stencils
    ]


def _as_point(x) -> np.ndarray:
    x = np.array(x, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x must be a non-empty 1-D array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"x must be finite, got {x.tolist()}")
    return x


def _check_method(method: str, valid: tuple[str, ...], what: str) -> None:
    if method not in valid:
        raise ValueError(f"unknown {what} method {method!r}; valid methods: {', '.join(valid)}")


def _check_step(h) -> float:
    h = float(h)
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"step h must be a positive finite number, got {h}")
    return h


def _shifted(x: np.ndarray, *shifts: tuple[int, float]) -> np.ndarray:
    """x with each (index, delta) added in turn, in the order given."""
    point = x.copy()
    for index, delta in shifts:
        point[index] += delta
    return point


def _value_stencil(x: np.ndarray) -> _Stencil:
    return _Stencil([x], lambda values: float(values[0]))


def _gradient_stencil(x: np.ndarray, h: float, method: str) -> _Stencil:
    n = x.size
    if method == "forward":
        points = [x] + [_shifted(x, (i, h)) for i in range(n)]
        return _Stencil(points, lambda v: (v[1:] - v[0]) / h)
    points = [_shifted(x, (i, sign * h)) for i in range(n) for sign in (1, -1)]
    return _Stencil(points, lambda v: (v[0::2] - v[1::2]) / (2 * h))


def _recursive_hessian_stencil(x: np.ndarray, h: float) -> _Stencil:
    # The paper's mixedPartialDerivative(f, x, [i, j]) steps the LAST entry of
    # `order` first: it differences the forward i-derivative at x + h e_j and
    # at x.  So the corner point is (x + h e_j) + h e_i, which for i == j is
    # (x_i + h) + h -- not always bitwise x_i + 2h -- and is built that way.
    # H[i, j] = mixedPartialDerivative(f, x, [i, j]); the rounding differs
    # from H[j, i], so H is not exactly symmetric, as in the paper.
    n = x.size
    pairs = [(i, j) for i in range(n) for j in range(n)]
    points = (
        [x]
        + [_shifted(x, (i, h)) for i in range(n)]
        + [_shifted(x, (j, h), (i, h)) for i, j in pairs]
    )

    def combine(v: np.ndarray) -> np.ndarray:
        f_x, f_step, f_corner = v[0], v[1 : n + 1], v[n + 1 :].reshape(n, n)
        inner_at_step_j = (f_corner - f_step[np.newaxis, :]) / h  # [i, j]: D_i f(x + h e_j)
        inner_at_x = (f_step - f_x) / h  # [i]: D_i f(x)
        return (inner_at_step_j - inner_at_x[:, np.newaxis]) / h

    return _Stencil(points, combine)


def _central_hessian_stencil(x: np.ndarray, h: np.ndarray) -> _Stencil:
    n = x.size
    diagonal = [_shifted(x, (i, sign * h[i])) for i in range(n) for sign in (1, -1)]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    corners = [
        _shifted(x, (i, si * h[i]), (j, sj * h[j]))
        for i, j in pairs
        for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1))
    ]

    def combine(v: np.ndarray) -> np.ndarray:
        f_x, f_diag, f_corner = v[0], v[1 : 2 * n + 1], v[2 * n + 1 :].reshape(-1, 4)
        # Relative steps at |x| > 1e154 square past the float range: the Hessian is then
        # non-finite, which callers report (the optimizer's status 2); numpy's warning would
        # only add lines to the command line's one-line output.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            hessian = np.diag((f_diag[0::2] - 2 * f_x + f_diag[1::2]) / h**2)
            for (i, j), (pp, pm, mp, mm) in zip(pairs, f_corner):
                hessian[i, j] = hessian[j, i] = (pp - pm - mp + mm) / (4 * h[i] * h[j])
        return hessian

    return _Stencil([x] + diagonal + corners, combine)


def _hessian_stencil(x: np.ndarray, h, method: str) -> _Stencil:
    if method == "recursive":
        step = DEFAULT_RECURSIVE_HESSIAN_STEP if h is None else _check_step(h)
        return _recursive_hessian_stencil(x, step)
    if h is None:
        steps = STENCIL_RELATIVE_STEP * np.maximum(1.0, np.abs(x))
    else:
        steps = np.full(x.size, _check_step(h))
    return _central_hessian_stencil(x, steps)


def value_and_gradient(
    f, x, h: float = DEFAULT_GRADIENT_STEP, method: str = "forward", f0: float | None = None
) -> tuple[float, np.ndarray]:
    """``(f(x), gradient)`` from one batch; ``f0``, if given, is used as f(x)."""
    _check_method(method, GRADIENT_METHODS, "gradient")
    x = _as_point(x)
    known = None if f0 is None else [(x, float(f0))]
    value, grad = _evaluate_stencils(
        f, [_value_stencil(x), _gradient_stencil(x, _check_step(h), method)], known
    )
    return value, grad


def gradient(
    f, x, h: float = DEFAULT_GRADIENT_STEP, method: str = "forward", f0: float | None = None
) -> np.ndarray:
    """Finite-difference gradient of f at x (see the module table).

    forward: g_i = (f(x + h e_i) - f(x)) / h, error O(h).
    central: g_i = (f(x + h e_i) - f(x - h e_i)) / (2h), error O(h^2).
    ``f0`` is the known f(x): forward then needs only n evaluations.
    """
    _check_method(method, GRADIENT_METHODS, "gradient")
    x = _as_point(x)
    known = None if f0 is None else [(x, float(f0))]
    (grad,) = _evaluate_stencils(f, [_gradient_stencil(x, _check_step(h), method)], known)
    return grad


def hessian(f, x, h: float | None = None, method: str = "recursive") -> np.ndarray:
    """Finite-difference Hessian (n x n) of f at x (see the module table).

    recursive: the paper's nested forward differences, h = 1e-6 by default,
        error O(h); not forced symmetric.
    stencil: central differences, symmetric by construction, error O(h^2);
        default steps h_i = eps**(1/4) * max(1, |x_i|); a given h is absolute.
    """
    _check_method(method, HESSIAN_METHODS, "hessian")
    x = _as_point(x)
    (result,) = _evaluate_stencils(f, [_hessian_stencil(x, h, method)])
    return result


def value_gradient_and_hessian(
    f,
    x,
    gradient_step: float = DEFAULT_GRADIENT_STEP,
    gradient_method: str = "forward",
    hessian_step: float | None = None,
    hessian_method: str = "recursive",
) -> tuple[float, np.ndarray, np.ndarray]:
    """``(f(x), gradient, Hessian)`` from ONE batch of distinct points."""
    _check_method(gradient_method, GRADIENT_METHODS, "gradient")
    _check_method(hessian_method, HESSIAN_METHODS, "hessian")
    x = _as_point(x)
    value, grad, hess = _evaluate_stencils(
        f,
        [
            _value_stencil(x),
            _gradient_stencil(x, _check_step(gradient_step), gradient_method),
            _hessian_stencil(x, hessian_step, hessian_method),
        ],
    )
    return value, grad, hess


def step_lost_in_rounding(x, h) -> bool:
    """Whether a difference step ``h`` vanishes in rounding at ``x`` (``x_i + h == x_i`` or
    ``x_i - h == x_i`` for some i).

    The difference along such an axis is exactly 0 whatever ``f`` does there, so a gradient or
    Hessian built with that step says nothing about ``f`` (and a zero gradient is no
    convergence). ``h`` may be a scalar or one step per axis.
    """
    x = np.asarray(x, dtype=float)
    h = np.broadcast_to(np.asarray(h, dtype=float), x.shape)
    return bool(np.any(x + h == x) or np.any(x - h == x))
