"""Where a tuning run's lines go: its run file, open and locked against other writers (``flock``,
where the platform has it) while the run lasts, written line by line and flushed. A new run's file
is only written once its start is done (:class:`RunFileSink`), so a run refused before leaves the
disk as it was."""

from __future__ import annotations

import json
import os

from .run_files import RunFileError, check_new_run_path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; two writers there are not detected
    fcntl = None


def _lock(sink, name: str) -> None:
    if fcntl is not None:
        try:
            fcntl.flock(sink.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            sink.close()
            raise RunFileError(f"run file {name!r} is in use by another process (it holds the file's lock); "
                               "wait for it to end or use another file") from None


def _open_run_file(path, resume: bool, overwrite: bool, exclusive: bool = False):
    """The run file opened for reading and writing (binary), locked against other writers: an
    existing one (to resume, or to overwrite: not truncated here), or a new one (``exclusive``: only
    if it does not exist yet)."""
    name = os.fspath(path)
    if not resume and not overwrite and os.path.exists(name):
        raise RunFileError(f"run file {name!r} exists; use --resume to continue it or --force to overwrite it")
    directory = os.path.dirname(os.path.abspath(name))
    flags = os.O_RDWR | (0 if resume else os.O_CREAT) | (os.O_EXCL if exclusive else 0)
    try:
        fd = os.open(name, flags, 0o666)
    except FileExistsError:
        raise RunFileError(f"run file {name!r} exists (another process created it meanwhile); use another file, or "
                           "--resume it") from None
    except FileNotFoundError as exc:
        if not os.path.isdir(directory):
            raise RunFileError(f"cannot write run file {name!r}: directory {directory!r} does not exist") from None
        if not resume:  # the directory is there but refuses new files (/proc, say)
            raise RunFileError(f"cannot create run file {name!r} in {directory!r}: {exc.strerror}; "
                               "choose another folder") from None
        raise RunFileError(f"run file {name!r} does not exist") from None
    except OSError as exc:
        raise RunFileError(f"cannot open run file {name!r}: {exc.strerror or exc}") from None
    sink = os.fdopen(fd, "r+b")
    _lock(sink, name)
    return sink


class RunFileSink:
    """A run file open for writing, locked against other writers (``flock``, while it is open).

    A resumed run's file is opened at once. A new run's is checked at once
    (:func:`~fastrnn.tuning.run_files.check_new_run_path`) but written only by :meth:`start`, which
    the first write calls: until then an existing file (``overwrite``) is held open and locked,
    unchanged, and a missing one (or its folder) is not created. So a run refused before it starts
    leaves the disk as it was. :meth:`start` writes ``header`` (the settings line) first, and
    deletes ``companions`` (files of the run it replaces: its model)."""

    def __init__(self, path, resume: bool, overwrite: bool, header: dict | None = None, companions=()):
        self.name = os.fspath(path)
        self.path = self.name
        self.header, self.companions, self.overwrite = header, tuple(map(os.fspath, companions)), overwrite
        self.started = resume
        self.file = None
        if resume:
            self.file = _open_run_file(path, True, False)
            return
        check_new_run_path(self.name, overwrite, self.companions)
        if os.path.lexists(self.name):  # overwrite: claimed now (its lock), replaced by start()
            self.file = _open_run_file(path, True, False)

    def start(self) -> None:
        """Create (or truncate) a new run's file, with its folders, and write its header."""
        if self.started:
            return
        try:
            if self.file is None:
                directory = os.path.dirname(os.path.abspath(self.name))
                try:
                    os.makedirs(directory, exist_ok=True)
                except OSError as exc:
                    raise RunFileError(f"cannot create the folder {directory!r} of run file {self.name!r}: "
                                       f"{exc.strerror or exc}; choose another folder") from None
                self.file = _open_run_file(self.name, False, self.overwrite, exclusive=not self.overwrite)
            for companion in self.companions:  # the replaced run's (its model), not this one's
                if os.path.isfile(companion):
                    os.remove(companion)
            self.file.truncate(0)
            self.file.seek(0)
        except OSError as exc:
            raise RunFileError(f"cannot write run file {self.name!r} (or replace {', '.join(self.companions)}): "
                               f"{exc.strerror or exc}") from None
        self.started = True
        if self.header is not None:
            _write(self, self.header)

    def write(self, data: bytes) -> int:
        self.start()
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def truncate(self, size: int) -> int:
        return self.file.truncate(size)

    def seek(self, offset: int) -> int:
        return self.file.seek(offset)

    def read(self, size: int = -1) -> bytes:
        return self.file.read(size)

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()  # also releases the lock
            except OSError:
                pass  # only the bytes of a write that failed, and was reported, are left to flush


def _ends_with_newline(sink, end: int) -> bool:
    sink.seek(end - 1)
    last = sink.read(1)
    sink.seek(end)
    return last == b"\n"


def _write(sink, entry: dict) -> None:
    try:
        sink.write((json.dumps(entry, allow_nan=True) + "\n").encode("utf-8"))
        sink.flush()
    except OSError as exc:
        raise RunFileError(f"cannot write the run file: {exc.strerror or exc}; the records written so far are kept "
                           "(resume the run once it can be written)") from None


__all__ = ["RunFileSink"]
