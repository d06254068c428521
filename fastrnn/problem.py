"""Kept so that README's older path ``fastrnn.problem`` keeps working: this module *is*
:mod:`fastrnn.optimize.problem` (the canonical path; new code imports that)."""

import sys

from .optimize import problem

sys.modules[__name__] = problem
