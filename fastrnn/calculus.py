"""Kept so that README's older path ``fastrnn.calculus`` keeps working: this module *is*
:mod:`fastrnn.optimize.calculus` (the canonical path; new code imports that)."""

import sys

from .optimize import calculus

sys.modules[__name__] = calculus
