"""Kept so that README's older path ``fastrnn.samplers`` keeps working: this module *is*
:mod:`fastrnn.optimize.samplers` (the canonical path; new code imports that)."""

import sys

from .optimize import samplers

sys.modules[__name__] = samplers
