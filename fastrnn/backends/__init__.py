"""Training backends: one registry over the NumPy reference and the compiled kernels.

Importing this package never fails because a backend is missing: each backend's module is
imported when the backend is first asked for, and one that cannot be imported raises
:class:`BackendUnavailable` saying how to get it.

Adding a backend is one module in this package (a :class:`Backend` subclass that calls its
kernel) and one line in :data:`REGISTRY`; the tests parametrise over the registry.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

from ..network.model import check_dtype
from ._base import (
    CHUNK_COST,
    PARALLEL_DRAW_MIN_WEIGHTS,
    Backend,
    BackendUnavailable,
    KernelResult,
    RunSpec,
    check_threads,
    default_threads,
    longest_first,
    step_cost,
)


class BackendEntry(NamedTuple):
    module: str  # relative to this package
    cls: str
    compiled: bool
    #: How to get the backend when its module cannot be imported.
    install_hint: str


#: Every backend, in the order ``fastrnn backends`` lists them.
REGISTRY: dict[str, BackendEntry] = {
    "numpy": BackendEntry(".reference", "NumpyBackend", False, "numpy is a dependency of fastrnn: pip install numpy"),
    "numba": BackendEntry(".numba", "NumbaBackend", True, "numba is a dependency of fastrnn: pip install numba"),
    "cython": BackendEntry(
        ".cython", "CythonBackend", True,
        "build it with `pip install -e .` from a source checkout "
        "(needs a C compiler; Cython and numpy are fetched as build requirements)",
    ),
}
BACKEND_NAMES = tuple(REGISTRY)
#: Backends that compile their kernel (every one is tested against the numpy reference).
COMPILED_BACKENDS = tuple(name for name, entry in REGISTRY.items() if entry.compiled)
DEFAULT_BACKEND = "numba"

_instances: dict[str, Backend] = {}


def get_backend(name: str | Backend) -> Backend:
    """The backend called ``name``; ValueError for an unknown name, BackendUnavailable if not built."""
    if isinstance(name, Backend):
        return name
    if name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKEND_NAMES)}")
    if name not in _instances:
        entry = REGISTRY[name]
        try:
            module = importlib.import_module(entry.module, __name__)
        except ImportError as exc:
            raise BackendUnavailable(f"the {name} backend is not available in this installation ({exc}); "
                                     f"{entry.install_hint}") from exc
        _instances[name] = getattr(module, entry.cls)()
    return _instances[name]


def check_backend_dtype(backend: Backend, dtype) -> str:
    """The dtype's name if ``backend`` trains in it, else ValueError saying which backends do."""
    name = check_dtype(dtype).name
    if name not in backend.dtypes:
        other = next(d for d in backend.dtypes if d != name)
        raise ValueError(f"the {backend.name} backend trains in {', '.join(backend.dtypes)} only; "
                         f"use the {' or '.join(COMPILED_BACKENDS)} backend for {name}, or train in {other} "
                         f"(--dtype {other})")
    return name


def backend_report() -> list[dict]:
    """For each backend: name, whether it is available, its threading and version (or why not)."""
    rows = []
    for name in BACKEND_NAMES:
        try:
            backend = get_backend(name)
        except BackendUnavailable as exc:
            rows.append(dict(name=name, available=False, threading="-", version="-", note=str(exc)))
        else:
            rows.append(dict(name=name, available=True, threading=backend.threading(), version=backend.version(), note=""))
    return rows


__all__ = [
    "Backend",
    "BackendUnavailable",
    "BACKEND_NAMES",
    "COMPILED_BACKENDS",
    "DEFAULT_BACKEND",
    "REGISTRY",
    "RunSpec",
    "KernelResult",
    "CHUNK_COST",
    "PARALLEL_DRAW_MIN_WEIGHTS",
    "backend_report",
    "check_backend_dtype",
    "check_threads",
    "default_threads",
    "get_backend",
    "longest_first",
    "step_cost",
]
