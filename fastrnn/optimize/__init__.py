"""The methods that minimise a function: ``minimize`` and its method table (``methods``), the
finite differences (``calculus``), what an optimizer may ask of the function (``problem``) and
the samplers that propose points (``samplers``). Nothing here knows the RNN, the paper or a
backend.

``fastrnn.optimize.minimize`` (and the other names of ``methods``) are re-exported here.
"""

from .methods import (
    METHOD_TABLE,
    METHODS,
    SKIPPED_UPDATE_NOTE,
    STATUS_MESSAGES,
    BFGSUpdate,
    DFPUpdate,
    Method,
    OptimizeResult,
    Option,
    QuasiNewtonUpdate,
    Status,
    StopOptimization,
    check_method,
    check_run_arguments,
    default_options,
    minimize,
    resolve_options,
)

__all__ = [
    "METHOD_TABLE", "METHODS", "SKIPPED_UPDATE_NOTE", "STATUS_MESSAGES", "BFGSUpdate", "DFPUpdate", "Method",
    "OptimizeResult", "Option", "QuasiNewtonUpdate", "Status", "StopOptimization", "check_method",
    "check_run_arguments", "default_options", "minimize", "resolve_options",
]
