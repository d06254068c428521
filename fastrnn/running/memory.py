"""How much memory training runs need, estimated before they are allocated.

A run holds its weights and their Adagrad memory (one value each per parameter), its hidden
state, and, while it trains, a workspace: the gradient (one value per parameter) and the
activations of one sequence ((2S + 1) H + S V values). Initial weights are drawn in float64
(two temporary copies) before they are rounded to the run's precision, and the Cython backend
trains a batch from contiguous copies of every run's weights and memory. So, with P
parameters and ``item`` bytes a value::

    held by every run of a batch   item (4 P + 2 H)        weights, memory, the batch's copies
    per run in flight (a thread)   item (P + (2S + 1) H + S V + 4 H + V) + 16 P

A batch keeps every run it trains until the last one ends, and ``threads`` of them are in
flight at once. The estimate is checked against the memory the system reports available
(``MemAvailable`` in /proc/meminfo, else ``os.sysconf``) before anything is allocated, so a
run that cannot fit fails at once with one line instead of swapping or dying with a
traceback deep inside numpy. Batches under :data:`CHECK_ABOVE` bytes are not checked: every
machine that runs this has that much, and reading /proc/meminfo on every small evaluation
would cost more than the check is worth.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from ..network.model import parameter_count

#: Batches estimated below this are not checked against the available memory.
CHECK_ABOVE = 256 * 2**20


class MemoryLimitError(ValueError):
    """Training runs that would need more memory than the machine has available."""


def run_bytes(hidden: int, seq_length: int, vocab_size: int, dtype="float64") -> tuple[int, int]:
    """``(held, in_flight)``: bytes a run holds for the whole batch, and more while it trains."""
    H, S, V = int(hidden), int(seq_length), int(vocab_size)
    P = parameter_count(H, V)
    item = np.dtype(dtype).itemsize
    held = item * (4 * P + 2 * H)
    in_flight = item * (P + (2 * S + 1) * H + S * V + 4 * H + V) + 16 * P
    return held, in_flight


def batch_bytes(specs: Iterable[tuple], threads: int = 1) -> int:
    """Estimated peak bytes of training every ``(hidden, seq_length, vocab_size, dtype)`` run of
    a batch, ``threads`` of them at a time."""
    sizes = [run_bytes(*spec) for spec in specs]
    largest_in_flight = sorted((in_flight for _, in_flight in sizes), reverse=True)[: max(1, int(threads))]
    return sum(held for held, _ in sizes) + sum(largest_in_flight)


def available_bytes() -> int | None:
    """Memory the system can give without swapping, or None where it does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_memory(needed: int, what: str, fix: str) -> None:
    """MemoryLimitError if ``needed`` bytes exceed the available memory (see the module notes)."""
    if needed < CHECK_ABOVE:
        return
    available = available_bytes()
    if available is not None and needed > available:
        raise MemoryLimitError(f"{what} needs about {format_bytes(needed)} of memory; this machine has "
                               f"{format_bytes(available)} available; {fix}")
