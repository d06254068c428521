"""What defines F, as one value: :class:`PaperSettings` or :class:`HeldoutSettings`.

A frozen dataclass per kind of objective is the single source of F's identity. From its fields:

* :class:`fastrnn.objective.Objective` is built (``Objective(settings)``, or the keywords of
  README's library section, which build this value);
* the run file's ``objective`` line (:meth:`ObjectiveSettings.record`) and its reading back
  (:func:`settings_from_record`, format 1 files included);
* the resume check (:func:`differences`: field by field, naming each that differs);
* the memo's scope (the record, plus the backend that computed the values);
* the command line's flags that define F (each field's :func:`setting` metadata: flag, rule, help).

Adding a setting is adding a field here (with its flag in the metadata, or none for a library-only
setting) and using it where F is computed. What only changes how F is computed, not its values
(backend, threads, executor), is :class:`Evaluation`, not part of F's identity. ``dtype`` is
part of it: float32 networks give other values.

Kind-specific behaviour lives in the two classes (the default space, the start point, the value
of a trained run, the training length, the diverged value), not in branches on the kind.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import numpy as np

from .._validation import check_int, check_seed
from ..backends import DEFAULT_BACKEND
from ..network.corpus import Corpus, load_corpus
from ..network.model import DTYPES
from .heldout import DEFAULT_HELDOUT_CHARS, DEFAULT_HELDOUT_FRACTION, MIN_HELDOUT_CHARS, split_heldout
from .paper import SANE_RANGES, random_start
from .space import SPACES, Space, get_space

#: What a corner's value measures.
KINDS = ("heldout", "paper")
NOISE_KINDS = ("common", "fresh")
#: ``smooth``: min-char-rnn's smoothed loss after the last update (the paper's);
#: ``last``: the loss of the last training sequence alone.
LOSS_KINDS = ("smooth", "last")
#: Value of a run of the paper's objective whose loss or weights stopped being finite.
DEFAULT_DIVERGED_VALUE = 1e6
#: Training text per network of the held-out objective, in characters.
DEFAULT_TRAIN_CHARS = 100_000


class Flag(NamedTuple):
    """How a setting appears on the command line: ``--name``, its rule and help.

    Rules: ``count`` (a whole number >= ``minimum``), ``choice`` (one of ``choices``),
    ``fraction`` (in (0, 0.5]), ``text`` (a path to a UTF-8 text)."""

    name: str
    rule: str
    help: str
    choices: tuple = ()
    minimum: int = 1


def setting(default, flag: Flag | None = None, *, text: bool = False):
    """A field of the settings: its default, its command-line flag (None: set by a shared option
    or by the library only), and whether it is a text (compared by its SHA-256, recorded by name
    and fingerprint)."""
    return field(default=default, metadata={"flag": flag, "text": text})


class TextRef(NamedTuple):
    """A text as a run file names it: its name and SHA-256 (a Corpus read back from a record)."""

    name: str
    fingerprint: str | None


def _fingerprint(text) -> str | None:
    return None if text is None else text.fingerprint


@dataclass(frozen=True)
class ObjectiveSettings:
    """The settings both kinds share; see the module docstring. Validated when made."""

    kind: ClassVar[str]
    #: The kind as messages name it.
    title: ClassVar[str]
    #: The coordinates of the penalty and of tuning when ``space`` is not given.
    default_space: ClassVar[str]
    default_dtype: ClassVar[str]
    #: Whether F's values are cross-entropies per character (in nats).
    values_in_nats: ClassVar[bool]
    #: The tuning method when none is given; None: the best of docs/COMPARISON.md.
    default_method: ClassVar[str | None] = None

    #: The text (a Corpus, or a TextRef read from a run file); None: the built-in corpus.
    corpus: object = setting(None, text=True)
    alpha: int | None = setting(None, Flag("--alpha", "count",
                                           "Training updates per run [paper: 100; heldout: from --train-chars]."))
    beta: int = setting(1, Flag("--beta", "count", "Runs averaged per corner."))
    noise: str = setting("common", Flag("--noise", "choice", "common: replica r uses seed+r everywhere; fresh: new "
                                        "seeds every evaluation (the paper's).", NOISE_KINDS))
    seed: int = setting(0)
    #: Training precision; None: the kind's default (float32 held out, float64 for the paper's).
    dtype: str | None = setting(None)
    space: str | None = setting(None, Flag("--space", "choice", "Search coordinates: log (log2 h, log2 s, log10 l) "
                                           "or linear [heldout: log; paper: linear].", SPACES))
    #: What a diverged run is worth; None: the kind's default (see :meth:`resolved`).
    diverged_value: float | None = setting(None)

    def __post_init__(self):
        set_ = object.__setattr__.__get__(self)
        set_("beta", check_int("beta", self.beta, 1))
        if self.noise not in NOISE_KINDS:
            raise ValueError(f"unknown noise {self.noise!r}; valid: {', '.join(NOISE_KINDS)}")
        set_("seed", check_seed(self.seed, self.beta))
        set_("dtype", self.dtype or self.default_dtype)
        if self.dtype not in DTYPES:
            raise ValueError(f"unsupported dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")
        set_("space", get_space(self.space or self.default_space).name)
        if self.alpha is not None:
            set_("alpha", check_int("alpha", self.alpha, 1))
        value = self.diverged_value
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                  or not math.isfinite(value)):
            raise ValueError(f"diverged_value must be a finite number (F's value for a diverged run), got {value!r}")
        if value is not None:
            set_("diverged_value", float(value))

    def loaded(self) -> ObjectiveSettings:
        """These settings with every text read (a path, or None for the built-in corpus)."""
        texts = {item.name: load_corpus(getattr(self, item.name)) for item in dataclasses.fields(self)
                 if item.metadata["text"] and not isinstance(getattr(self, item.name), Corpus)
                 and (item.name == "corpus" or getattr(self, item.name) is not None)}
        return dataclasses.replace(self, **texts) if texts else self

    # -- what differs between the kinds --------------------------------------------------------
    def split(self) -> tuple[Corpus, Corpus | None]:
        """(training text, held-out text or None) of loaded settings."""
        return self.corpus, None

    def default_diverged_value(self, vocab_size: int) -> float:
        raise NotImplementedError

    def divergence_threshold(self, vocab_size: int) -> float:
        """A finished run whose value is above this counts as diverged (besides a non-finite loss or
        weights): it is worth ``diverged_value`` and counted in ``trainings_diverged``."""
        return math.inf

    def resolved(self, vocab_size: int) -> ObjectiveSettings:
        """These settings with every default filled in (the diverged value needs the vocabulary)."""
        if self.diverged_value is not None:
            return self
        return dataclasses.replace(self, diverged_value=self.default_diverged_value(vocab_size))

    def updates(self, seq_length: int) -> int:
        """Training updates of one run at sequence length ``seq_length``."""
        return self.alpha

    def run_value(self, outcome) -> float | None:
        """What a finished training run is worth (None or non-finite: the diverged value)."""
        raise NotImplementedError

    def initial_point(self, seed, space: Space) -> np.ndarray:
        """Where an optimizer starts without x0, in (h, s, l)."""
        raise NotImplementedError

    @property
    def searched_as_is(self) -> bool:
        """Whether tuning minimises F itself, by finite differences in (h, s, l) (the paper's way),
        rather than F seen in the search space with exact corner partials."""
        return False

    # -- records and comparisons ---------------------------------------------------------------
    def record(self) -> dict:
        """The run file's ``objective`` line: every field; a text as its name and fingerprint."""
        entry = {"kind": self.kind}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.metadata["text"]:
                entry[item.name] = None if value is None else value.name
                entry[f"{item.name}_fingerprint"] = _fingerprint(value)
            else:
                entry[item.name] = value
        return entry

    @property
    def corpus_fingerprint(self) -> str | None:
        return _fingerprint(self.corpus)


@dataclass(frozen=True)
class PaperSettings(ObjectiveSettings):
    """The paper's objective: min-char-rnn's training loss after ``alpha`` updates (default 100)."""

    kind: ClassVar[str] = "paper"
    title: ClassVar[str] = "paper's"
    default_space: ClassVar[str] = "linear"
    #: The paper's numerics, exactly.
    default_dtype: ClassVar[str] = "float64"
    values_in_nats: ClassVar[bool] = False
    default_method: ClassVar[str | None] = "gd"

    loss: str = setting("smooth", Flag("--loss", "choice", "paper: which training loss.", LOSS_KINDS))

    def __post_init__(self):
        if self.alpha is None:
            object.__setattr__(self, "alpha", 100)
        super().__post_init__()
        if self.loss not in LOSS_KINDS:
            raise ValueError(f"unknown loss kind {self.loss!r}; valid: {', '.join(LOSS_KINDS)}")

    def default_diverged_value(self, vocab_size):
        return DEFAULT_DIVERGED_VALUE

    def run_value(self, outcome):
        return outcome.smooth_loss if self.loss == "smooth" else outcome.last_loss

    def initial_point(self, seed, space):
        return random_start(seed)

    @property
    def searched_as_is(self):
        return self.space == "linear"


@dataclass(frozen=True)
class HeldoutSettings(ObjectiveSettings):
    """The held-out objective: cross-entropy per character on held-out text after training on
    ``train_chars`` characters (or ``alpha`` updates)."""

    kind: ClassVar[str] = "heldout"
    title: ClassVar[str] = "held-out"
    default_space: ClassVar[str] = "log"
    #: About twice as fast as float64 at h >= 100, and it finds networks as good
    #: (docs/COMPARISON.md, "float32").
    default_dtype: ClassVar[str] = "float32"
    values_in_nats: ClassVar[bool] = True

    train_chars: int | None = setting(None, Flag(
        "--train-chars", "count", f"heldout: characters of training text per network, ceil(N / s) updates "
        f"[{DEFAULT_TRAIN_CHARS:,}]."))
    heldout_fraction: float | None = setting(DEFAULT_HELDOUT_FRACTION, Flag(
        "--heldout-fraction", "fraction", f"heldout: share of the corpus, at its end, held out "
        f"[{DEFAULT_HELDOUT_FRACTION}]."))
    #: Separate held-out text (then all of ``corpus`` trains, and ``heldout_fraction`` is None).
    heldout: object = setting(None, Flag("--heldout", "text", "heldout: separate held-out text (then all of "
                                         "--corpus trains)."), text=True)
    heldout_chars: int = setting(DEFAULT_HELDOUT_CHARS, Flag(
        "--heldout-chars", "count", f"heldout: characters of held-out text each network reads "
        f"[{DEFAULT_HELDOUT_CHARS:,}].", minimum=MIN_HELDOUT_CHARS))

    def __post_init__(self):
        super().__post_init__()
        set_ = object.__setattr__.__get__(self)
        if self.alpha is not None and self.train_chars is not None:
            raise ValueError("give the training length as train_chars (--train-chars) or as alpha (--alpha, updates), "
                             "not both")
        if self.alpha is None:
            train_chars = DEFAULT_TRAIN_CHARS if self.train_chars is None else check_int("train_chars",
                                                                                         self.train_chars, 1)
            longest = SANE_RANGES[1][1]
            if train_chars < longest:
                raise ValueError(f"train_chars must be at least {longest} (one update at the longest sane sequence "
                                 f"length), got {train_chars}")
            set_("train_chars", train_chars)
        if self.heldout is not None:
            if self.heldout_fraction not in (None, DEFAULT_HELDOUT_FRACTION):
                raise ValueError(f"give a held-out fraction of the corpus ({self.heldout_fraction!r}) or separate "
                                 "held-out text, not both: --heldout-fraction or --heldout")
            set_("heldout_fraction", None)
        elif (isinstance(self.heldout_fraction, bool) or not isinstance(self.heldout_fraction, (int, float))
              or not 0 < self.heldout_fraction <= 0.5):
            raise ValueError(f"the held-out fraction must lie in (0, 0.5], got {self.heldout_fraction!r}")
        if (isinstance(self.heldout_chars, bool) or not isinstance(self.heldout_chars, int)
                or self.heldout_chars < MIN_HELDOUT_CHARS):
            raise ValueError(f"heldout_chars must be a whole number >= {MIN_HELDOUT_CHARS}, got {self.heldout_chars!r}")

    def split(self):
        parts = split_heldout(self.corpus, self.heldout_fraction, self.heldout, self.heldout_chars)
        return parts.train, parts.heldout

    def default_diverged_value(self, vocab_size):
        # a network that blew up is worth no more than one that learned nothing: a uniform guess
        return math.log(vocab_size)

    def divergence_threshold(self, vocab_size):
        # worse than a uniform guess on held-out text: the weights blew up (at (400, 25, 1.0) on the
        # built-in corpus, 412 nats per character), which no amount of training mends
        return math.log(vocab_size)

    def updates(self, seq_length):
        if self.alpha is not None:
            return self.alpha
        return -(-self.train_chars // seq_length)

    def run_value(self, outcome):
        return outcome.heldout_loss

    def initial_point(self, seed, space):
        rng = np.random.default_rng(seed)
        z = [rng.uniform(space.coordinate(i, low), space.coordinate(i, high))
             for i, (low, high, _) in enumerate(SANE_RANGES)]
        return space.to_point(z)

    @property
    def heldout_fingerprint(self) -> str | None:
        return _fingerprint(self.heldout)


#: The settings class of each kind.
SETTINGS_CLASSES: dict[str, type[ObjectiveSettings]] = {cls.kind: cls for cls in (HeldoutSettings, PaperSettings)}


def settings_class(kind: str) -> type[ObjectiveSettings]:
    if kind not in SETTINGS_CLASSES:
        raise ValueError(f"unknown objective kind {kind!r}; valid: {', '.join(KINDS)}")
    return SETTINGS_CLASSES[kind]


def field_names(kind: str) -> set[str]:
    return {item.name for item in dataclasses.fields(settings_class(kind))}


def make_settings(kind: str = "heldout", **values) -> ObjectiveSettings:
    """The settings of ``kind`` from keywords. A setting of the other kind is refused (naming the
    kind it belongs to) unless it holds that kind's default."""
    cls = settings_class(kind)
    own = field_names(kind)
    for name in sorted(set(values) - own):
        other = next((c for c in SETTINGS_CLASSES.values() if name in field_names(c.kind)), None)
        if other is None:
            raise TypeError(f"unknown objective setting {name!r}")
        if values[name] != _default(other, name):
            raise ValueError(f"{name} belongs to the {other.title} objective (kind={other.kind!r}, "
                             f"--objective {other.kind})")
    return cls(**{name: value for name, value in values.items() if name in own})


def _default(cls, name: str):
    return next(item.default for item in dataclasses.fields(cls) if item.name == name)


def settings_from_record(record: dict) -> ObjectiveSettings:
    """The settings a run file's ``objective`` line holds; texts as :class:`TextRef`.

    Reads format 1 too: no ``kind`` there means the paper's objective, whose space was only
    written when not linear, and no ``dtype`` means float64; a held-out run split off its own
    text recorded the split's name and fingerprint (here: no separate held-out text), and a
    separate text's SHA-256 as ``heldout_source_fingerprint``."""
    kind = record.get("kind", "paper")
    cls = settings_class(kind)
    values = {}
    for item in dataclasses.fields(cls):
        if item.name not in record:
            continue
        if item.metadata["text"]:
            fingerprint = record.get(f"{item.name}_source_fingerprint", record.get(f"{item.name}_fingerprint"))
            value = None if record[item.name] is None else TextRef(record[item.name], fingerprint)
        else:
            value = record[item.name]
        values[item.name] = value
    if record.get("heldout_fraction") is not None:
        values.pop("heldout", None)  # format 1 named the split's held-out part here
    values.setdefault("dtype", "float64")  # a file without it predates float32: every run was float64
    return cls(**values)


def differences(saved: ObjectiveSettings, wanted: ObjectiveSettings) -> list[tuple[str, object, object]]:
    """``(field, saved value, wanted value)`` for each field in which two settings differ (a text
    by its SHA-256, shown by name); the kind alone when the kinds differ."""
    if saved.kind != wanted.kind:
        return [("kind", saved.kind, wanted.kind)]
    found = []
    for item in dataclasses.fields(saved):
        ours, theirs = getattr(saved, item.name), getattr(wanted, item.name)
        if item.metadata["text"]:
            if _fingerprint(ours) != _fingerprint(theirs):
                found.append((item.name, None if ours is None else ours.name, None if theirs is None else theirs.name))
        elif ours != theirs:
            found.append((item.name, ours, theirs))
    return found


def flags() -> dict[str, tuple[Flag, tuple[str, ...], object]]:
    """Every setting with a flag: ``{field: (flag, kinds it belongs to, default)}``, in field order."""
    found: dict[str, tuple] = {}
    for cls in SETTINGS_CLASSES.values():
        for item in dataclasses.fields(cls):
            flag = item.metadata["flag"]
            if flag is None:
                continue
            _, kinds, default = found.get(item.name, (flag, (), item.default))
            found[item.name] = (flag, (*kinds, cls.kind), default)
    return found


@dataclass(frozen=True)
class Evaluation:
    """How F is computed, not what it is: results do not depend on it (bit-identical for any
    thread count or executor). The backend is recorded in run files and kept by a resumed run."""

    backend: object = DEFAULT_BACKEND
    #: Worker threads for one batch of trainings; all cores by default.
    threads: int | None = None
    #: "threads", "dask", a distributed.Client, or an executor object (:mod:`fastrnn.running.executors`).
    executor: object = "threads"
    #: With ``executor="dask"``: the scheduler's address.
    scheduler: str | None = None


__all__ = [
    "ObjectiveSettings", "PaperSettings", "HeldoutSettings", "Evaluation", "TextRef", "Flag", "setting",
    "make_settings", "settings_from_record", "differences", "flags", "settings_class", "SETTINGS_CLASSES",
    "KINDS", "NOISE_KINDS", "LOSS_KINDS", "DEFAULT_DIVERGED_VALUE", "DEFAULT_TRAIN_CHARS",
]
