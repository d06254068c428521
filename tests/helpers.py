"""What several test modules share: synthetic texts, run helpers and comparisons."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from fastrnn.backends import BackendUnavailable, get_backend
from fastrnn.network.model import TrainState

#: (hidden size, sequence length) of the kernel comparisons: the benchmarks' configurations.
SIZES = [(20, 5), (100, 25), (410, 25)]

_WORDS = (
    "the and to of a my in you is that it not with for this me be your his he have thou but "
    "as so will what her thy all no by do shall if are we thee on our lord now good more o"
).split()


def synthetic_text(n_chars: int, seed: int = 0) -> str:
    """Speech-like text: 'NAME:' lines and lines of words, about 40 distinct characters."""
    rng = np.random.default_rng(seed)
    names = ["ROMEO", "JULIET", "KING", "FOOL"]
    parts = []
    size = 0
    while size < n_chars:
        speech = [f"{names[rng.integers(len(names))]}:"]
        for _ in range(rng.integers(1, 4)):
            words = rng.choice(_WORDS, size=rng.integers(3, 9))
            line = " ".join(words).capitalize() + str(rng.choice(list(",.;!?")))
            speech.append(line)
        block = "\n".join(speech) + "\n\n"
        parts.append(block)
        size += len(block)
    return "".join(parts)[:n_chars]


def word_text(seed: int = 20240607) -> str:
    """A few thousand characters of word-like text over about 45 distinct characters."""
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ")
    words = ["".join(rng.choice(letters, size=rng.integers(1, 9))) for _ in range(300)]
    pieces = []
    for _ in range(900):
        pieces.append(words[rng.integers(len(words))])
        pieces.append(rng.choice([" ", " ", " ", ", ", ". ", ";\n", "!\n", "?", "'"]))
    return "".join(pieces)


def fresh_state(corpus, H, S, lr, seed=0, scale=1.0, dtype="float64") -> TrainState:
    state = TrainState.fresh(H, S, lr, corpus.vocab_size, seed, dtype=dtype)
    state.params *= scale
    return state


def run_fresh(backend, corpus, H, S, lr, steps, seed=0, dtype="float64") -> TrainState:
    """A new run of ``steps`` updates on ``backend``."""
    state = TrainState.fresh(H, S, lr, corpus.vocab_size, seed, dtype=dtype)
    backend.train_steps(corpus.data, state, steps)
    return state


def copy_state(state: TrainState) -> TrainState:
    return TrainState(
        hidden=state.hidden, seq_length=state.seq_length, learning_rate=state.learning_rate,
        vocab_size=state.vocab_size, params=state.params.copy(), memory=state.memory.copy(),
        hprev=np.array(state.hprev, dtype=state.params.dtype), position=state.position, smooth_loss=state.smooth_loss,
        last_loss=state.last_loss, steps=state.steps, status=state.status, seed=state.seed,
    )


def relative_error(actual, expected) -> float:
    """max |actual - expected| / max |expected|, in float64."""
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(np.asarray(actual, dtype=np.float64) - expected)) / np.max(np.abs(expected)))


def assert_close(actual, expected, rtol):
    """Every element within ``rtol`` of the largest expected magnitude."""
    error = relative_error(actual, expected)
    assert error <= rtol, (error, rtol)


def assert_same_run(a: TrainState, b: TrainState):
    """Bit-identical runs."""
    assert np.array_equal(a.params, b.params, equal_nan=True)
    assert np.array_equal(a.memory, b.memory, equal_nan=True)
    assert np.array_equal(a.hprev, b.hprev, equal_nan=True)
    assert (a.position, a.steps, a.status) == (b.position, b.steps, b.status)
    assert a.smooth_loss == b.smooth_loss
    assert a.last_loss == b.last_loss or (math.isnan(a.last_loss) and math.isnan(b.last_loss))


def on_paper_objective(args: list) -> list:
    """CLI args of a command that trains, on the paper's objective (``--objective paper``) unless
    they choose one or resume a run (which keeps its own): the tests written for its numbers."""
    args = list(args)
    if args and args[0] in ("objective", "gradient", "tune") and "--objective" not in args and "--resume" not in args:
        args[1:1] = ["--objective", "paper"]
    return args


def invoke(args, paper: bool = True):
    """The command line run in-process (click's CliRunner); ``paper``: on the paper's objective
    unless the arguments choose one (see :func:`on_paper_objective`)."""
    from click.testing import CliRunner
    from fastrnn.cli.main import cli

    return CliRunner().invoke(cli, on_paper_objective(args) if paper else list(args), prog_name="fastrnn")


def assert_one_line_error(result, *fragments, exit_code: int = 2):
    """Exit status ``exit_code`` and exactly one ``Error: ...`` line on stderr holding every fragment."""
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.output


def methods_available():
    """The optimizer methods whose dependencies are installed: tpe needs the optuna extra (CI
    installs it, and test_backends.test_required_extras_are_installed fails there without it)."""
    import importlib.util

    from fastrnn.optimize.methods import METHODS

    return [m for m in METHODS if m != "tpe" or importlib.util.find_spec("optuna") is not None]


def unavailable_reason(name: str) -> str | None:
    """Why the registered backend ``name`` is not built here, or None when it is."""
    try:
        get_backend(name)
    except BackendUnavailable as exc:
        return str(exc)
    return None


def backend_params(names) -> list:
    """``names`` (from the registry: ``BACKEND_NAMES``, ``COMPILED_BACKENDS``) as pytest parameters,
    each one that is not built here skipped with the reason (CI requires them built:
    ``FASTRNN_REQUIRE_BACKENDS``, tests/test_backends.py)."""
    params = []
    for name in names:
        reason = unavailable_reason(name)
        params.append(name if reason is None else pytest.param(name, marks=pytest.mark.skip(reason=reason)))
    return params


def available_backends(names) -> list[str]:
    """Those of ``names`` that are built here."""
    return [name for name in names if unavailable_reason(name) is None]


class BatchRecorder:
    """A function with evaluate_many that records every batch it receives."""

    def __init__(self, f):
        self.f = f
        self.batches = []
        self.single_calls = 0

    def __call__(self, x):
        self.single_calls += 1
        return self.f(x)

    def evaluate_many(self, points):
        self.batches.append([np.array(p) for p in points])
        return np.array([self.f(p) for p in points])

    @property
    def batch_sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]


def cython_extension_or_skip():
    """The built Cython extension module; where it is not built, a module-level skip (an error
    under CI, which builds it)."""
    try:
        from fastrnn.backends import _rnn_cython
    except ImportError as exc:  # pragma: no cover - depends on the build
        if os.environ.get("CI"):
            raise
        pytest.skip(f"fastrnn.backends._rnn_cython is not built ({exc}); build it with `pip install -e .`",
                    allow_module_level=True)
    return _rnn_cython
