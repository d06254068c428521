"""Ctrl-C and SIGTERM wait for a kernel call and its write-back (fastrnn.running.interrupts).

CI once hung on tests/test_halving.py's SIGTERM test: the KeyboardInterrupt was raised in the
main thread while numba was loading a kernel and held llvmlite's lock, and a helper thread that
needed the same kernel waited for that lock for ever. The model of that failure here is a kernel
call that takes a lock in plain Python (no try/finally, as numba's dispatch does) around the
moment the signal arrives."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from fastrnn.backends import get_backend
from fastrnn.backends.numba import NumbaBackend
from fastrnn.running import interrupts

from helpers import assert_same_run, copy_state, fresh_state


@pytest.fixture
def handlers():
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install()
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_outside_a_region_a_signal_interrupts_at_once(handlers, number):
    reached = []
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(number)
        reached.append("after the signal")
    assert reached == []


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_inside_a_region_the_signal_waits_for_the_outermost_regions_end(handlers, number):
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            with interrupts.deferred():
                signal.raise_signal(number)
                time.sleep(0.01)  # a sleep is where a pending handler would run
                reached.append("inner")
            reached.append("outer")
        reached.append("after the region")
    assert reached == ["inner", "outer"]
    with interrupts.deferred():  # the signal was taken: the next region ends quietly
        pass


def test_a_helper_threads_region_does_not_defer_the_main_threads_signal(handlers):
    inside, leave = threading.Event(), threading.Event()

    def helper():
        with interrupts.deferred():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=helper)
    thread.start()
    try:
        assert inside.wait(10)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
    finally:
        leave.set()
        thread.join()


def _dispatch_with_a_lock(lock, signals_left):
    """What numba's dispatch does on a kernel's first call in a process, with a signal landing
    inside it: a lock taken and released in Python code that an exception would skip."""
    lock.acquire()
    if signals_left and threading.current_thread() is threading.main_thread():
        signals_left.pop()
        signal.raise_signal(signal.SIGTERM)
        time.sleep(0.01)
    lock.release()


def test_a_signal_during_a_kernel_call_leaves_no_lock_held_and_the_state_trained(handlers, monkeypatch, small_corpus):
    backend = get_backend("numba")
    lock, signals_left = threading.Lock(), [1]
    kernel = NumbaBackend._kernel_train_steps

    def dispatch_then_train(self, data, state, n_steps):
        _dispatch_with_a_lock(lock, signals_left)
        return kernel(self, data, state, n_steps)

    monkeypatch.setattr(NumbaBackend, "_kernel_train_steps", dispatch_then_train)
    state = fresh_state(small_corpus, 12, 7, 0.1, seed=3)
    with pytest.raises(KeyboardInterrupt):
        backend.train_steps(small_corpus.data, state, 40)
    assert lock.acquire(blocking=False), "the interrupt left the kernel's lock held"
    assert state.steps == 40  # the kernel's results were written back before the interrupt
    monkeypatch.undo()
    straight = fresh_state(small_corpus, 12, 7, 0.1, seed=3)
    backend.train_steps(small_corpus.data, straight, 40)
    assert_same_run(state, straight)


def test_a_signal_during_a_batch_leaves_no_lock_held_and_every_state_continuable(handlers, monkeypatch,
                                                                                 small_corpus):
    """Two networks on two threads, each trained in several chunks; the signal lands in the main
    thread's first call. Both states hold what was trained, and continuing them to the end equals
    training them straight through."""
    backend = get_backend("numba")
    lock, signals_left = threading.Lock(), [1]
    kernel = NumbaBackend._kernel_train_batch

    def dispatch_then_train(self, args, threads):
        _dispatch_with_a_lock(lock, signals_left)
        return kernel(self, args, threads)

    monkeypatch.setattr(NumbaBackend, "_kernel_train_batch", dispatch_then_train)
    monkeypatch.setattr("fastrnn.backends._base.CHUNK_COST", 2_000_000)  # several calls per network
    states = [fresh_state(small_corpus, h, s, 0.1, seed=h) for h, s in ((16, 9), (24, 11))]
    straight = [copy_state(state) for state in states]
    with pytest.raises(KeyboardInterrupt):
        backend.train_many(small_corpus.data, states, [600, 500], threads=2)
    assert lock.acquire(blocking=False), "the interrupt left the kernel's lock held"
    lock.release()
    assert any(0 < state.steps for state in states) and any(state.steps < n for state, n in zip(states, (600, 500)))
    monkeypatch.undo()
    backend.train_many(small_corpus.data, states, [600 - states[0].steps, 500 - states[1].steps], threads=2)
    backend.train_many(small_corpus.data, straight, [600, 500], threads=2)
    for interrupted, uninterrupted in zip(states, straight):
        assert_same_run(interrupted, uninterrupted)
