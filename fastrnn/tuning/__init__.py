"""Tuning runs on the RNN objective: one resumable run recorded as a JSON Lines file
(``runner``: ``tune``, the run files), methods head to head (``compare``), the paper's nine
trials (``reproduce``) and the figures of run files (``plots``, which loads matplotlib).

``fastrnn.tuning.tune`` (and the other names of ``runner``) are re-exported here.
"""

from .runner import (
    FORMAT_VERSION,
    FORMAT_VERSIONS,
    HELDOUT_SETTINGS,
    RunFile,
    RunFileError,
    default_method,
    read_run,
    run_is_finished,
    search_problem,
    trajectory_array,
    tune,
)

__all__ = [
    "FORMAT_VERSION", "FORMAT_VERSIONS", "HELDOUT_SETTINGS", "RunFile", "RunFileError", "default_method", "read_run",
    "run_is_finished", "search_problem", "trajectory_array", "tune",
]
