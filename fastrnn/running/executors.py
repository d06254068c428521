"""How a batch of training runs is computed: the seam between the objective and the machines.

The objective hands an executor a list of :class:`~fastrnn.backends.RunSpec` and gets back one
:class:`RunOutcome` per spec, in order. Each run is computed start to finish by one worker from
its own seed, so the outcomes do not depend on the executor, the number of workers, or which
runs share a batch.

``threads`` (:class:`ThreadExecutor`, the default) trains on this machine's cores: the numba
backend in packed `prange` calls on Numba's threads, the cython backend in OpenMP calls.
``dask`` (:class:`fastrnn.running.dask_executor.DaskExecutor`, the ``fastrnn[dask]`` extra) sends the runs
to the workers of a Dask cluster; its module is imported only when asked for, so fastrnn never
needs dask otherwise.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Sequence

# What executors share with the backends lives below both, in fastrnn.running.runs; the errors and
# RunOutcome are re-exported here, where the objective and the command line import them.
from .runs import ExecutorError, ExecutorUnavailable, RunOutcome, check_threads  # noqa: F401 (re-exported)

if TYPE_CHECKING:  # imported for annotations only
    from ..backends import Backend, RunSpec


class ThreadExecutor:
    """Runs every batch on this process's threads (``threads``: all cores by default)."""

    name = "threads"

    def __init__(self, threads: int | None = None):
        self.threads = check_threads(threads)

    def run(self, backend: "Backend", data, specs: Sequence["RunSpec"], heldout=None) -> list[RunOutcome]:
        """Train every spec (and score it on ``heldout`` text, if given); a Ctrl-C stops the batch
        within a fraction of a second."""
        cancel = threading.Event()
        try:
            return backend.run_specs(data, list(specs), threads=self.threads, cancel=cancel, heldout=heldout)
        except BaseException:
            cancel.set()
            raise

    def describe(self) -> dict:
        return dict(executor=self.name, threads=self.threads)

    def close(self) -> None:
        pass


EXECUTORS = ("threads", "dask")
DASK_INSTALL_HINT = "pip install 'fastrnn[dask]'"


def make_executor(executor="threads", *, threads: int | None = None, scheduler: str | None = None):
    """An executor from its name (``scheduler``: the Dask scheduler's address for ``dask``), a
    ``distributed.Client`` (its cluster runs the batches), or the executor object itself."""
    if hasattr(executor, "run") and hasattr(executor, "name"):
        return executor
    if scheduler is not None and executor != "dask":
        raise ValueError(f"scheduler={scheduler!r} is for the dask executor; pass executor='dask' with it")
    if executor == "threads":
        return ThreadExecutor(threads)
    if executor == "dask":
        return _dask_module().DaskExecutor(scheduler=scheduler)
    if type(executor).__name__ == "Client":  # a distributed.Client (not imported: dask is optional)
        return _dask_module().DaskExecutor.for_client(executor)
    raise ValueError(f"unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}, or a distributed.Client")


def dask_executor_class():
    """:class:`fastrnn.running.dask_executor.DaskExecutor`, or ExecutorUnavailable saying how to install it."""
    return _dask_module().DaskExecutor


def _dask_module():
    try:
        dask_executor = importlib.import_module(f"{__package__}.dask_executor")
    except ImportError as exc:
        raise ExecutorUnavailable(f"the dask executor needs Dask's distributed package ({exc}); "
                                  f"install it with {DASK_INSTALL_HINT}") from None
    return dask_executor
