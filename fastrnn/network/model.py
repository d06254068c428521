"""Parameters of the vanilla char-RNN: layout, initialisation, training state, persistence.

All backends share one flat layout (float64, or float32 on the compiled backends), so a batch
of runs can be handed to a compiled kernel as a few contiguous buffers::

    [ Wxh (H*V) | Whh (H*H) | Why (V*H) | bh (H) | by (V) ]     (each block row-major)
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

#: Gradients are clipped elementwise to [-GRADIENT_CLIP, GRADIENT_CLIP] (min-char-rnn).
GRADIENT_CLIP = 5.0
#: Adagrad's epsilon: ``param -= lr * d / sqrt(mem + ADAGRAD_EPS)``.
ADAGRAD_EPS = 1e-8
#: Weight of the newest loss in the exponential moving average ``smooth_loss``.
SMOOTHING = 0.001
#: Standard deviation of the initial weights (min-char-rnn's ``randn(...) * 0.01``).
INIT_SCALE = 0.01

#: Floating-point types the compiled kernels train in; float64 is the paper's (and the reference's).
DTYPES = ("float64", "float32")
_KNOWN_DTYPES = {key: np.dtype(name) for name in DTYPES for key in (name, np.dtype(name))}

#: Training-run statuses.
STATUS_OK = 0
STATUS_DIVERGED = 1
#: A kernel's answer, never a state's: it met a character id outside [0, vocab_size) and stopped
#: before reading that window (the backend raises :data:`BAD_ID_MESSAGE` as a ValueError).
STATUS_BAD_ID = -1
BAD_ID_MESSAGE = "data holds a character id outside [0, vocab_size)"


class Weights(NamedTuple):
    """Views of the five parameter blocks inside one flat buffer."""

    Wxh: np.ndarray  # (H, V) input -> hidden
    Whh: np.ndarray  # (H, H) hidden -> hidden
    Why: np.ndarray  # (V, H) hidden -> output
    bh: np.ndarray  # (H,)
    by: np.ndarray  # (V,)


def parameter_count(hidden: int, vocab_size: int) -> int:
    H, V = hidden, vocab_size
    return H * V + H * H + V * H + H + V


def unpack(flat: np.ndarray, hidden: int, vocab_size: int) -> Weights:
    """Views (not copies) of the parameter blocks of ``flat``."""
    H, V = hidden, vocab_size
    if flat.shape != (parameter_count(H, V),):
        raise ValueError(f"flat parameter buffer has shape {flat.shape}; H={H}, V={V} needs ({parameter_count(H, V)},)")
    a = H * V
    b = a + H * H
    c = b + V * H
    d = c + H
    return Weights(flat[:a].reshape(H, V), flat[a:b].reshape(H, H), flat[b:c].reshape(V, H), flat[c:d], flat[d:])


def check_dtype(dtype) -> np.dtype:
    """``dtype`` as a numpy dtype, or ValueError listing the supported ones."""
    known = _KNOWN_DTYPES.get(dtype) if isinstance(dtype, (str, np.dtype)) else None
    if known is not None:  # the common case, on every run of a batch: no dtype parsing
        return known
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    return resolved


_per_thread = threading.local()


def _seeded_random_state(seed: int) -> np.random.RandomState:
    """The stream of ``RandomState(seed)``, from a per-thread generator reseeded in place.

    Building a RandomState costs about 140 us (its SeedSequence set-up), as much as a whole
    small training run; reseeding one gives the identical stream in about 2 us.
    """
    rng = getattr(_per_thread, "random_state", None)
    if rng is None:
        rng = _per_thread.random_state = np.random.RandomState()
    rng.seed(seed)
    return rng


class _RecentWeights:
    """Initial weights drawn recently, least recently used dropped first beyond ``max_bytes``.

    With common random numbers every evaluation of the objective trains the same (hidden size,
    seed) networks again, and drawing their weights (about 25 ns a weight) costs more than
    training a small network for ten steps; a copy costs a few percent of a draw.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            flat = self._entries.get(key)
            if flat is not None:
                self._entries.move_to_end(key)
            return flat

    def put(self, key: tuple, flat: np.ndarray) -> None:
        with self._lock:
            if key in self._entries or flat.nbytes > self.max_bytes:
                return
            self._entries[key] = flat
            self._bytes += flat.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


_recent_weights = _RecentWeights(max_bytes=64 * 2**20)


def initial_parameters(hidden: int, vocab_size: int, seed: int, dtype="float64", out: np.ndarray | None = None
                       ) -> np.ndarray:
    """Flat initial weights drawn exactly as min-char-rnn does, from ``RandomState(seed)``.

    The draw order (Wxh, then Whh, then Why) matters: it makes a seed mean the same network
    as in the paper's own code. Weights are drawn in float64 and then rounded to ``dtype``,
    so a seed is the same network in either precision. Returns a new array the caller owns,
    or fills ``out`` (a writable array of ``dtype`` and the parameter count) and returns it:
    a packed batch draws straight into its buffer.
    """
    H, V = hidden, vocab_size
    dtype = check_dtype(dtype)
    key = (H, V, seed, dtype.name)
    recent = _recent_weights.get(key)
    if recent is None:
        rng = _seeded_random_state(seed)
        # randn(H, V) is H*V draws in row-major order, so drawing the blocks flat gives the same weights.
        flat = np.concatenate([rng.randn(H * V), rng.randn(H * H), rng.randn(V * H), np.zeros(H + V)])
        flat *= INIT_SCALE
        recent = flat.astype(dtype, copy=False)
        _recent_weights.put(key, recent.copy())
        if out is None:
            return recent
    if out is None:
        return recent.copy()
    if out.dtype != dtype or out.shape != recent.shape:
        raise ValueError(f"out must be a {dtype} array of shape {recent.shape}; got {out.dtype} {out.shape}")
    out[...] = recent
    return out


@functools.lru_cache(maxsize=1024)
def initial_smooth_loss(vocab_size: int, seq_length: int) -> float:
    """The loss of a uniform guess over ``seq_length`` characters, where min-char-rnn starts."""
    return -np.log(1.0 / vocab_size) * seq_length


@dataclass
class TrainState:
    """Everything a training run carries from one update to the next.

    Kernels advance it in place, so a run can be continued in chunks (for progress bars)
    with results identical to one uninterrupted call.
    """

    hidden: int
    seq_length: int
    learning_rate: float
    vocab_size: int
    params: np.ndarray
    memory: np.ndarray
    hprev: np.ndarray
    position: int = 0
    smooth_loss: float = 0.0
    last_loss: float = float("nan")
    steps: int = 0
    status: int = STATUS_OK
    seed: int | None = field(default=None)

    @classmethod
    def fresh(cls, hidden: int, seq_length: int, learning_rate: float, vocab_size: int, seed: int,
              dtype="float64") -> "TrainState":
        params = initial_parameters(hidden, vocab_size, seed, dtype)
        return cls(
            hidden=hidden,
            seq_length=seq_length,
            learning_rate=float(learning_rate),
            vocab_size=vocab_size,
            params=params,
            memory=np.zeros_like(params),
            hprev=np.zeros(hidden, dtype=params.dtype),
            smooth_loss=initial_smooth_loss(vocab_size, seq_length),
            seed=seed,
        )

    @property
    def dtype(self) -> np.dtype:
        return self.params.dtype

    @property
    def weights(self) -> Weights:
        return unpack(self.params, self.hidden, self.vocab_size)

    @property
    def diverged(self) -> bool:
        return self.status == STATUS_DIVERGED


def weights_are_finite(params: np.ndarray) -> bool:
    return bool(np.isfinite(params).all())
