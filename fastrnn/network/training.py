"""Training one char-RNN: the public, validating entry point over the backends."""

from __future__ import annotations

from typing import Callable

from .._validation import check_int, check_learning_rate, check_seed
from ..backends import DEFAULT_BACKEND, Backend, check_backend_dtype, get_backend
from ..running.memory import batch_bytes, check_memory
from .corpus import Corpus
from .model import TrainState, check_dtype

#: Updates per kernel call when a progress callback is given (each call costs microseconds).
PROGRESS_CHUNK = 100


def new_state(corpus: Corpus, hidden: int, seq_length: int, learning_rate: float, seed: int,
              dtype="float64") -> TrainState:
    """A validated fresh run: weights drawn as min-char-rnn does from ``RandomState(seed)``."""
    hidden = check_int("hidden size", hidden, 1)
    seq_length = check_int("sequence length", seq_length, 1)
    learning_rate = check_learning_rate(learning_rate)
    seed = check_seed(seed)
    corpus.require_length(seq_length)
    check_memory(batch_bytes([(hidden, seq_length, corpus.vocab_size, check_dtype(dtype))]),
                 f"a run with hidden size {hidden}", "use a smaller hidden size")
    return TrainState.fresh(hidden, seq_length, learning_rate, corpus.vocab_size, seed, check_dtype(dtype))


def train(
    corpus: Corpus,
    hidden: int = 100,
    seq_length: int = 25,
    learning_rate: float = 0.1,
    steps: int = 100,
    seed: int = 0,
    backend: str | Backend = DEFAULT_BACKEND,
    progress: Callable[[TrainState], None] | None = None,
    state: TrainState | None = None,
    dtype="float64",
) -> TrainState:
    """Train for exactly ``steps`` Adagrad updates (or until the run diverges).

    ``state`` continues an earlier run (on a corpus with its vocabulary size; ``hidden``,
    ``seq_length``, ``learning_rate``, ``seed`` and ``dtype`` are then the state's);
    ``progress`` is called after every chunk of :data:`PROGRESS_CHUNK` updates. The paper's "loss after alpha steps" is
    ``result.smooth_loss`` with ``steps=alpha``. ``dtype="float32"`` trains in single
    precision (compiled backends only).
    """
    steps = check_int("steps", steps, 0)
    runner = get_backend(backend)
    if state is None:
        state = new_state(corpus, hidden, seq_length, learning_rate, seed, dtype)
    elif state.vocab_size != corpus.vocab_size:
        raise ValueError(f"the state's network reads {state.vocab_size} distinct characters and this corpus has "
                         f"{corpus.vocab_size}: continue a run on the corpus it was started on")
    else:
        corpus.require_length(state.seq_length)
    check_backend_dtype(runner, state.dtype)
    data = corpus.data
    if progress is None:
        runner.train_steps(data, state, steps)
        return state
    remaining = steps
    while remaining > 0 and not state.diverged:
        chunk = min(PROGRESS_CHUNK, remaining)
        runner.train_steps(data, state, chunk)
        remaining -= chunk
        progress(state)
    return state

