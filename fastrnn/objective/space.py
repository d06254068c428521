"""The coordinates an optimizer searches in, and the objective seen through them.

``linear`` (the paper's): the optimizer's coordinates are (h, s, l) themselves.
``log`` (the default of the held-out objective): z = (log2 h, log2 s, log10 l). A step of 1 in z
doubles the hidden size or the sequence length, or multiplies the learning rate by ten, so one
step size suits all three, and the learning rate can move across decades instead of being
pinned near 0 by a box of width 1.

Step sizes, the sane box and the penalty outside it are all expressed in the space's
coordinates; run files and printed points are always in (h, s, l).

:class:`SpaceView` is the objective as a function of z: what :func:`fastrnn.optimize.minimize`
sees when tuning. It gives the optimizer its start point and box in z, and its derivatives:
along h and s exact differences of the interpolation's corners (with common random numbers F is
bilinear inside each integer cell), along l a finite difference in z (``grad_step``, or the
noise-aware ``"auto"`` rule of :mod:`fastrnn.optimize.calculus`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..optimize.calculus import BatchFunction, value_and_gradient
from ..optimize.problem import Problem

SPACES = ("log", "linear")
_LN2 = math.log(2.0)
_LN10 = math.log(10.0)
#: The difference step along the learning rate in z of :meth:`SpaceView.value_and_grad` (decades).
DEFAULT_LR_STEP = 0.05


class Space(NamedTuple):
    name: str

    def to_point(self, z) -> np.ndarray:
        """(h, s, l) from the space's coordinates."""
        z = np.asarray(z, dtype=float)
        if self.name == "linear":
            return z.copy()
        with np.errstate(over="ignore"):  # a huge step gives inf, which the objective refuses
            point = np.array([2.0 ** z[0], 2.0 ** z[1], 10.0 ** z[2]])
        for i in (0, 1):
            # 2 ** log2(25) is 25 only to rounding: a whole size must stay whole, or F would
            # interpolate (and train) corners for a 4e-15 weight.
            if np.isfinite(point[i]) and abs(point[i] - round(point[i])) <= 1e-9 * abs(point[i]):
                point[i] = round(point[i])
        return point

    def from_point(self, x) -> np.ndarray:
        """The space's coordinates of (h, s, l); ValueError for a non-positive coordinate in log space."""
        x = np.asarray(x, dtype=float)
        if self.name == "linear":
            return x.copy()
        if not np.all(x > 0):
            raise ValueError(f"log space needs positive h, s and l, got {x.tolist()}; start from positive values "
                             "or search the linear space (space='linear', --space linear)")
        return np.array([math.log2(x[0]), math.log2(x[1]), math.log10(x[2])])

    def coordinate(self, index: int, value: float) -> float:
        """One coordinate of a point in this space (``-inf`` for a non-positive value in log space)."""
        if self.name == "linear":
            return float(value)
        if value <= 0:
            return -math.inf
        return math.log2(value) if index < 2 else math.log10(value)

    def chain_factors(self, x) -> np.ndarray:
        """d(h, s, l)/dz at x (diagonal): multiply a gradient in (h, s, l) by these to get one in z."""
        if self.name == "linear":
            return np.ones(3)
        return np.array([x[0] * _LN2, x[1] * _LN2, x[2] * _LN10])


def get_space(name: str) -> Space:
    if name not in SPACES:
        raise ValueError(f"unknown space {name!r}; valid spaces: {', '.join(SPACES)}")
    return Space(name)


class SpaceView(Problem):
    """The objective ``F`` as a :class:`~fastrnn.optimize.problem.Problem` in the space's coordinates z
    (see the module docstring)."""

    def __init__(self, F, space: Space | str | None = None):
        self.F = F
        self.space = get_space(space) if isinstance(space, str) else (space or F.space)

    def evaluate_many(self, zs) -> np.ndarray:
        """F at every z; NaN (a non-finite value, which stops an optimizer) where z is so far out
        that (h, s, l) overflows: there is no network there, not even a penalised one."""
        points = [self._point(z) for z in zs]
        finite = [k for k, point in enumerate(points) if np.all(np.isfinite(point))]
        values = np.full(len(points), np.nan)
        if finite:
            values[finite] = self.F.evaluate_many([points[k] for k in finite])
        return values

    def _point(self, z) -> np.ndarray:
        point = self.space.to_point(z)
        if not np.all(np.isfinite(point)):
            return np.full(3, np.nan)  # F refuses it: the optimizer sees a non-finite value
        return point

    def steps_lost(self, z) -> bool:
        """:meth:`Objective.steps_lost` at z's point (False where the point overflows: F is NaN there)."""
        point = self._point(z)
        return bool(np.all(np.isfinite(point))) and self.F.steps_lost(point)

    @property
    def bounds(self) -> np.ndarray:
        """The sane box in z."""
        return np.array([[self.space.coordinate(i, low), self.space.coordinate(i, high)]
                         for i, (low, high, _) in enumerate(self.F.sane_ranges)])

    def snap(self, z) -> np.ndarray:
        """z moved to the nearest whole hidden size and sequence length (inside the sane box): the
        samplers try networks that exist, one training per replica instead of four corners."""
        point = self.space.to_point(z)
        for i in (0, 1):
            low, high, _ = self.F.sane_ranges[i]
            point[i] = min(max(round(point[i]), low), high)
        snapped = self.space.from_point(point)
        snapped[2] = z[2]
        return snapped

    def initial_point(self, seed) -> np.ndarray:
        """The objective's own start, in z (for the held-out objective: uniform in the sane box in z)."""
        return self.space.from_point(self.F.initial_point(seed, self.space))

    def to_point(self, z) -> np.ndarray:
        """(h, s, l) of z."""
        return self.space.to_point(z)

    def value_and_grad(self, z, step: float = DEFAULT_LR_STEP, method: str = "forward") -> tuple[float, np.ndarray]:
        """(F, gradient in z) for gradient-based code (``scipy.optimize.minimize(view.value_and_grad,
        z0, jac=True, bounds=view.bounds)``): exact corner differences along h and s, a difference of
        ``step`` in z along l (0.05 decades by default: 1e-8 would measure Adagrad's chaos, not F)."""
        value, gradient = self.value_and_gradient(np.asarray(z, dtype=float), step, method)
        return float(value), gradient

    def value_and_gradient(self, z, h, method, f0=None, diagnostics=None, evaluate=None):
        """(F, gradient in z): exact corner differences along h and s (common noise), a finite
        difference in z along l; finite differences in z along all three otherwise, and for
        ``method="span"`` (wide central differences between whole networks, :meth:`snap`). ``evaluate``
        is the batch function the differences go through (the optimizer's counting one)."""
        evaluate = evaluate or self.evaluate_many
        z = np.asarray(z, dtype=float)
        point = self._point(z)
        if method == "span" or not np.all(np.isfinite(point)) or not self.F.exact_cell_partials:
            return super().value_and_gradient(z, h, method, f0, diagnostics, evaluate)
        value, dF_dh, dF_ds = self.F.cell_partials(point)
        factors = self.space.chain_factors(point)
        along_l = BatchFunction(lambda zls: evaluate([[z[0], z[1], float(zl[0])] for zl in zls]))
        lr_diagnostics = {} if diagnostics is not None else None
        _, (dz_l,) = value_and_gradient(along_l, z[2:], h, method, value, lr_diagnostics)
        gradient = np.array([dF_dh * factors[0], dF_ds * factors[1], dz_l])
        if diagnostics is not None:
            diagnostics.update(exact=[True, True, False], **{
                key: [None, None, values[0]] for key, values in lr_diagnostics.items()})
        return value, gradient
