"""Side-by-side speed measurements of the backends, for ``fastrnn bench`` and README's tables.

The machine this runs on is shared and noisy, so every figure is a median over rounds in which
the contenders run in turn (A B A B ...), and ratios are the medians of the ratios taken round
by round: a slow patch of the machine then slows both sides of a ratio alike.

One module per concern, each importing only those listed before it:

- :mod:`~fastrnn.bench.rates`: training steps per second of each backend (single thread), and the
  calibration every timing shares;
- :mod:`~fastrnn.bench.threads`: the two-thread speed-up of an evaluation of F beside this
  machine's ideal one (:class:`IdealTasks`);
- :mod:`~fastrnn.bench.roofline`: the work model of a training step and its lower bound from
  this machine's ceilings (``--roofline``);
- :mod:`~fastrnn.bench.ceilings`: measuring those ceilings (BLAS GEMM, cache sizes from sysfs,
  read bandwidths, the Adagrad update);
- :mod:`~fastrnn.bench.phases`: the numba kernel's step phase by phase, each against its own
  bound (``--phases``);
- :mod:`~fastrnn.bench.dask_comparison`: the dask executor against the threads executor
  (``--executor dask``);
- :mod:`~fastrnn.bench.report`: one repeat of everything (:func:`bench_run`) and the Markdown tables.

The names below are the ones ``fastrnn bench`` and ``benches/`` use.
"""

from .ceilings import cache_sizes, measure_ceilings
from .dask_comparison import (
    EXECUTOR_CONFIGS,
    ExecutorRow,
    dask_task_overhead,
    executor_comparison,
    tuning_step_profile,
)
from .phases import PHASES, PhaseRow, phase_models, step_phases
from .rates import CONFIGS, MIN_SECONDS, RateRow, step_rates
from .report import (
    BenchRun,
    bench_run,
    bench_stages,
    ceilings_markdown,
    dask_markdown,
    phases_markdown,
    rates_markdown,
    roofline_markdown,
    span,
    threads_markdown,
)
from .roofline import (
    ROOFLINE_BACKENDS,
    ROOFLINE_DTYPES,
    Ceilings,
    RooflineRow,
    StepModel,
    home_level,
    level_names,
    mean_distinct,
    roofline,
    roofline_bound,
    roofline_rows,
    step_bound,
    step_model,
)
from .threads import IdealTasks, ThreadRow, thread_speedup

__all__ = [
    "CONFIGS", "EXECUTOR_CONFIGS", "MIN_SECONDS", "PHASES", "ROOFLINE_BACKENDS", "ROOFLINE_DTYPES",
    "BenchRun", "Ceilings", "ExecutorRow", "IdealTasks", "PhaseRow", "RateRow", "RooflineRow", "StepModel", "ThreadRow",
    "bench_run", "bench_stages", "cache_sizes", "ceilings_markdown", "dask_markdown", "dask_task_overhead",
    "executor_comparison", "home_level", "level_names", "mean_distinct", "measure_ceilings", "phase_models",
    "phases_markdown", "rates_markdown", "roofline", "roofline_bound", "roofline_markdown", "roofline_rows", "span",
    "step_bound", "step_model", "step_phases", "step_rates", "thread_speedup", "threads_markdown",
    "tuning_step_profile",
]
