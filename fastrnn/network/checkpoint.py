"""Saving a trained model to ``.npz`` and loading it back.

The file holds plain arrays only (no pickles): the five weight blocks under their min-char-rnn
names, the Adagrad memories, the hidden state and data pointer (so training could continue),
the vocabulary as a unicode array, and the hyperparameters and final losses as scalars.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from .model import TrainState, Weights, parameter_count, unpack

FORMAT_VERSION = 1
_WEIGHT_NAMES = Weights._fields


class CheckpointError(ValueError):
    """A model file that is missing, unreadable or not a fastrnn model."""


@dataclass
class Model:
    """A trained network and the vocabulary it was trained on."""

    state: TrainState
    vocab: tuple[str, ...]
    corpus_name: str = ""


def save_model(path: str | os.PathLike, state: TrainState, vocab, corpus_name: str = "") -> None:
    """Write ``state`` and ``vocab`` to ``path`` atomically (a partial file never replaces a good one)."""
    weights = state.weights
    memories = unpack(state.memory, state.hidden, state.vocab_size)
    arrays = {name: block for name, block in zip(_WEIGHT_NAMES, weights)}
    arrays.update({f"mem_{name}": block for name, block in zip(_WEIGHT_NAMES, memories)})
    arrays.update(
        format_version=np.int64(FORMAT_VERSION),
        vocab=np.array(list(vocab), dtype="<U1"),
        hprev=state.hprev,
        hidden=np.int64(state.hidden),
        seq_length=np.int64(state.seq_length),
        learning_rate=np.float64(state.learning_rate),
        position=np.int64(state.position),
        steps=np.int64(state.steps),
        smooth_loss=np.float64(state.smooth_loss),
        last_loss=np.float64(state.last_loss),
        status=np.int64(state.status),
        seed=np.int64(-1 if state.seed is None else state.seed),
        corpus_name=np.array(corpus_name),
    )
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise CheckpointError(f"model files end in .npz (numpy would add it silently), got {path!r}")
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        raise CheckpointError(f"cannot write model file {path!r}: {exc.strerror or exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_model(path: str | os.PathLike) -> Model:
    """Read a file written by :func:`save_model`, checking that its arrays fit together."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except FileNotFoundError:
        raise CheckpointError(f"model file {path!r} does not exist; train one with `fastrnn train --save {path}`") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        # numpy's own reasons (pickled data, bad zip headers) talk about its internals, not the fix.
        raise CheckpointError(f"{path!r} is not a readable .npz model file; pass a file written by "
                              "`fastrnn train --save`") from exc
    missing = [name for name in (*_WEIGHT_NAMES, "vocab", "hidden", "seq_length", "learning_rate") if name not in arrays]
    if missing:
        raise CheckpointError(f"{path!r} is not a fastrnn model: it lacks {', '.join(missing)}")
    vocab = tuple(str(c) for c in arrays["vocab"])
    H, V = int(arrays["hidden"]), len(vocab)
    expected = dict(Wxh=(H, V), Whh=(H, H), Why=(V, H), bh=(H,), by=(V,))
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise CheckpointError(f"{path!r}: {name} has shape {arrays[name].shape}, expected {shape} for H={H}, V={V}")
    if "hprev" in arrays and arrays["hprev"].shape != (H,):
        raise CheckpointError(f"{path!r}: hprev has shape {arrays['hprev'].shape}, expected {(H,)} for H={H}")
    params = np.concatenate([arrays[name].ravel().astype(np.float64) for name in _WEIGHT_NAMES])
    if all(f"mem_{name}" in arrays for name in _WEIGHT_NAMES):
        memory = np.concatenate([arrays[f"mem_{name}"].ravel().astype(np.float64) for name in _WEIGHT_NAMES])
    else:
        memory = np.zeros(parameter_count(H, V))
    seed = int(arrays.get("seed", -1))
    state = TrainState(
        hidden=H,
        seq_length=int(arrays["seq_length"]),
        learning_rate=float(arrays["learning_rate"]),
        vocab_size=V,
        params=params,
        memory=memory,
        hprev=np.array(arrays.get("hprev", np.zeros(H)), dtype=np.float64),
        position=int(arrays.get("position", 0)),
        smooth_loss=float(arrays.get("smooth_loss", np.nan)),
        last_loss=float(arrays.get("last_loss", np.nan)),
        steps=int(arrays.get("steps", 0)),
        status=int(arrays.get("status", 0)),
        seed=None if seed < 0 else seed,
    )
    return Model(state=state, vocab=vocab, corpus_name=str(arrays.get("corpus_name", "")))
