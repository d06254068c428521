"""Tuning runs on the RNN objective: one resumable run recorded as a JSON Lines file
(``runner``: ``tune``, the run files), methods head to head (``compare``), the paper's nine
trials (``reproduce``) and the figures of run files (``plots``, which loads matplotlib).

``fastrnn.tuning.tune`` (and the other names in ``runner.__all__``) are re-exported here.
"""

from .runner import *  # noqa: F403
from .runner import __all__  # noqa: F401
