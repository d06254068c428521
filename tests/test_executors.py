"""The threads executor: outcomes in order, cancellation, Ctrl-C honoured within a fraction of a second."""

from __future__ import annotations

import _thread
import threading
import time

import numpy as np
import pytest

from fastrnn.backends import RunSpec
from fastrnn.network.corpus import Corpus
from fastrnn.objective.function import Objective
from fastrnn.running.executors import ThreadExecutor, make_executor
from fastrnn.running.runs import RunOutcome, run_shared


def test_outcomes_come_back_in_spec_order_and_equal_single_runs(backend, small_corpus):
    V = small_corpus.vocab_size
    specs = [RunSpec(h, s, 0.1, V, seed, steps) for h, s, seed, steps in
             [(8, 3, 0, 40), (30, 12, 1, 7), (16, 5, 2, 0), (21, 9, 3, 25)]]
    outcomes = ThreadExecutor(threads=2).run(backend, small_corpus.data, specs)
    for spec, outcome in zip(specs, outcomes):
        state = spec.new_state()
        backend.train_steps(small_corpus.data, state, spec.steps)
        np.testing.assert_equal(tuple(outcome), tuple(RunOutcome.of(state)))  # NaN last_loss at 0 steps


def test_run_shared_stops_taking_items_once_cancelled():
    cancel = threading.Event()
    seen = []

    def task(item):
        seen.append(item)
        if item == 3:
            cancel.set()

    run_shared(task, range(100), threads=1, cancel=cancel)
    assert seen == [0, 1, 2, 3]


def test_an_error_in_a_worker_thread_reaches_the_caller_after_every_thread_returned():
    finished = []

    def task(item):
        if item == 1:
            raise RuntimeError("boom")
        time.sleep(0.01)
        finished.append(item)

    with pytest.raises(RuntimeError, match="boom"):
        run_shared(task, range(6), threads=2)
    assert len(finished) < 5  # the batch stopped early


def test_make_executor_names_the_valid_ones():
    assert make_executor("threads", threads=3).threads == 3
    with pytest.raises(ValueError, match="valid executors: threads"):
        make_executor("mpi")
    with pytest.raises(ValueError, match="threads must be"):
        ThreadExecutor(threads=0)


def test_ctrl_c_stops_an_evaluation_within_a_fraction_of_a_second(backend, small_corpus):
    """An evaluation that would train for minutes stops soon after the interrupt, and nothing
    half-trained reaches the memo."""
    F = Objective(small_corpus, alpha=400_000, beta=2, threads=2, backend=backend, kind="paper")
    F((20, 5, 0.1))  # not interrupted: compiles the kernel on this thread's first use
    F = Objective(small_corpus, alpha=400_000, beta=2, threads=2, backend=backend, kind="paper")
    timer = threading.Timer(0.5, _thread.interrupt_main)
    started = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            F((100, 25, 0.1))
    finally:
        timer.cancel()
    stopped_after = time.perf_counter() - started - 0.5
    assert stopped_after < 2.0, stopped_after  # the evaluation itself takes about 100 s here
    assert F.memo_size == 0 and F.counters.trainings_run == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("fastrnn") and _busy(t)]


def _busy(thread: threading.Thread) -> bool:
    """A pool thread is idle once it waits for work; give it a moment to get there."""
    time.sleep(0.2)
    frame = __import__("sys")._current_frames().get(thread.ident)
    return frame is not None and "drain" in repr(frame.f_code)


@pytest.mark.parametrize("command", [
    ["objective", "100", "25", "0.1", "--objective", "paper", "--alpha", "400000", "--beta", "2"],
    ["gradient", "100.5", "25", "0.1", "--objective", "paper", "--alpha", "400000"],
])
def test_ctrl_c_in_the_command_line_exits_130_with_one_line_within_a_second(corpus_file, command):
    from helpers import invoke

    Objective(Corpus.from_text("ab" * 50), alpha=2, kind="paper")((20, 5, 0.1))  # compiled outside the timing
    timer = threading.Timer(1.0, _thread.interrupt_main)
    started = time.perf_counter()
    timer.start()
    try:
        result = invoke(command + ["--corpus", corpus_file, "--quiet"])
    finally:
        timer.cancel()
    assert result.exit_code == 130, result.output
    assert result.stderr.strip() == "Error: interrupted"
    assert time.perf_counter() - started - 1.0 < 2.0  # the whole command would train for minutes
