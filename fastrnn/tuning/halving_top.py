"""The top phase without a target (a mixin of :class:`fastrnn.tuning.halving._Run`): the top
networks train as long as the budget allows, in stretches each scored (a ``segment`` line) and
checkpointed, and their learning rate cools down to zero at the end.

**Stretches.** A time budget gives each network an equal share of the time (each trains as far as
its own speed takes it: at equal time is how networks compare for a time budget); a character budget
alone, an equal length of text (the same for any machine), up to a cap decided once.

**Cooldown.** The run knows where the top networks' training ends. Over the last
:attr:`~fastrnn.tuning.halving_plan.HalvingSettings.cooldown` share of the top phase (0.2 by
default) each network's learning rate decays linearly from its own to zero: a warmup-stable-decay
(trapezoidal) schedule, which matches a schedule fitted to the length while the length stays open
until the decay starts (Hägele et al., NeurIPS 2024). At a constant rate a long-trained char-RNN's
held-out loss wanders with the text it read last (up to 0.07 nats between 30 s stretches for
(374, 7, 0.0154) on tinyshakespeare); the decay settles it where the rate is high and costs little
where Adagrad has already made it small.

**Bits.** The decay is a function of the update count alone (:class:`~fastrnn.network.schedule.Cooldown`:
updates ``[start, end)`` cut into ``COOLDOWN_PIECES`` equal pieces of one rate each; a network
stops at ``end``). So the same network trains the same bits however its training is stretched,
checkpointed and resumed, and ``fastrnn train --cooldown`` trains by the same rule.

**Where it starts** (a ``cooldown`` line, written before it takes effect and followed on resume):

* a character budget: at the share of the top phase's characters (below the cap), for every
  network the update that reaches it; ``end`` the cap's (a function of the settings);
* a time budget: once the time left is the share of the top phase's time (from the promotion to
  the top rung to the end's reserve), at each network's update count then; ``end`` adds the
  updates its lane is measured to train in the time left (each stretch scored). A network the
  machine makes slower than predicted is scored where the time stops it.
"""

from __future__ import annotations

import math
from fractions import Fraction

from ..network.schedule import Cooldown
from .halving_budget import MIN_STRETCH_SECONDS, stretch_seconds
from .halving_plan import steps_for


def _stretches(left: float, scoring: float) -> int:
    """How many stretches (each scored) :meth:`_time_slices` cuts ``left`` seconds into."""
    count = 0
    while (usable := min(stretch_seconds(left), left - scoring)) >= MIN_STRETCH_SECONDS:
        left -= usable + scoring
        count += 1
    return count


class TopPhase:
    """Training the top networks without a target (beside
    :class:`~fastrnn.tuning.halving_budget.BudgetDecisions`); expects the run's ``settings``,
    ``budgets``, ``cooldowns`` ({bracket: {trial: Cooldown}}), ``segments``, ``promotions``,
    ``plans``, ``records``, ``pace``, ``lanes``, ``F`` and ``advance()``, ``write()``, ``record()``,
    ``value()``, ``state_of()``, ``save_checkpoints()``, ``counters()``."""

    def train_top(self, bracket: int, members: list[int], below: int) -> None:
        """The top networks train as long as the budget allows (see the module docstring); where
        they stop is the top rung."""
        top_rung = len(self.plans[bracket]["rungs"]) - 1
        if all((bracket, top_rung, t) in self.records for t in members):
            return
        states = [self.state_of(t) for t in members]
        if self.budgets["budget_seconds"] is not None:
            scores = self._train_top_for_time(bracket, members, states)
            lengths = [st.steps * st.seq_length for st in states]
        else:
            position, scores = self._train_top_to_cap(bracket, members, states, below)
            lengths = [position] * len(states)
        if scores is None:  # nothing trained in this session: score them where they are
            scores = self.advance(states, [0] * len(states), True)
        for trial, state, score, chars in zip(members, states, scores, lengths):
            self.record(bracket, top_rung, trial, state, score, chars)

    def _segment_line(self, bracket, members, states, scores, chars: int) -> None:
        self.save_checkpoints(members, states)
        values = [[t, self.value(st, sc)[0]] for t, st, sc in zip(members, states, scores)]
        entry = dict(type="segment", bracket=bracket, chars=chars, lengths=[st.steps * st.seq_length for st in states],
                     values=values, counters=self.counters())
        self.segments[bracket] = entry
        self.write(entry)

    def _train_top_for_time(self, bracket, members, states):
        scores = None
        while True:
            stable = self.stable_seconds(bracket)
            if stable is not None and stable < MIN_STRETCH_SECONDS:
                self.cooldown_for_time(bracket, members, states)
                stable = None
            steps = self._time_slices(states, stable)
            decays = self.decays(bracket, members)
            if steps is not None:
                steps = [min(n, max(0, d.end - st.steps)) if d is not None else n
                         for n, st, d in zip(steps, states, decays)]
            if steps is None or max(steps, default=0) == 0:
                return scores
            scores = self.advance_cooled(states, steps, decays, True)
            self._segment_line(bracket, members, states, scores, min(st.steps * st.seq_length for st in states))

    def _train_top_to_cap(self, bracket, members, states, below):
        cap = self._top_chars_cap(bracket, states, below)
        position = max([below, self.segments.get(bracket, {}).get("chars", 0)]
                       + [st.steps * st.seq_length for st in states])
        position = min(position, cap) if cap is not None else position
        self.cooldown_for_chars(bracket, members, states, below, cap)
        decays = self.decays(bracket, members)
        scores = None
        while (mark := self._next_mark(states, position, cap)) is not None:
            steps = [max(0, steps_for(mark, st.seq_length) - st.steps) for st in states]
            scores = self.advance_cooled(states, steps, decays, True)
            position = mark
            self._segment_line(bracket, members, states, scores, mark)
        return position, scores

    def decays(self, bracket: int, members) -> list:
        """Each top network's Cooldown (None before the decay is decided)."""
        decided = self.cooldowns.get(bracket, {})
        return [decided.get(t) for t in members]

    def replay_cooldown(self, line: dict) -> None:
        self.cooldowns[line["bracket"]] = {t: Cooldown(*pair) for t, pair in zip(line["trials"], line["updates"])}

    def _write_cooldown(self, bracket: int, members, decays: list[Cooldown], note: str) -> dict:
        line = dict(type="cooldown", bracket=bracket, trials=list(members), updates=[d.as_list() for d in decays],
                    note=note)
        self.write(dict(line))
        self.replay_cooldown(line)
        return self.cooldowns[bracket]

    def cooldown_for_chars(self, bracket: int, members, states, below: int, cap: int | None) -> dict | None:
        """A character budget's decay (decided once the cap is), or None without one."""
        share = self.settings.cooldown
        if bracket in self.cooldowns or not share or cap is None:
            return self.cooldowns.get(bracket)
        begins = cap - int(share * (cap - below))
        decays = [Cooldown(min(steps_for(begins, st.seq_length), steps_for(cap, st.seq_length)),
                           steps_for(cap, st.seq_length)) for st in states]
        return self._write_cooldown(bracket, members, decays, f"the rate decays from {begins:,} characters to {cap:,}")

    def stable_seconds(self, bracket: int) -> float | None:
        """A time budget: the seconds left before the decay starts (None once it has, or without one)."""
        share = self.settings.cooldown
        if bracket in self.cooldowns or not share:
            return None
        span = self.budgets["budget_seconds"] - self.reserve() - self._top_started(bracket)
        return self._time_left() - share * max(0.0, span)

    def _top_started(self, bracket: int) -> float:
        """When the top phase began: the promotion to the top rung (or the bracket's plan)."""
        top_rung = len(self.plans[bracket]["rungs"]) - 1
        for (b, _), line in self.promotions.items():
            if b == bracket and line["rung"] == top_rung:
                return float(line.get("seconds", 0.0))
        return float(self.plans[bracket].get("seconds", 0.0))

    def cooldown_for_time(self, bracket: int, members, states) -> dict | None:
        """A time budget's decay, decided now: each network from its update count to the updates
        its lane trains in the time left, less a scoring per stretch (as :meth:`_time_slices` spends
        it), within what a character budget leaves."""
        left = max(0.0, self._time_left())
        scoring = self._scoring_seconds(states)
        usable = max(0.0, left - scoring * _stretches(left, scoring))
        decays = [Cooldown(st.steps, st.steps + n) for st, n in zip(states, self._updates_in(states, usable))]
        if all(d.end == d.start for d in decays):
            return None  # no time for an update: the phase ends where it is
        return self._write_cooldown(bracket, members, decays, f"the rate decays over the last {left:.1f} s")

    def advance_cooled(self, states, steps, decays, score: bool) -> list:
        """:meth:`advance`, each network in ``decays`` (a list beside ``states``, None entries for
        none) trained at its decayed rates (:func:`rounds_of`); the rates are restored after."""
        rounds = rounds_of([st.steps for st in states], steps, decays)
        if not rounds:
            return self.advance(states, steps, score)
        rates = [st.learning_rate for st in states]
        try:
            for k, (counts, factors) in enumerate(rounds):
                for st, rate, factor in zip(states, rates, factors):
                    st.learning_rate = rate * factor
                scores = self.advance(states, counts, score and k == len(rounds) - 1)
        finally:
            for st, rate in zip(states, rates):
                st.learning_rate = rate
        return scores


def rounds_of(positions, steps, decays) -> list[tuple[list[int], list[float]]]:
    """Networks at updates ``positions`` training ``steps`` more, each at one rate per piece of its
    decay (None: a constant rate), as rounds trained together: ``(updates, factors of the rate)``,
    one of each per network. The rounds cut every network's stretch at the same fractions of it
    (each network's own rate changes among them), so a round's networks take about as long as one
    another (their stretches were sized to equal times) and no lane waits for another."""
    if not any(decay is not None and n > 0 for n, decay in zip(steps, decays)):
        return []
    cuts = {Fraction(0), Fraction(1)}
    for position, n, decay in zip(positions, steps, decays):
        if decay is not None and n > 0:
            done = 0
            for count, _ in decay.runs(position, n):
                done += count
                cuts.add(Fraction(done, n))
    edges = sorted(cuts)
    rounds = []
    for low, high in zip(edges, edges[1:]):
        counts, factors = [], []
        for position, n, decay in zip(positions, steps, decays):
            first, last = math.floor(low * n), math.floor(high * n)
            counts.append(last - first)
            runs = decay.runs(position + first, last - first) if decay is not None and last > first else [(0, 1.0)]
            factors.append(runs[0][1])
        rounds.append((counts, factors))
    return rounds
