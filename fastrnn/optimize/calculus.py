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

gradient, "span" (for the noisy RNN objective; :func:`span_value_and_gradient`), a
central difference over a wide span h whose points are moved onto the problem's grid (whole h
and s: one network each) and kept inside its box::

    a = snap(x + h e_i),  b = snap(x - h e_i)                 (inside the box: at its edge
    g_i = (f(a) - f(b)) / (a_i - b_i)                          x - 2h .. x or x .. x + 2h;
                                                               0 where a_i == b_i)

It measures the trend of f over the span, not its roughness: where f carries noise of size
sigma on every scale (Adagrad's chaos), a difference over h has an error of about sigma / h, so
a step of 1e-8 (or a one-unit difference along h) measures the noise alone. The divisor is the
distance between the points actually evaluated, so snapping and clipping bias nothing but the
place of the difference. Evaluations: 2n + 1 distinct points at most, in one batch.

Wrap ``f`` in :class:`CountedFunction` to observe how many evaluations a
derivative used.

Noise-aware gradient, ``h="auto"`` (for ``gradient`` / ``value_and_gradient``,
and ``grad_step="auto"`` in :mod:`fastrnn.optimize`).  A fixed 1e-8 step
assumes f is smooth down to rounding; where f carries noise of size eps_f
(the objective's chaotic response to the learning rate), a difference over
h has an error of about eps_f / h, which at h = 1e-8 swamps the slope.  Per
coordinate i, with all coordinates' points in one batch per stage:

1. Noise, eps_i: Moré & Wild's ECnoise ("Estimating computational noise",
   SIAM J. Sci. Comput. 33, 2011; :func:`estimate_noise`) on m + 1 = 9
   points x + k h_n e_i, k = -4..4, h_n = 1e-6 max(1, |x_i|).  When it
   reports h_n too large (no consistent noise level) the points are taken
   again with h_n / 100, when too small (half the differences exactly 0)
   with 100 h_n, up to twice; if it still fails, eps_i is the rounding
   level eps |f(x)| (and ``noise_status`` says so).
2. Curvature, mu_i ~ |f''|: Moré & Wild's rule ("Estimating derivatives of
   noisy simulations", ACM TOMS 38, 2012, sec. 5), tau1 = 100,
   tau2 = 0.1.  With Delta(h) = f(x + h e_i) - 2 f(x) + f(x - h e_i), try
   h_a = eps_i**(1/4): accept mu_a = |Delta(h_a)| / h_a^2 if
   |Delta(h_a)| >= tau1 eps_i (the curvature stands out of the noise) and
   |f(x +- h_a e_i) - f(x)| <= tau2 max(|f(x)|, |f(x +- h_a e_i)|) (f does
   not change wholesale).  Else try h_b = (eps_i / mu_a)**(1/4) the same
   way, and also accept mu_b when |mu_a - mu_b| <= mu_b / 2.
3. Step: Moré & Wild's forward-difference step, which balances the
   truncation error mu h / 2 against the noise error 2 eps / h::

       h_i = 8**(1/4) sqrt(eps_i / mu_i)       error about sqrt(mu_i eps_i)

   used as is for method="forward", and as the step of a central
   difference for method="central" (its O(h) truncation term becomes
   O(h^2) times the third derivative / 6 and its noise error halves, for
   one more point).  When no curvature is accepted (f is straight on the
   scale of the noise, or changes too much), h_i is the smaller step tried.

Evaluations: 8 per coordinate for the noise (+ 9 per retry), 2 or 4 for
the curvature, then 1 (forward) or 2 (central), in 3 to 6 batches.
Diagnostics per component (the ``diagnostics`` dict argument): ``noise``
eps_i, ``step`` h_i, ``curvature`` mu_i (NaN if none accepted), ``snr``
= |g_i| h_i / eps_i (how many noise levels the difference spans; below
about 10 the component is mostly noise; NaN where no noise was detected,
since a ratio to the rounding level says nothing: a jump, such as a
network that blows up, then looks like a signal 1e13 noise levels high), ``noise_status`` (ECnoise's
inform: 1 detected, 2 h too small, 3 h too large) and ``curvature_status``
("a", "b", "agree" or "none").
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np

from fastrnn.optimize.noise import (  # noqa: F401 (the constants: re-exported)
    CURVATURE_TAU1,
    CURVATURE_TAU2,
    NOISE_DETECTED,
    NOISE_MESSAGES,
    NOISE_POINTS,
    NOISE_RELATIVE_STEP,
    NOISE_RETRIES,
    NOISE_STEP_TOO_LARGE,
    NOISE_STEP_TOO_SMALL,
    auto_gradient,
    ecnoise,
    noise_points,
)

GRADIENT_METHODS = ("forward", "central")
#: The rules an optimizer's ``grad_method`` may name: the plain ones and ``"span"``, which needs
#: the problem's grid and box (:func:`span_value_and_gradient`).
OPTIMIZER_GRADIENT_METHODS = (*GRADIENT_METHODS, "span")
HESSIAN_METHODS = ("recursive", "stencil")

DEFAULT_GRADIENT_STEP = 1e-8
DEFAULT_RECURSIVE_HESSIAN_STEP = 1e-6
STENCIL_RELATIVE_STEP = np.finfo(float).eps ** 0.25

#: ``h="auto"``: the noise-aware step of the module docstring.
AUTO_STEP = "auto"


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


@runtime_checkable
class Batched(Protocol):
    """A function evaluated a batch at a time: ``f.evaluate_many(points) -> array``."""

    def evaluate_many(self, points: Sequence[np.ndarray]) -> np.ndarray: ...


class BatchFunction:
    """A batch function ``evaluate_many(points)`` as a :class:`Batched` callable."""

    def __init__(self, evaluate_many: Callable[[Sequence[np.ndarray]], np.ndarray]):
        self.evaluate_many = evaluate_many

    def __call__(self, x) -> float:
        return float(self.evaluate_many([x])[0])


def _evaluate(f, points: Sequence[np.ndarray]) -> np.ndarray:
    """f at every point: one ``f.evaluate_many`` call if f is :class:`Batched`, else a loop."""
    if not isinstance(f, Batched):
        return np.array([float(f(point)) for point in points], dtype=float)
    values = np.asarray(f.evaluate_many(list(points)), dtype=float).reshape(-1)
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



def estimate_noise(f, x, direction, h: float = NOISE_RELATIVE_STEP, m: int = NOISE_POINTS) -> tuple[float, dict]:
    """The noise level of f along ``direction`` at x (Moré & Wild's ECnoise).

    f is evaluated in one batch at the m + 1 points x + (k - m // 2) h direction,
    k = 0..m.  Returns ``(noise, info)``: noise is the estimated standard deviation
    of f's noise (0 when not detected); info holds ``inform`` (1 detected; 2 h too
    small: try about 100 h; 3 h too large: try about h / 100), ``message``,
    ``levels`` (the estimate from each order of differences), ``h`` and ``values``.
    """
    x = _as_point(x)
    direction = np.array(direction, dtype=float)
    if direction.shape != x.shape or not np.all(np.isfinite(direction)) or not np.any(direction):
        raise ValueError(f"direction must be a finite non-zero vector of x's shape {x.shape}, got {direction!r}")
    h = _check_step(h)
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 3:
        raise ValueError(f"m must be a whole number >= 3 (ECnoise compares 3 orders of differences), got {m!r}")
    values = _evaluate(f, noise_points(x, direction, h, int(m)))
    noise, inform, levels = ecnoise(values)
    info = dict(inform=inform, message=NOISE_MESSAGES[inform], levels=levels.tolist(), h=h, values=values.tolist())
    return noise, info


class _Memo:
    """f's values by point, filled one batch (``evaluate_many`` call) at a time."""

    def __init__(self, f, known=()):
        self.f = f
        self.values = {_point_key(point): value for point, value in known}

    def __call__(self, points: Sequence[np.ndarray]) -> np.ndarray:
        missing = {}
        for point in points:
            key = _point_key(point)
            if key not in self.values:
                missing.setdefault(key, point)
        if missing:
            self.values.update(zip(missing, _evaluate(self.f, list(missing.values()))))
        return np.array([self.values[_point_key(point)] for point in points], dtype=float)



def _is_auto(h) -> bool:
    return isinstance(h, str) and h == AUTO_STEP


def _check_gradient_step(h):
    """A positive finite step, or "auto"; ValueError otherwise."""
    if isinstance(h, str):
        if not _is_auto(h):
            raise ValueError(f"step h must be a positive finite number or {AUTO_STEP!r}, got {h!r}")
        return h
    return _check_step(h)


def _fill(diagnostics: dict | None, values: dict) -> None:
    if diagnostics is not None:
        diagnostics.clear()
        diagnostics.update(values)


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
    f,
    x,
    h: float | str = DEFAULT_GRADIENT_STEP,
    method: str = "forward",
    f0: float | None = None,
    diagnostics: dict | None = None,
) -> tuple[float, np.ndarray]:
    """``(f(x), gradient)`` from one batch; ``f0``, if given, is used as f(x).

    ``h="auto"``: the noise-aware step (module docstring), in several batches;
    a ``diagnostics`` dict, if given, is filled with its per-component
    diagnostics (with a fixed step: ``step`` only). Always finite differences:
    a problem that knows some partials exactly says so in its own
    ``value_and_gradient`` (:class:`fastrnn.optimize.problem.Problem`).
    """
    _check_method(method, GRADIENT_METHODS, "gradient")
    x = _as_point(x)
    h = _check_gradient_step(h)
    if _is_auto(h):
        value, grad, found = auto_gradient(_Memo(f, [] if f0 is None else [(x, float(f0))]), x, method)
        _fill(diagnostics, found)
        return value, grad
    known = None if f0 is None else [(x, float(f0))]
    value, grad = _evaluate_stencils(f, [_value_stencil(x), _gradient_stencil(x, h, method)], known)
    _fill(diagnostics, dict(step=[h] * x.size))
    return value, grad


def span_value_and_gradient(
    f,
    x,
    h: float,
    snap: Callable[[np.ndarray], np.ndarray] | None = None,
    bounds=None,
    f0: float | None = None,
    diagnostics: dict | None = None,
) -> tuple[float, np.ndarray]:
    """``(f(x), gradient)`` by central differences over the span ``h`` (module docstring: "span").

    ``snap`` moves a point onto the grid (identity by default); ``bounds`` (n (low, high) pairs
    or None) keeps each difference's points in the box: at an edge the difference is one-sided,
    over the same width 2h. All points go to ``f`` in one batch. ``diagnostics`` gets each component's
    ``span``: the distance between its two points (0: the span did not leave x's grid cell)."""
    x = _as_point(x)
    h = _check_step(h)
    snap = snap or (lambda point: point)
    box = None if bounds is None else np.asarray(bounds, dtype=float)
    pairs = []
    for i in range(x.size):
        high, low = _shifted(x, (i, h)), _shifted(x, (i, -h))
        if box is not None:  # shifted into the box, keeping the width 2h where the box allows
            if high[i] > box[i, 1]:
                high[i] = max(box[i, 1], x[i])
                low[i] = max(high[i] - 2 * h, min(box[i, 0], x[i]))
            elif low[i] < box[i, 0]:
                low[i] = min(box[i, 0], x[i])
                high[i] = min(low[i] + 2 * h, max(box[i, 1], x[i]))
        pairs.append((np.asarray(snap(high), dtype=float), np.asarray(snap(low), dtype=float)))
    spans = np.array([high[i] - low[i] for i, (high, low) in enumerate(pairs)])

    def combine(values):
        differences = values[1::2] - values[2::2]
        return np.divide(differences, spans, out=np.zeros(x.size), where=spans != 0)

    points = [x] + [point for pair in pairs for point in pair]
    stencil = _Stencil(points, combine)
    known = None if f0 is None else [(x, float(f0))]
    value, grad = _evaluate_stencils(f, [_value_stencil(x), stencil], known)
    _fill(diagnostics, dict(span=spans.tolist()))
    return value, grad


def gradient(
    f,
    x,
    h: float | str = DEFAULT_GRADIENT_STEP,
    method: str = "forward",
    f0: float | None = None,
    diagnostics: dict | None = None,
) -> np.ndarray:
    """Finite-difference gradient of f at x (see the module table).

    forward: g_i = (f(x + h e_i) - f(x)) / h, error O(h).
    central: g_i = (f(x + h e_i) - f(x - h e_i)) / (2h), error O(h^2).
    ``f0`` is the known f(x): forward then needs only n evaluations.
    ``h="auto"``: the noise-aware step; ``diagnostics`` as in :func:`value_and_gradient`.
    """
    _check_method(method, GRADIENT_METHODS, "gradient")
    x = _as_point(x)
    h = _check_gradient_step(h)
    if _is_auto(h):
        return value_and_gradient(f, x, h, method, f0, diagnostics)[1]
    known = None if f0 is None else [(x, float(f0))]
    (grad,) = _evaluate_stencils(f, [_gradient_stencil(x, h, method)], known)
    _fill(diagnostics, dict(step=[h] * x.size))
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
    diagnostics: dict | None = None,
    own_gradient: Callable | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """``(f(x), gradient, Hessian)`` from ONE batch of distinct points.

    With ``gradient_step="auto"`` (or ``gradient_method="span"``): f(x) and the Hessian in one
    batch, then the noise-aware (or span) gradient (``diagnostics`` as in :func:`value_and_gradient`)
    from ``own_gradient(x, h, method, f0, diagnostics)``: the problem's
    own (:meth:`fastrnn.optimize.problem.Problem.value_and_gradient`), or by default
    :func:`value_and_gradient` on f.
    """
    _check_method(gradient_method, OPTIMIZER_GRADIENT_METHODS if own_gradient else GRADIENT_METHODS, "gradient")
    _check_method(hessian_method, HESSIAN_METHODS, "hessian")
    x = _as_point(x)
    gradient_step = _check_gradient_step(gradient_step)
    if _is_auto(gradient_step) or gradient_method == "span":
        value, hess = _evaluate_stencils(f, [_value_stencil(x), _hessian_stencil(x, hessian_step, hessian_method)])
        if own_gradient is None:
            _, grad = value_and_gradient(f, x, AUTO_STEP, gradient_method, value, diagnostics)
        else:
            _, grad = own_gradient(x, gradient_step, gradient_method, value, diagnostics)
        return value, grad, hess
    value, grad, hess = _evaluate_stencils(
        f,
        [
            _value_stencil(x),
            _gradient_stencil(x, gradient_step, gradient_method),
            _hessian_stencil(x, hessian_step, hessian_method),
        ],
    )
    _fill(diagnostics, dict(step=[gradient_step] * x.size))
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
