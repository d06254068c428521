"""Successive halving over training characters: its settings, its rungs and how a budget sizes them.

One value, :class:`HalvingSettings`, defines the method (frozen, checked when made): the command
line's flags (each field's ``flag`` metadata), the run file's ``halving`` line, and the resume check
(:func:`setting_differences`) come from its fields, as :mod:`fastrnn.objective.settings` does for F.

Two shapes of a bracket (:func:`fixed_rungs`, :func:`auto_rounds`):

* **A target** (``target_chars``): rungs ``target / eta**k`` for k = K .. 0, every ratio eta, the
  lowest no shorter than ``min_chars`` (so in [min_chars, eta * min_chars); by default
  ``target / eta**3``, four rungs). The deepest bracket starts ``top * eta**K`` networks (or
  ``starts``) at the lowest rung; each rung keeps the best 1/eta (rounded up, never fewer than
  ``top``), and ``top`` networks reach the target. Brackets repeat while the budgets allow; one
  smaller than full is started when that is all a budget affords. Their shapes
  (:func:`bracket_shape`): ``brackets="hyperband"`` (the default) cycles Hyperband's K + 1 shapes
  (Li et al., JMLR 2018): shape s = K, K-1, .., 0 starts ``ceil(N (K+1) / ((s+1) eta**(K-s)))``
  networks (N the deepest's) at rung K - s, so each costs about as much as the deepest, and later
  shapes bring more networks to the target from longer first rungs, a hedge against networks that
  only win short races; ``brackets="deepest"`` starts every bracket at the lowest rung.
* **No target** (a budget in characters or seconds chooses it): one bracket. ``starts`` networks
  (``top * eta**2`` by default: two selections) begin at the lowest rung; selective rungs at
  ``min_chars * eta**k`` keep the best 1/eta until ``top`` networks remain, and these train as long
  as the budget allows: most of the budget goes to the length the answer is trained for. The
  search (the selective rungs) takes :attr:`HalvingSettings.search_share` of the budget: without
  ``min_chars`` the lowest rung is the longest that fits it (the longer the search's rungs, the less
  they favour networks that only win short races), else fewer networks start when needed.

Rung lengths are nominal characters; a network of sequence length s trains ceil(c / s) updates
for a rung of c characters, as the held-out objective's ``train_chars`` (so a rung's value of a
network is F at its (h, s, l) with ``train_chars = c``, bit for bit).
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import NamedTuple

#: The longest sane sequence length: a rung of c characters reads at most c + this - 1.
LONGEST_SEQ = 40
#: The lowest rung without a target or a budget that chooses it.
DEFAULT_MIN_CHARS = 100_000
#: The shortest lowest rung a budget chooses (shorter ones rank networks by noise).
MIN_AUTO_CHARS = 10_000
#: Sampler names: TPE (Optuna's, the ``fastrnn[optuna]`` extra) or uniform in the search space.
SAMPLERS = ("tpe", "random")
#: How networks are drawn where no model proposes them (:mod:`fastrnn.tuning.halving_sampler`).
DESIGNS = ("space-filling", "uniform")
#: Bracket shapes with a target: Hyperband's cycle, or every bracket from the lowest rung.
BRACKETS = ("hyperband", "deepest")
#: Without a target: the share of the top phase over which the learning rate decays to zero.
DEFAULT_COOLDOWN = 0.2
#: How a run file written before a setting existed reads it (the behaviour of that fastrnn).
_BEFORE = {"brackets": "deepest", "cooldown": 0.0, "design": "uniform"}


class HalvingFlag(NamedTuple):
    """How a setting appears on the command line: ``--name``, its type (``count``: a whole number
    >= ``minimum``; ``choice``) and help."""

    name: str
    rule: str
    help: str
    minimum: int = 1
    choices: tuple = ()


def _setting(default, flag: HalvingFlag | None = None):
    return field(default=default, metadata={"flag": flag})


def sampler_available(name: str) -> bool:
    if name != "tpe":
        return True
    try:
        import optuna  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class HalvingSettings:
    """What defines a successive-halving run (besides F's settings and the budgets)."""

    #: None: target / eta**3 with a target; without one, the longest the budget's search share allows
    #: (or DEFAULT_MIN_CHARS without a budget in characters or seconds).
    min_chars: int | None = _setting(None, HalvingFlag(
        "--min-chars", "count", "halving: training characters of the lowest rung (networks start here) "
        "[--target-chars / eta^3; without a target, the longest that keeps the search within a quarter of the "
        "budget; 100,000 without a budget].", minimum=LONGEST_SEQ))
    #: None: the budget chooses the top rung's length (characters or seconds; see the module docstring).
    target_chars: int | None = _setting(None, HalvingFlag(
        "--target-chars", "count", "halving: training characters of the answer (the top rung) [chosen from the "
        "budget; 27 x --min-chars without one].", minimum=LONGEST_SEQ))
    eta: int = _setting(3, HalvingFlag("--eta", "count", "halving: each rung keeps the best 1/eta and trains "
                                       "them eta times longer [3].", minimum=2))
    top: int = _setting(2, HalvingFlag("--top", "count", "halving: networks trained to the top rung in a "
                                       "bracket (one per core keeps the cores busy) [2]."))
    #: None: a full bracket with a target (top * eta**K), else top * eta**2.
    starts: int | None = _setting(None, HalvingFlag(
        "--starts", "count", "halving: networks started in a bracket (with --target-chars, in the deepest; "
        "Hyperband's other shapes scale it) [a full bracket, top x eta^K; top x eta^2 without --target-chars]."))
    #: None: hyperband with a target; without one there is one bracket and no shape (given, an error).
    brackets: str | None = _setting(None, HalvingFlag(
        "--brackets", "choice", "halving with --target-chars: hyperband cycles Hyperband's bracket shapes (each "
        "later one starts fewer networks at a longer rung); deepest starts every bracket at the lowest rung "
        "[hyperband].", choices=BRACKETS))
    #: None: tpe where Optuna is installed, else random (resolved when the run starts).
    sampler: str | None = _setting(None, HalvingFlag(
        "--sampler", "choice", "halving: how new networks are chosen [tpe with the optuna extra, else random].",
        choices=SAMPLERS))
    #: How the networks of a wave without a model (the first, and every one of --sampler random) are drawn.
    design: str = _setting("space-filling", HalvingFlag(
        "--design", "choice", "halving: how networks are drawn where no model proposes them (the first wave; "
        "every wave with --sampler random): space-filling spreads a wave over the search space (a Latin "
        "hypercube), uniform draws each network alone [space-filling].", choices=DESIGNS))
    #: Networks sampled together at the lowest rung (TPE learns from the waves before); None: top * eta**2.
    wave: int | None = _setting(None, HalvingFlag(
        "--wave", "count", "halving: networks sampled at once in the lowest rung; later waves learn from earlier "
        "ones [top x eta^2]."))
    #: TPE proposes once a rung has this many results (random before).
    startup: int = _setting(10)
    #: Without a target: the most of the budget the search (the selective rungs) may take.
    search_share: float = _setting(0.25)
    #: Without a target: the last share of the top phase over which the top networks' learning rate
    #: decays linearly to zero (:mod:`fastrnn.tuning.halving_top`). None: DEFAULT_COOLDOWN
    #: without a target, 0 with one (resolved when the run starts).
    cooldown: float | None = _setting(None, HalvingFlag(
        "--cooldown", "share", "halving without --target-chars: the last share of the top phase over which the "
        f"top networks' learning rate decays linearly to zero (0 keeps it constant) [{DEFAULT_COOLDOWN}]."))

    def __post_init__(self):
        set_ = object.__setattr__.__get__(self)
        for name, minimum in (("eta", 2), ("top", 1), ("startup", 1)):
            set_(name, _count(name, getattr(self, name), minimum))
        for name, minimum in (("min_chars", LONGEST_SEQ), ("target_chars", LONGEST_SEQ), ("starts", 1), ("wave", 1)):
            if getattr(self, name) is not None:
                set_(name, _count(name, getattr(self, name), minimum))
        if None not in (self.target_chars, self.min_chars) and self.min_chars > self.target_chars:
            raise ValueError(f"the rungs do not fit: --min-chars {self.min_chars:,} is above --target-chars "
                             f"{self.target_chars:,}")
        if self.starts is not None and self.starts < self.top:
            raise ValueError(f"--starts {self.starts} is fewer than the --top {self.top} networks a bracket ends with")
        if self.target_chars is None:
            if self.brackets is not None:
                raise ValueError("--brackets shapes the brackets of a run with --target-chars; without one, a budget "
                                 "chooses the length in one bracket: give --target-chars or drop --brackets")
        elif self.brackets is None:
            set_("brackets", "hyperband")
        elif self.brackets not in BRACKETS:
            raise ValueError(f"unknown bracket shapes {self.brackets!r}; valid: {', '.join(BRACKETS)}")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; valid: {', '.join(SAMPLERS)}")
        if self.design not in DESIGNS:
            raise ValueError(f"unknown design {self.design!r}; valid: {', '.join(DESIGNS)}")
        share = self.search_share
        if isinstance(share, bool) or not isinstance(share, numbers.Real) or not 0 < share < 1:
            raise ValueError(f"search_share must lie in (0, 1), got {share!r}")
        set_("search_share", float(share))
        cooldown = self.cooldown
        if cooldown is not None:
            if isinstance(cooldown, bool) or not isinstance(cooldown, numbers.Real) or not 0 <= cooldown < 1:
                raise ValueError(f"--cooldown must lie in [0, 1) (a share of the top phase), got {cooldown!r}")
            if cooldown and self.target_chars is not None:
                raise ValueError("--cooldown decays the learning rate at the end of a top phase that a budget sizes; "
                                 "with --target-chars networks train at one rate, as `fastrnn train` trains them: "
                                 "drop --cooldown or --target-chars")
            set_("cooldown", float(cooldown))

    def resolved(self) -> HalvingSettings:
        """These settings with the sampler and wave filled in; ValueError if the sampler cannot run here."""
        sampler = self.sampler or ("tpe" if sampler_available("tpe") else "random")
        if not sampler_available(sampler):
            raise ValueError("the tpe sampler needs Optuna: pip install 'fastrnn[optuna]' (or --sampler random)")
        wave = self.wave or self.top * self.eta ** 2
        cooldown = self.cooldown if self.cooldown is not None else 0.0 if self.fixed_target else DEFAULT_COOLDOWN
        return dataclasses.replace(self, sampler=sampler, wave=wave, cooldown=cooldown)

    def record(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def fixed_target(self) -> bool:
        return self.target_chars is not None


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def flags() -> dict[str, tuple[HalvingFlag, object]]:
    """Every setting with a flag: ``{field: (flag, default)}``, in field order."""
    return {item.name: (item.metadata["flag"], item.default) for item in dataclasses.fields(HalvingSettings)
            if item.metadata["flag"] is not None}


def _as_now(saved: dict) -> dict:
    """A run file's ``halving`` line as these settings read it: a setting it predates takes the
    behaviour of the fastrnn that wrote it (``_BEFORE``); without a target there are no bracket
    shapes (files written before that rule recorded the default, hyperband, there)."""
    saved = {**_BEFORE, **saved}
    if saved.get("target_chars") is None:
        saved["brackets"] = None
    return saved


def setting_differences(saved: dict, wanted: HalvingSettings) -> list[tuple[str, object, object]]:
    """``(field, saved, wanted)`` of each field where a run file's ``halving`` line differs."""
    saved = _as_now(saved)
    return [(item.name, saved.get(item.name), getattr(wanted, item.name))
            for item in dataclasses.fields(HalvingSettings) if saved.get(item.name) != getattr(wanted, item.name)]


def settings_from_record(record: dict) -> HalvingSettings:
    names = {item.name for item in dataclasses.fields(HalvingSettings)}
    return HalvingSettings(**{k: v for k, v in _as_now(record).items() if k in names})


# -- rungs and counts ---------------------------------------------------------------------------

def fixed_rungs(min_chars: int, target: int, eta: int) -> list[int]:
    """Rung lengths ``ceil(target / eta**k)`` for k = K .. 0, K the most rungs with the lowest no
    shorter than ``min_chars``: every ratio eta, the top the target."""
    K = 0
    while min_chars * eta ** (K + 1) <= target:
        K += 1
    return [-(-target // eta ** k) for k in range(K, -1, -1)]


def promoted_count(n: int, eta: int, top: int) -> int:
    """Networks a rung of ``n`` promotes: the best 1/eta, rounded up, never fewer than ``top``
    (nor more than ``n``)."""
    return min(n, max(top, -(-n // eta)))


def counts(starts: int, eta: int, top: int, rungs: int) -> list[int]:
    """Networks at each of ``rungs`` rungs of a bracket that starts ``starts``."""
    found = [starts]
    for _ in range(rungs - 1):
        found.append(promoted_count(found[-1], eta, top))
    return found


def full_starts(settings: HalvingSettings, rungs: int) -> int:
    """Networks a bracket starts: ``starts`` if given, else a full bracket (``top * eta**K``)."""
    return settings.starts if settings.starts is not None else settings.top * settings.eta ** (rungs - 1)


def bracket_shape(settings: HalvingSettings, rungs: list[int], bracket: int) -> tuple[list[int], int]:
    """With a target: bracket ``bracket``'s rungs and the networks a full one starts, for the
    run's ``rungs`` (:func:`fixed_rungs`). Hyperband's shapes in turn, s = K, K-1, .., 0: shape s
    trains the top s + 1 rungs and starts ``ceil(N (K+1) / ((s+1) eta**(K-s)))`` networks, N the
    deepest bracket's (:func:`full_starts`), never fewer than ``top``; its rungs then cost about
    what the deepest's do (Hyperband's n_s = ceil((K+1) eta**s / (s+1)), scaled by N / eta**K)."""
    deepest = full_starts(settings, len(rungs))
    if settings.brackets == "deepest":
        return list(rungs), deepest
    K = len(rungs) - 1
    s = K - bracket % (K + 1)
    return list(rungs[K - s:]), max(settings.top, -(-deepest * (K + 1) // ((s + 1) * settings.eta ** (K - s))))


def auto_rounds(settings: HalvingSettings, starts: int, min_chars: int) -> tuple[list[int], list[int]]:
    """Without a target: the selective rungs' lengths and counts for ``starts`` networks (rungs at
    ``min_chars * eta**k`` while more than ``top`` networks are left); the top rung follows."""
    lengths, sizes = [], []
    n = starts
    while n > settings.top:
        lengths.append(min_chars * settings.eta ** len(lengths))
        sizes.append(n)
        n = promoted_count(n, settings.eta, settings.top)
    return lengths, sizes


def auto_starts(settings: HalvingSettings) -> int:
    return settings.starts if settings.starts is not None else settings.top * settings.eta ** 2


def fixed_min_chars(settings: HalvingSettings) -> int:
    """The lowest rung's floor with a target: ``min_chars``, or target / eta**3."""
    if settings.min_chars is not None:
        return settings.min_chars
    return max(LONGEST_SEQ, settings.target_chars // settings.eta ** 3)


def largest_length(fits, low: int = MIN_AUTO_CHARS) -> int | None:
    """The largest whole c >= ``low`` with ``fits(c)`` (monotone: true up to some c), or None."""
    if not fits(low):
        return None
    high = low * 2
    while fits(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def bound_chars(chars: int) -> int:
    """The most characters a network reads for a rung of ``chars``: whole updates at any sane s."""
    return chars + LONGEST_SEQ - 1


def plan_chars(lengths: list[int], sizes: list[int]) -> int:
    """The most characters a bracket reads: each rung's networks continue from the rung below."""
    total, below = 0, 0
    for chars, n in zip(lengths, sizes):
        total += n * (bound_chars(chars) - below)
        below = chars
    return total


def largest_fitting(limit: int, fits) -> int:
    """The largest n in [0, limit] with ``fits(n)`` (monotone: true up to some n), by bisection."""
    if limit <= 0 or not fits(1):
        return 0
    low, high = 1, limit
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def auto_top_chars(budget_left: int, networks, start: int) -> int:
    """Without a target, given characters: the longest nominal top rung C >= ``start`` that the
    ``networks`` ((seq_length, updates so far) pairs) reach with ``budget_left`` characters between
    them, each training ceil(C / s) updates in all."""
    def cost(C):
        return sum(max(0, -(-C // s) - steps) * s for s, steps in networks)

    low = start
    if cost(low) > budget_left:
        return low
    high = low + max(1, budget_left)
    while cost(high) <= budget_left:
        high *= 2
    while low < high:
        middle = (low + high + 1) // 2
        if cost(middle) <= budget_left:
            low = middle
        else:
            high = middle - 1
    return low


#: Without a target, the learning curve's exponent in :func:`extrapolated_loss` (L = L_inf + b c^-alpha
#: in training characters). Fitted to the top networks of 600 s runs on tinyshakespeare: 0.17 for
#: (188, 12, 0.059) over 0.3-53 M characters, 0.44 for (22, 20, 0.155), which levels off at 2.04.
CURVE_EXPONENT = 0.3
#: The shortest rung below the ranked one from which a loss is extrapolated: shorter, networks may
#: still be in their first descent, where the power law does not hold. Set between the runs at hand:
#: from rungs of 51-65 thousand characters (240 s on the built-in corpus), (233, 25, 0.069), which
#: fell from 3.06 to 2.58 between the rungs (in one), was predicted at 1.61-1.80, took a top place and
#: ended at 2.01-2.04 (once as the answer); from rungs of 94-400 thousand (600 s on tinyshakespeare) the
#: ranking kept small networks that level off out of the top phase, or changed nothing.
MIN_EXTRAPOLATED_CHARS = 90_000


def extrapolated_loss(below: float, value: float, ratio: float, ahead: float, alpha: float = CURVE_EXPONENT) -> float:
    """A network's loss predicted at ``ahead`` times its last rung's length, from its values at two
    rungs (``below`` at c, ``value`` at ``ratio`` c): the power law L(c) = L_inf + b c^-alpha
    through both. A network still learning fast is predicted to gain more; one levelling off (a
    small network at its capacity) little; one that got worse is predicted worse still."""
    if ahead <= 1.0 or ratio <= 1.0:
        return value
    gain = ratio ** -alpha * (1.0 - ahead ** -alpha) / (1.0 - ratio ** -alpha)
    return value - (below - value) * gain


def steps_for(chars: int, seq_length: int) -> int:
    """Updates of a rung of ``chars`` characters at sequence length ``seq_length`` (as train_chars)."""
    return -(-chars // seq_length)


__all__ = ["HalvingSettings", "HalvingFlag", "DESIGNS", "SAMPLERS", "flags", "setting_differences", "settings_from_record",
           "fixed_rungs", "bracket_shape", "BRACKETS", "promoted_count", "counts", "full_starts", "auto_rounds",
           "auto_starts", "plan_chars", "fixed_min_chars", "largest_length", "DEFAULT_MIN_CHARS", "MIN_AUTO_CHARS",
           "largest_fitting", "auto_top_chars", "steps_for", "bound_chars", "sampler_available", "extrapolated_loss",
           "CURVE_EXPONENT", "MIN_EXTRAPOLATED_CHARS"]
