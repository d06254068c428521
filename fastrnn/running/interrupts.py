"""Ctrl-C and SIGTERM land between kernel calls, never inside numba's dispatch of one.

Python runs a signal's handler in the main thread between two bytecodes, wherever that thread
is. Calling a numba kernel with new argument types loads (or compiles) its machine code in
Python code that holds numba's and llvmlite's locks; a KeyboardInterrupt raised there can leave
such a lock held for ever. A helper thread that needs the same kernel then waits for ever, and so
does the main thread, which waits for its helpers before it lets the interrupt end the run (2 runs
in 77 of tests/test_halving.py's SIGTERM test hung so on 2 cores, and 0 in 360 with the regions).

:func:`install` puts :func:`_on_signal` on SIGINT and SIGTERM (the command line does; a library
user keeps Python's own handlers). Inside :func:`deferred` in the main thread it notes the
signal and returns; the region's end raises the KeyboardInterrupt. Elsewhere it raises at once,
as Python's own SIGINT handler does. The wait is no longer than before, since a signal never
stopped a compiled call under way (training runs in chunks of about
:data:`fastrnn.backends._base.CHUNK_COST` multiply-adds), except while a kernel compiles for the
first time after installing (the install step compiles them).
"""

from __future__ import annotations

import contextlib
import signal
import threading

_depth = 0  # deferred regions the main thread is inside
_pending = False  # a signal arrived inside one


def _on_signal(signum, frame):
    global _pending
    if _depth:
        _pending = True
        return
    raise KeyboardInterrupt


def install(signals=(signal.SIGINT, signal.SIGTERM)) -> None:
    """End the process's work with KeyboardInterrupt on ``signals``, deferred inside :func:`deferred`."""
    for number in signals:
        signal.signal(number, _on_signal)


@contextlib.contextmanager
def deferred():
    """A region (a kernel call) that a signal does not interrupt; it raises at the region's end.

    Only the main thread's regions count: the handler runs there, and a helper thread is never
    interrupted by it."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending:
            _pending = False
            raise KeyboardInterrupt
