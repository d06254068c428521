"""Saving a trained model (or a checkpoint of a long training) to ``.npz`` and loading it back.

The file holds plain arrays only (no pickles): the five weight blocks under their min-char-rnn
names and the Adagrad memories, in the precision the network trains in; the hidden state and
data pointer (so training continues exactly where it stopped); the vocabulary as a unicode
array; the hyperparameters and losses as scalars; and, from format 2 on, ``info``: a JSON text
saying what the network was trained on and how (the corpus's name and SHA-256, the held-out
split as the objective's settings record it, the training's target, its learning curve, the
held-out loss at the checkpoint, the backend, the fastrnn version), which ``fastrnn train
--resume`` checks before it continues. Format 1 files (no ``info``, weights read as float64)
are still read, sampled and scored; they cannot be resumed.

Writes are atomic: the file is written beside its destination under a name that does not end
in ``.npz``, flushed to disk, and renamed over it, so a killed process leaves the previous file
(or none), never a partial one under the model's name.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from .model import TrainState, Weights, check_dtype, parameter_count, unpack

#: 2: the weights keep their precision, and ``info`` (JSON) records what training needs to continue.
FORMAT_VERSION = 2
FORMAT_VERSIONS = (1, 2)
_WEIGHT_NAMES = Weights._fields


class CheckpointError(ValueError):
    """A model file or checkpoint that is missing, unreadable, not fastrnn's (or not this run's), or
    of an unknown format; or a file or folder that cannot be written."""


@dataclass
class Model:
    """A trained network, the vocabulary it was trained on, and what its file says about its training."""

    state: TrainState
    vocab: tuple[str, ...]
    corpus_name: str = ""
    format_version: int = FORMAT_VERSION
    #: What the training was (format 2; empty for format 1): see the module docstring.
    info: dict = field(default_factory=dict)


def save_model(path: str | os.PathLike, state: TrainState, vocab, corpus_name: str = "",
               info: dict | None = None) -> None:
    """Write ``state``, ``vocab`` and ``info`` (JSON-serialisable) to ``path`` atomically."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise CheckpointError(f"model files end in .npz (numpy would add it silently), got {path!r}")
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
        info=np.array(json.dumps(_json_safe(info or {}), allow_nan=False)),
    )
    write_npz_atomically(path, arrays, "model file")


def write_npz_atomically(path: str, arrays: dict, what: str) -> None:
    """``np.savez`` of ``arrays`` to ``path``, atomically: written to a temporary file, synced, then
    renamed over ``path``, so a killed writer never leaves a torn file in its place.
    CheckpointError naming ``what`` and the reason when it cannot be written."""
    tmp = f"{path}.tmp-{os.getpid()}"  # not *.npz: a killed writer leaves nothing that looks like a model
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise CheckpointError(f"cannot write {what} {path!r}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _json_safe(value):
    """``value`` with every non-finite float as None (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def check_writable_folder(folder: str | os.PathLike) -> str:
    """Create ``folder`` if needed and check that files can be written in it; CheckpointError
    naming the reason otherwise. Returns the folder's path."""
    folder = os.fspath(folder) or "."
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".fastrnn-write-test-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise CheckpointError(f"cannot write in folder {folder!r}: {exc.strerror or exc}; choose another folder") \
            from None
    return folder


def load_model(path: str | os.PathLike) -> Model:
    """Read a file written by :func:`save_model`, checking its format and that its arrays fit together."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}
    except FileNotFoundError:
        raise CheckpointError(f"model file {path!r} does not exist; train one with `fastrnn train --save {path}`") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path!r} is a folder, not a model file") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        # numpy's own reasons (pickled data, bad zip headers) talk about its internals, not the fix.
        raise CheckpointError(f"{path!r} is not a readable .npz model file; pass a file written by "
                              "`fastrnn train --save`") from exc
    missing = [name for name in (*_WEIGHT_NAMES, "vocab", "hidden", "seq_length", "learning_rate") if name not in arrays]
    if missing:
        raise CheckpointError(f"{path!r} is not a fastrnn model: it lacks {', '.join(missing)}")
    version = int(arrays.get("format_version", 1))
    if version not in FORMAT_VERSIONS:
        raise CheckpointError(f"{path!r} is a model file of format {version}, written by a newer fastrnn; this one "
                              f"reads formats {FORMAT_VERSIONS[0]} to {FORMAT_VERSIONS[-1]}: upgrade fastrnn "
                              "(pip install -U fastrnn) to use it")
    vocab = tuple(str(c) for c in arrays["vocab"])
    H, V = int(arrays["hidden"]), len(vocab)
    expected = dict(Wxh=(H, V), Whh=(H, H), Why=(V, H), bh=(H,), by=(V,))
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise CheckpointError(f"{path!r}: {name} has shape {arrays[name].shape}, expected {shape} for H={H}, V={V}")
    if "hprev" in arrays and arrays["hprev"].shape != (H,):
        raise CheckpointError(f"{path!r}: hprev has shape {arrays['hprev'].shape}, expected {(H,)} for H={H}")
    dtype = _dtype(path, arrays, version)
    params = np.concatenate([arrays[name].ravel().astype(dtype) for name in _WEIGHT_NAMES])
    if all(f"mem_{name}" in arrays for name in _WEIGHT_NAMES):
        memory = np.concatenate([arrays[f"mem_{name}"].ravel().astype(dtype) for name in _WEIGHT_NAMES])
    else:
        memory = np.zeros(parameter_count(H, V), dtype=dtype)
    seed = int(arrays.get("seed", -1))
    state = TrainState(
        hidden=H,
        seq_length=int(arrays["seq_length"]),
        learning_rate=float(arrays["learning_rate"]),
        vocab_size=V,
        params=params,
        memory=memory,
        hprev=np.array(arrays.get("hprev", np.zeros(H)), dtype=dtype),
        position=int(arrays.get("position", 0)),
        smooth_loss=float(arrays.get("smooth_loss", np.nan)),
        last_loss=float(arrays.get("last_loss", np.nan)),
        steps=int(arrays.get("steps", 0)),
        status=int(arrays.get("status", 0)),
        seed=None if seed < 0 else seed,
    )
    return Model(state=state, vocab=vocab, corpus_name=str(arrays.get("corpus_name", "")), format_version=version,
                 info=_info(path, arrays))


def _dtype(path: str, arrays: dict, version: int) -> np.dtype:
    """The precision the network trains in: float64 for format 1 (read as it always was), else the
    weights' own, which every block and memory must share."""
    if version == 1:
        return np.dtype(np.float64)
    names = [*_WEIGHT_NAMES, *(f"mem_{name}" for name in _WEIGHT_NAMES if f"mem_{name}" in arrays)]
    dtypes = {arrays[name].dtype for name in names} | ({arrays["hprev"].dtype} if "hprev" in arrays else set())
    try:
        (dtype,) = dtypes
        return check_dtype(dtype)
    except ValueError:
        raise CheckpointError(f"{path!r}: its arrays are of {', '.join(sorted(map(str, dtypes)))}, not of one "
                              "supported precision; the file is damaged") from None


def _info(path: str, arrays: dict) -> dict:
    if "info" not in arrays:
        return {}
    try:
        info = json.loads(str(arrays["info"]))
    except json.JSONDecodeError:
        info = None
    if not isinstance(info, dict):
        raise CheckpointError(f"{path!r}: its info is not a JSON object; the file is damaged")
    return info
