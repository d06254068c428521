"""Kept so that README's older path ``fastrnn.settings`` keeps working: this module *is*
:mod:`fastrnn.objective.settings` (the canonical path; new code imports that)."""

import sys

from .objective import settings

sys.modules[__name__] = settings
