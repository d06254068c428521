"""What a successive-halving run keeps on disk: its run file (JSON Lines), the checkpoint of every
network still training, and the answer's model file.

Beside ``run.jsonl``: ``run.ckpt/`` (one ``trial-NNNNNN.npz`` per live network, written atomically
and deleted once the network is dropped; the answer's stays) and ``run.npz`` (the answer's model,
the file ``fastrnn sample`` reads). A name without ``.jsonl`` gets the suffixes added to it.

A checkpoint holds the network's whole training state in its own precision (weights, Adagrad
memory, hidden state, data position, updates, losses) and what it belongs to (the run's id, the
trial, its hyperparameters, the training text's SHA-256), so continuing it is bit-identical to
training straight through, and a checkpoint of another run or text is refused.

The run file's lines (each a JSON object, flushed as written; a torn last line is cut off on resume):

``settings``  format, method ``halving``, the run's id, ``halving`` (:class:`HalvingSettings`), the
              objective's settings, the backend, the budgets, the checkpoint folder and model file
``calibration``  the machine's measured speed (time budgets), before any network
``bracket``   a bracket's plan: rung lengths, networks per rung, networks started; without a target,
              ``stretch_last_rung`` (format version 3): a time budget may lengthen the last selective rung
``trial``     a network: its index, bracket, wave, (h, s, l), z, seed, the sampler that chose it
``record``    a network at the end of a rung: trial, bracket, rung, nominal characters, updates,
              (h, s, l), ``fun`` (held-out loss in nats per character; a diverged network is worth ln V),
              the raw held-out loss, counters, seconds so far
``promotion`` the trials a rung promotes (the best 1/eta, ties to the lower trial index), with a note
              when the budget made it promote straight to the top, and ``chars`` when a time budget
              lengthened the rung it promotes to (format version 3)
``segment``   progress of the top rung without a target: characters so far and each network's loss
``cooldown``  without a target, where the top networks' learning rate decays to zero: each
              trial's first and last update of the decay (:mod:`fastrnn.tuning.halving_top`;
              format version 2)
``result``    the answer: (h, s, l), fun, bits, characters, updates, trial, model file, message,
              counters, seconds
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..network.checkpoint import CheckpointError, write_npz_atomically
from ..network.model import TrainState
from .run_files import HALVING_FORMAT, RunFileError, check_new_run_path, json_lines, read_run_bytes
from .run_sink import RunFileSink, _ends_with_newline, _write  # the tuner's locking and writing

FORMAT = HALVING_FORMAT
FORMAT_VERSION = 3
#: Versions read: 2 added the ``cooldown`` line (a version-1 file resumes without a cooldown), 3 a
#: promotion's ``chars`` (a fastrnn reading version 2 would train that rung to its planned length;
#: a version-2 run resumes with its rungs as planned).
FORMAT_VERSIONS = (1, 2, 3)
CHECKPOINT_KIND = "fastrnn-halving-checkpoint"
LINE_TYPES = ("settings", "calibration", "bracket", "trial", "record", "promotion", "segment", "cooldown", "stop",
              "result")




def companion_paths(run_path) -> tuple[str, str]:
    """(checkpoint folder, model file) beside the run file."""
    name = os.fspath(run_path)
    base = name[:-len(".jsonl")] if name.endswith(".jsonl") else name
    return base + ".ckpt", base + ".npz"


def is_halving_file(path) -> bool:
    """Whether ``path`` is a successive-halving run file (its first line says so)."""
    try:
        with open(path, "rb") as f:
            first = f.readline()
        entry = json.loads(first.decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(entry, dict) and entry.get("format") == FORMAT


# -- checkpoints ----------------------------------------------------------------------------------

class Checkpoints:
    """The checkpoint folder of one run."""

    def __init__(self, folder: str, run_id: str, fingerprint: str):
        self.folder, self.run_id, self.fingerprint = folder, run_id, fingerprint

    def prepare(self) -> None:
        """Create the folder and prove it writable; CheckpointError otherwise (nothing else written)."""
        try:
            os.makedirs(self.folder, exist_ok=True)
            probe = os.path.join(self.folder, f".probe-{os.getpid()}")
            with open(probe, "wb") as f:
                f.write(b"ok")
            os.remove(probe)
        except OSError as exc:
            raise CheckpointError(f"cannot write checkpoints to {self.folder!r}: {exc.strerror or exc}; "
                                  "put the run file where its folder can be written") from None

    def path(self, trial: int) -> str:
        return os.path.join(self.folder, f"trial-{trial:06d}.npz")

    def save(self, trial: int, state: TrainState) -> None:
        """Write ``state`` atomically (a torn file never replaces a good one)."""
        write_npz_atomically(self.path(trial), dict(
            kind=np.array(CHECKPOINT_KIND), run_id=np.array(self.run_id), fingerprint=np.array(self.fingerprint),
            trial=np.int64(trial), params=state.params, memory=state.memory,
            hprev=np.asarray(state.hprev, dtype=state.params.dtype), hidden=np.int64(state.hidden),
            seq_length=np.int64(state.seq_length), learning_rate=np.float64(state.learning_rate),
            vocab_size=np.int64(state.vocab_size), position=np.int64(state.position),
            smooth_loss=np.float64(state.smooth_loss), last_loss=np.float64(state.last_loss),
            steps=np.int64(state.steps), status=np.int64(state.status),
            seed=np.int64(-1 if state.seed is None else state.seed)), "checkpoint")

    def load(self, trial: int, config) -> TrainState:
        """Trial ``trial``'s state; CheckpointError (one line) if missing, unreadable or foreign."""
        path = self.path(trial)
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {key: f[key] for key in f.files}
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {path!r} of trial {trial} is missing; the run cannot continue that "
                                  "network without it (restore the file, or start a new run)") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
            raise CheckpointError(f"checkpoint {path!r} of trial {trial} is not readable; restore it or start a "
                                  "new run") from None
        problem = None
        if str(arrays.get("kind", "")) != CHECKPOINT_KIND:
            problem = "is not a halving checkpoint"
        elif str(arrays["run_id"]) != self.run_id:
            problem = "belongs to another run"
        elif str(arrays["fingerprint"]) != self.fingerprint:
            problem = "was trained on another text"
        elif (int(arrays["trial"]), int(arrays["hidden"]), int(arrays["seq_length"]), float(arrays["learning_rate"])
              ) != (trial, config.hidden, config.seq_length, config.learning_rate):
            problem = "holds another network"
        if problem:
            raise CheckpointError(f"checkpoint {path!r} {problem} (trial {trial} of run {self.run_id}); restore this "
                                  "run's file or start a new run")
        seed = int(arrays["seed"])
        return TrainState(int(arrays["hidden"]), int(arrays["seq_length"]), float(arrays["learning_rate"]),
                          int(arrays["vocab_size"]), arrays["params"].copy(), arrays["memory"].copy(),
                          arrays["hprev"].copy(), int(arrays["position"]), float(arrays["smooth_loss"]),
                          float(arrays["last_loss"]), int(arrays["steps"]), int(arrays["status"]),
                          None if seed < 0 else seed)

    def exists(self, trial: int) -> bool:
        return os.path.exists(self.path(trial))

    def drop(self, trials) -> None:
        for trial in trials:
            try:
                os.remove(self.path(trial))
            except FileNotFoundError:
                pass


# -- the run file ---------------------------------------------------------------------------------

@dataclass
class HalvingFile:
    """A parsed run file: its settings and its other lines in order; ``end``: the byte length of
    its complete lines."""

    settings: dict
    lines: list[dict] = field(default_factory=list)
    end: int = 0

    def of_type(self, kind: str) -> list[dict]:
        return [line for line in self.lines if line["type"] == kind]

    @property
    def result(self) -> dict | None:
        return self.lines[-1] if self.lines and self.lines[-1]["type"] == "result" else None


_REQUIRED = {
    "settings": ("format_version", "method", "run_id", "halving", "objective"),
    "calibration": ("seconds_per_unit",),
    "bracket": ("bracket", "rungs", "counts", "starts"),
    "trial": ("trial", "bracket", "wave", "x", "z", "seed"),
    "record": ("trial", "bracket", "rung", "chars", "steps", "x", "fun", "counters"),
    "promotion": ("bracket", "rung", "trials"),
    "segment": ("bracket", "chars", "values"),
    "cooldown": ("bracket", "trials", "updates"),
    "stop": ("bracket", "rung", "note"),
    "result": ("x", "fun", "chars", "trial", "counters"),
}


def read_halving(path) -> HalvingFile:
    """Parse and check a halving run file; a torn last line is ignored. RunFileError names the
    first line that is wrong."""
    name = os.fspath(path)
    entries, end = json_lines(read_run_bytes(path), name)  # not a run file at all: said so
    settings = entries[0][1]
    if settings.get("format") != FORMAT and isinstance(settings.get("method"), str) and "run_id" not in settings:
        raise RunFileError(f"{name!r} is a {settings['method']} run, not a successive-halving one: resume it as "
                           "such (without --method halving: the file says which method it is)")
    if isinstance(settings, dict) and settings.get("format") == FORMAT and \
            settings.get("format_version") not in FORMAT_VERSIONS:
        raise RunFileError(f"{name!r} is not a halving run file of format {FORMAT_VERSION} (a newer fastrnn wrote it?)")
    for number, entry in entries:
        problem = _problem(entry)
        if problem:
            raise RunFileError(f"{name!r} line {number}: {problem}; the file is damaged")
    if settings.get("format") != FORMAT:
        raise RunFileError(f"{name!r} is not a halving run file of format {FORMAT_VERSION} (a newer fastrnn wrote it?)")
    for number, entry in entries[1:]:
        if entry["type"] == "settings":
            raise RunFileError(f"{name!r} line {number}: a second settings line; the file is damaged")
    return HalvingFile(settings, [entry for _, entry in entries[1:]], end)


def _problem(entry) -> str | None:
    if not isinstance(entry, dict) or entry.get("type") not in LINE_TYPES:
        return "not a halving run file's line (a JSON object whose type is one of " + ", ".join(LINE_TYPES) + ")"
    missing = [key for key in _REQUIRED[entry["type"]] if key not in entry]
    return f"its {entry['type']} line lacks {', '.join(missing)}" if missing else None


class RunWriter:
    """Appends lines to a run file it holds locked (see :func:`fastrnn.tuning.runner.tune`)."""

    def __init__(self, path, resume_end: int | None, overwrite: bool):
        """A resumed run's file is opened at once and cut after its last complete line; a new
        run's is checked and (if it exists) held locked, but created or truncated only by the first
        line written (:class:`~fastrnn.tuning.runner.RunFileSink`)."""
        self.path = os.fspath(path)
        self.sink = RunFileSink(path, resume_end is not None, overwrite)
        if resume_end is None:
            return
        try:
            self.sink.truncate(resume_end)
            self.sink.seek(resume_end)
            if resume_end and not _ends_with_newline(self.sink, resume_end):
                self.sink.write(b"\n")
        except OSError as exc:
            self.sink.close()
            raise RunFileError(f"cannot write run file {self.path!r}: {exc.strerror or exc}") from None

    def write(self, entry: dict) -> None:
        _write(self.sink, entry)

    def close(self) -> None:
        self.sink.close()


def check_new_run(out, overwrite: bool) -> None:
    """What a new run at ``out`` cannot start with (RunFileError, before anything is written): a
    folder as ``out``, a folder that cannot hold it; unless ``overwrite``, an existing run file,
    model file, or checkpoints in the checkpoint folder (an earlier run's, which it would replace)."""
    folder, model = companion_paths(out)
    check_new_run_path(out, overwrite, companions=(model,))
    if overwrite:
        return
    if os.path.exists(folder) and not os.path.isdir(folder):
        return  # Checkpoints.prepare says it cannot write there
    if os.path.isdir(folder) and any(_is_checkpoint(name) for name in os.listdir(folder)):
        raise RunFileError(f"checkpoint folder {folder!r} holds an earlier run's checkpoints; use --force to "
                           "replace them, or give another --out")


def _is_checkpoint(name: str) -> bool:
    return name.startswith("trial-") and name.endswith(".npz")


def clear_old_files(folder: str, model: str) -> None:
    """A new run (--force) starts without the overwritten run's checkpoints and model."""
    for name in os.listdir(folder):
        if _is_checkpoint(name):
            os.remove(os.path.join(folder, name))
    if os.path.exists(model):
        os.remove(model)


__all__ = ["Checkpoints", "CheckpointError", "HalvingFile", "RunWriter", "check_new_run", "clear_old_files",
           "companion_paths", "is_halving_file",
           "read_halving", "FORMAT", "FORMAT_VERSION"]


def as_run_file(halving: HalvingFile):
    """A halving run as :class:`~fastrnn.tuning.run_files.RunFile` (for plots): one record per
    network and rung, its trial carrying the ``rung`` (its training characters), and the
    counters it had spent by then."""
    from .run_files import RunFile

    settings = dict(halving.settings, method=f"halving (eta={halving.settings['halving'].get('eta')})", options={})
    records = [dict(step=k, x=line["x"], fun=line["fun"], rule="halving", note=None,
                    trial=dict(x=line["x"], fun=line["fun"], rung=line["chars"]),
                    counters=dict(line["counters"], seconds=line.get("seconds", 0.0)), state={})
               for k, line in enumerate(halving.of_type("record"))]
    return RunFile(settings=settings, records=records, result=halving.result)

