"""What the budgets decide in a successive-halving run (a mixin of :class:`fastrnn.tuning.halving._Run`):
whether they pay for one network, each bracket's plan, a promotion straight to the top when time is
short, and where the top rung stops without a target.

Budgets in characters and networks are counted exactly (each rung at its bound: whole updates at the
longest sane sequence length), so those decisions are a function of the settings. A time budget
(``--budget-seconds``, wall clock from the command's start, the tuner's own time included) is
planned with the machine's measured speed (:class:`~fastrnn.tuning.halving_lanes.Pace`): a short
calibration before the first network, then every batch trained. Each decision is written to the run
file before it takes effect (see :mod:`fastrnn.tuning.halving`).

Without a target, a time budget is spent so: the search (the selective rungs) is sized to
``search_share`` of it, with the first wave's own networks (drawn before the plan) and the search
space's average for the rest; a promotion goes straight to the top when the next selective rung
would end the search past ``SEARCH_OVERRUN`` times that share, and the last selective rung is
lengthened (up to ``eta**2`` times the rung below) so that the search ends at its share as the
speed measured so far predicts for the networks promoted (:meth:`BudgetDecisions.stretched_length`:
the plan costs later rungs with the costliest networks drawn, and at 600 s on tinyshakespeare
searches planned for 150 s ended after 40-85 s); the top networks then share the
time left equally, in stretches of at most ``CHECKPOINT_SECONDS``, and stop when the time left
(less ``reserve()``: the final scoring, the model file, the exit) cannot pay for one more update.
"""

from __future__ import annotations

import math

import numpy as np

from . import halving_plan as plan_
from .halving_lanes import calibrate, work
from .halving_sampler import propose

#: Longest stretch of training between two checkpoints of the live networks.
CHECKPOINT_SECONDS = 30.0
#: Without a target, a time budget's search may run this many times its share before a promotion
#: goes straight to the top rung (a selection round is worth more than a little of the top's time).
SEARCH_OVERRUN = 2.0


#: The shortest stretch of the top phase worth training (and scoring).
MIN_STRETCH_SECONDS = 0.5


def stretch_seconds(left: float) -> float:
    """The longest stretch of training a time budget risks with ``left`` seconds to go: at most a
    quarter of them (at least a second), so that a stretch slower than predicted is seen, and the
    pace corrected, before the budget is spent."""
    return min(CHECKPOINT_SECONDS, max(1.0, 0.25 * left))


class BudgetError(ValueError):
    """Budgets the rungs do not fit (too small for one network)."""


class BudgetDecisions:
    """The budget's decisions; expects the run's ``settings``, ``budgets``, ``pace``, ``lanes``,
    ``plans``, ``trials``, ``trial_lines``, ``steps``, ``F`` and ``elapsed()``, ``write()``."""

    @property
    def auto(self) -> bool:
        """Whether the budget chooses the top rung's length (no target; a budget in characters or seconds)."""
        if 0 in self.plans:
            return bool(self.plans[0].get("auto"))
        return not self.settings.fixed_target and (self.budgets["budget_chars"] is not None
                                                   or self.budgets["budget_seconds"] is not None)

    @property
    def target(self) -> int:
        s = self.settings
        if s.target_chars is not None:
            return s.target_chars
        return (s.min_chars or plan_.DEFAULT_MIN_CHARS) * s.eta ** 3

    def reserve(self) -> float:
        """Seconds kept for the end: scoring, the model file, exiting."""
        seconds = self.budgets["budget_seconds"] or 0.0
        return max(1.0, 0.01 * seconds)

    def cost(self, hidden: int, seq_length: int, chars: float, scoring: bool = False) -> float:
        """Work of training (or scoring) ``chars`` characters (:func:`~fastrnn.tuning.halving_lanes.work`)."""
        itemsize = 8 if self.F.dtype == "float64" else 4
        return work(hidden, seq_length, self.vocab_size, chars, scoring, itemsize)

    def average_work(self, chars: float, scoring: bool = False) -> float:
        """Work of a network of average cost: of the networks the last bracket drew (a sampler
        that learns keeps drawing near them), or before any, of the search space (log-uniform h
        and s)."""
        last = max((line["bracket"] for line in self.trial_lines.values()), default=None)
        if last is not None:
            drawn = [self.trials[t] for t, line in self.trial_lines.items() if line["bracket"] == last]
            return float(np.mean([self.cost(c.hidden, c.seq_length, chars, scoring) for c in drawn]))
        sizes = np.exp(np.linspace(math.log(20), math.log(800), 41))
        lengths = np.exp(np.linspace(math.log(5), math.log(40), 7))
        return float(np.mean([self.cost(int(h), int(round(s)), chars, scoring) for h in sizes for s in lengths]))

    def check_budgets(self) -> None:
        """BudgetError when the budgets cannot pay for one network; measures the machine's speed
        for a time budget (before any file is written)."""
        if self.plans:
            if self.budgets["budget_seconds"] is not None and not self.pace.known:
                self.pace.seconds_per_unit = calibrate(self.lanes, self.F.dtype)
            return
        s, chars = self.settings, self.budgets["budget_chars"]
        one = (s.min_chars or plan_.MIN_AUTO_CHARS) if self.auto else self.target
        what = "--min-chars" if self.auto else "--target-chars"
        if chars is not None and chars < plan_.bound_chars(one):
            raise BudgetError(f"a budget of {chars:,} characters is smaller than one network at {what} {one:,} "
                              f"(up to {plan_.bound_chars(one):,} characters in whole updates); raise --budget-chars "
                              f"or lower {what}")
        seconds = self.budgets["budget_seconds"]
        if seconds is not None:
            self.calibration = self.pace.seconds_per_unit = calibrate(self.lanes, self.F.dtype)
            need = self.pace.seconds([self.average_work(one) + self.average_work(self.F.heldout.data.size, True)],
                                     self.lanes.count)
            left = seconds - self.elapsed() - self.reserve()
            if need > left:
                raise BudgetError(f"--budget-seconds {seconds:g} is too short for one network at {what} {one:,} "
                                  f"(about {need + self.reserve() + self.elapsed():.1f} s on this machine now); raise "
                                  f"it or lower {what}")

    def spent_bound(self) -> int:
        """The most characters the brackets planned so far read (fixed target)."""
        return sum(plan_.plan_chars(p["rungs"], p["counts"]) for p in self.plans.values())

    def decide_plan(self, bracket: int) -> dict | None:
        s = self.settings
        trainings = self.budgets["budget_trainings"]
        trainings_left = None if trainings is None else trainings - len(self.trials)
        if self.auto:
            return self._auto_plan(trainings_left)
        lowest = plan_.fixed_min_chars(s) if s.target_chars else s.min_chars or plan_.DEFAULT_MIN_CHARS
        rungs, full = plan_.bracket_shape(s, plan_.fixed_rungs(lowest, self.target, s.eta), bracket)
        budgeted = any(v is not None for v in self.budgets.values())
        if bracket > 0 and not budgeted:
            return None
        chars = self.budgets["budget_chars"]
        chars_left = None if chars is None else chars - self.spent_bound()
        time_left = self._time_left()

        def fits(n):
            sizes = plan_.counts(n, s.eta, s.top, len(rungs))
            return ((chars_left is None or plan_.plan_chars(rungs, sizes) <= chars_left)
                    and (trainings_left is None or n <= trainings_left)
                    and (time_left is None or self._bracket_seconds(rungs, sizes) <= time_left))

        n = plan_.largest_fitting(full, fits)
        if n == 0 and bracket == 0:
            n = 1  # the budgets were checked: one network fits (a time estimate may have moved since)
        if n == 0 or (bracket > 0 and n <= min(full, s.top)):
            return None  # a later bracket needs at least one selection
        entry = dict(type="bracket", bracket=bracket, auto=False, rungs=rungs,
                     counts=plan_.counts(n, s.eta, s.top, len(rungs)), starts=n)
        self.plans[bracket] = entry
        self.write(dict(entry))
        return entry

    def _auto_plan(self, trainings_left) -> dict:
        """Without a target: how many networks start, and the lowest rung (when not given): the
        search within ``search_share`` of the budget (see :mod:`fastrnn.tuning.halving_plan`)."""
        s = self.settings
        chars, seconds = self.budgets["budget_chars"], self.budgets["budget_seconds"]

        n, c = plan_.auto_starts(s), s.min_chars
        first_waves = {}

        def known(n):
            """The first wave's networks as a bracket of n would draw them (a wave's proposals are a
            function of the seed, its trials and the results before it: none yet): to plan with their
            real sizes."""
            size = min(n, s.wave)
            if size not in first_waves:
                wave = propose(s.sampler, self.F.seed, self.F.space, range(size), design=s.design)[0]
                first_waves[size] = [(config.hidden, config.seq_length) for config in wave]
            return first_waves[size]

        def fits(n, c):
            lengths, sizes = plan_.auto_rounds(s, n, c)
            return ((trainings_left is None or n <= trainings_left)
                    and (chars is None or plan_.plan_chars(lengths, sizes) <= s.search_share * chars)
                    and (seconds is None or self._bracket_seconds(lengths, sizes, known(n)) <= s.search_share * seconds))

        if c is None:  # the longest lowest rung that fits with n networks, else fewer networks at the shortest
            c = plan_.largest_length(lambda c: fits(n, c)) if n > s.top else None
            c = c if c is not None else plan_.MIN_AUTO_CHARS
        # the most networks that fit, counted down: a bracket of n draws a first wave of its own, so
        # fitting is not monotone in n and bisection could stop far below it (8 of 18, once)
        n = next((k for k in range(n, 0, -1) if fits(k, c)), 1)
        lengths, sizes = plan_.auto_rounds(s, n, c)
        top = plan_.promoted_count(sizes[-1], s.eta, s.top) if sizes else n
        entry = dict(type="bracket", bracket=0, auto=True, rungs=lengths + [None], counts=sizes + [top], starts=n,
                     stretch_last_rung=True)
        self.plans[0] = entry
        written = dict(entry)
        self.write(written)
        entry["seconds"] = written["seconds"]  # as a resumed run reads it
        return entry

    def top_horizon(self, trial: int, plan: dict, length: int) -> float | None:
        """Without a target: the characters network ``trial`` (trained to ``length``) would have
        read at the end of the top phase, were it promoted there now: the time left (less the
        end's reserve) shared by the top networks, each on its own lane at the run's pace, and
        the characters left shared equally; the smaller, or None when neither budget is known.

        The run's one pace, not the shape's own (which the top phase sizes stretches by): the
        two-point extrapolation underrates what a large network gains over a long training, and
        the cost model's horizon for the networks it rates too fast made up for it. Measured at
        600 s on tinyshakespeare (seed 0), each shape's own horizon ranked (374, 7, 0.0154) fifth
        (predicted 1.98) and the run answered (61, 21, 0.0415) at 1.7868; the run's pace sent
        (374, 7, 0.0154) to the top, where it ended at 1.6689."""
        top = plan["counts"][-1]
        config = self.trials[trial]
        ahead = []
        seconds = self._time_left()
        if seconds is not None and self.pace.known:
            share = max(0.0, seconds) * min(self.lanes.count, top) / top
            ahead.append(share / (self.pace.seconds_per_unit * self.cost(config.hidden, config.seq_length, 1.0)))
        chars = self.budgets["budget_chars"]
        if chars is not None:
            spent = sum(self.steps[t] * self.trials[t].seq_length for t in self.steps)
            ahead.append(max(0, chars - spent) / top)
        return length + min(ahead) if ahead else None

    def _time_left(self) -> float | None:
        seconds = self.budgets["budget_seconds"]
        return None if seconds is None else seconds - self.elapsed() - self.reserve()

    def _bracket_seconds(self, lengths, sizes, known=()) -> float:
        """Predicted seconds of rungs ``lengths`` with ``sizes`` networks: those of the lowest rung
        whose (h, s) are ``known`` (the rest of the search space's average), each later rung its
        costliest known ones (which may be promoted)."""
        known = sorted(known, key=lambda hs: -self.cost(*hs, 1.0))
        heldout = self.F.heldout.data.size
        total, below = 0.0, 0
        for chars, n in zip(lengths, sizes):
            if chars is None:
                break
            works = [self.cost(h, s, chars - below) + self.cost(h, s, heldout, True) for h, s in known[:n]]
            works += [self.average_work(chars - below) + self.average_work(heldout, True)] * (n - len(works))
            total += self.pace.seconds(works, self.lanes.count)
            below = chars
        return total

    def stretched_length(self, plan: dict, rung: int, promoted: list[int]) -> int:
        """The length of selective rung ``rung`` for the networks ``promoted`` to it: without a
        target and with a time budget, the last selective rung as long as the search's share of the
        time allows at the pace measured so far, between its planned length and eta**2 times the
        rung below; otherwise, and in plans written before (format 2), the planned length."""
        lengths = plan["rungs"]
        planned = lengths[rung]
        seconds = self.budgets["budget_seconds"]
        if (not plan.get("auto") or not plan.get("stretch_last_rung") or seconds is None or not self.pace.known or rung == 0
                or rung + 1 >= len(lengths) or lengths[rung + 1] is not None):
            return planned
        below = lengths[rung - 1]
        shapes = [(self.trials[t].hidden, self.trials[t].seq_length) for t in promoted]
        scoring = [self.cost(h, s, self.F.heldout.data.size, True) for h, s in shapes]
        left = self.settings.search_share * seconds - self.elapsed()

        def fits(chars: int) -> bool:
            works = [self.cost(h, s, chars - below) + w for (h, s), w in zip(shapes, scoring)]
            return self.pace.seconds(works, self.lanes.count) <= left

        low, high = planned, max(planned, below * self.settings.eta ** 2)
        if not fits(low):
            return planned
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(middle) else (low, middle - 1)
        return low

    def _short_of_time(self, plan: dict, rung: int, promoted: list[int]) -> bool:
        """Whether a time budget cannot pay for the next selective rung (then the best go straight to the top)."""
        seconds = self.budgets["budget_seconds"]
        top_rung = len(plan["rungs"]) - 1
        if seconds is None or rung + 1 >= top_rung or not self.pace.known:
            return False
        chars, below = plan["rungs"][rung + 1], plan["rungs"][rung]
        need = self.pace.seconds([self.cost(self.trials[t].hidden, self.trials[t].seq_length, chars - below)
                                  for t in promoted], self.lanes.count)
        if plan.get("auto"):  # planned to end at search_share: a selection is worth some overrun, not much
            return self.elapsed() + need > SEARCH_OVERRUN * self.settings.search_share * seconds
        rest = self._time_left()
        top_need = self.pace.seconds([self.cost(self.trials[t].hidden, self.trials[t].seq_length,
                                                plan["rungs"][-1] - below) for t in promoted[:plan["counts"][-1]]],
                                     self.lanes.count)
        return need + top_need > rest

    def _top_chars_cap(self, bracket, states, below) -> int | None:
        """The top rung's length a character budget allows, decided once (a ``segment`` line with
        ``cap``), or None."""
        chars = self.budgets["budget_chars"]
        if bracket in self.top_caps or chars is None:
            return self.top_caps.get(bracket)
        spent = sum(self.steps[t] * self.trials[t].seq_length for t in self.steps)
        cap = plan_.auto_top_chars(chars - spent, [(st.seq_length, st.steps) for st in states], below)
        self.top_caps[bracket] = cap
        self.write(dict(type="segment", bracket=bracket, chars=below, values=[], cap=cap, counters=self.counters()))
        return cap

    def _next_mark(self, states, position: int, cap: int | None) -> int | None:
        """A character budget without a target: the top rung's next checkpoint (nominal
        characters), about CHECKPOINT_SECONDS of training on, up to ``cap``; None at the cap."""
        if cap is None or position >= cap:
            return None
        if not self.pace.known:
            return cap
        per_char = self.pace.seconds([self.cost(st.hidden, st.seq_length, 1.0) for st in states], self.lanes.count)
        step = int(CHECKPOINT_SECONDS / per_char) if per_char > 0 else cap - position
        return position + min(max(step, 1), cap - position)

    def _time_slices(self, states, limit: float | None = None) -> list[int] | None:
        """A time budget without a target: each top network's updates in the next stretch (an equal
        share of the lanes for :func:`stretch_seconds`, or ``limit`` seconds, less what the end
        needs when time is short, within what a character budget leaves), or None when no network
        has time for one update."""
        left = self._time_left()
        usable = min(stretch_seconds(left), left - self._scoring_seconds(states), *([] if limit is None else [limit]))
        if usable < MIN_STRETCH_SECONDS:
            return None
        steps = self._updates_in(states, usable)
        return steps if max(steps, default=0) >= 1 else None

    def _scoring_seconds(self, states) -> float:
        """Predicted seconds to score ``states`` on the held-out text, on the lanes."""
        return self.pace.seconds([self.cost(st.hidden, st.seq_length, self.F.heldout.data.size, True)
                                  for st in states], self.lanes.count)

    def _updates_in(self, states, seconds: float) -> list[int]:
        """Each healthy network's updates in ``seconds`` of the lanes shared equally (each at its
        own cost, at the pace measured for its shape), within what a character budget leaves."""
        share = seconds * min(self.lanes.count, len(states)) / len(states)
        steps = [int(share / (self.pace.of_shape((st.hidden, st.seq_length))
                              * self.cost(st.hidden, st.seq_length, st.seq_length))) if st.status == 0 else 0
                 for st in states]
        chars = self.budgets["budget_chars"]
        if chars is not None:
            left_chars = chars - sum(self.steps[t] * self.trials[t].seq_length for t in self.steps)
            wanted = sum(n * st.seq_length for n, st in zip(steps, states))
            if wanted > left_chars:
                scale = max(0.0, left_chars) / wanted
                steps = [int(n * scale) for n in steps]
        return steps
