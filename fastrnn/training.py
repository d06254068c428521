"""Kept so that README's older path ``fastrnn.training`` keeps working: this module *is*
:mod:`fastrnn.network.training` (the canonical path; new code imports that)."""

import sys

from .network import training

sys.modules[__name__] = training
