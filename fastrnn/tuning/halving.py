"""Successive halving over training characters (``fastrnn tune --method halving``): networks start
short, the best 1/eta of each rung continue training from where they stopped, and the answer is the
best network of the top rung, trained to the length the user will train (issue 19).

How it runs (the shapes of a bracket, its rungs and how budgets size them:
:mod:`fastrnn.tuning.halving_plan`):

* **Synchronous rungs.** Every network of a rung finishes (and is scored on the held-out text)
  before any is promoted; a rung promotes the best 1/eta by held-out loss, ties to the lower trial
  index. Proposals are a function of the seed and the results recorded before them
  (:mod:`fastrnn.tuning.halving_sampler`). So, for budgets in characters or networks, the run is a
  function of its settings and seed, whatever the number of threads or Dask workers.
* **Recorded decisions.** A time budget makes decisions from the machine's measured speed (how
  many networks a bracket starts, a promotion straight to the top when the time runs short, where
  the top networks' learning rate starts to decay and where it reaches zero, where the top rung
  stops: :mod:`fastrnn.tuning.halving_top`). Each is written to the run file before it takes
  effect, and a resumed run follows the file, so it continues to the result the interrupted run
  was heading for.
* **Within the time.** With a target and a time budget, a rung that the time left cannot finish
  (the machine slowed, or a network trained slower than predicted) is stopped between two of its
  stretches once an earlier bracket has an answer: a ``stop`` line, and that answer stands. The
  stretches are then at most a quarter of the time left, so the run ends within its budget.
* **Continued, not retrained.** A promoted network continues from its state (weights, Adagrad
  memory, hidden state, data position): the same bits as training it straight through. Every live
  network's checkpoint is written after each rung and every :data:`CHECKPOINT_SECONDS` within one,
  so a killed run resumes without retraining more than that.
* **One value rule.** A network's value is F's: its mean held-out cross-entropy in nats per
  character, worth ln V when above it or not finite (diverged), computed by the objective's own
  rule; a rung of c characters gives the value F has at that (h, s, l) with ``train_chars = c``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from ..network.checkpoint import save_model
from ..network.model import STATUS_OK, TrainState
from ..objective.settings import differences, settings_from_record
from ..running.runs import RunOutcome
from . import halving_plan as plan_
from .deliver import model_info
from .halving_budget import CHECKPOINT_SECONDS, BudgetDecisions, BudgetError, stretch_seconds
from .halving_lanes import Lanes, Pace
from .halving_plan import HalvingSettings, steps_for
from .halving_sampler import Config, propose, rung_history
from .halving_store import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    Checkpoints,
    RunWriter,
    check_new_run,
    clear_old_files,
    companion_paths,
    read_halving,
)
from .halving_top import TopPhase
from .run_files import RunFileError, check_budgets

METHOD = "halving"


@dataclass
class HalvingResult:
    """The answer: the best network of the top rung."""

    x: list  # [h, s, l]
    fun: float  # held-out loss, nats per character
    chars: int  # nominal training characters of the top rung
    steps: int  # its updates
    trial: int
    message: str
    counters: dict
    seconds: float
    model: str | None = None  # the model file (None without a run file)
    finished_before: bool = False  # a resumed run that had already finished
    #: Where its learning rate decayed to zero, [first update, last], or None (a constant rate).
    cooldown: list | None = None
    state: TrainState | None = field(default=None, repr=False)  # the network (None for a finished file)

    @property
    def bits(self) -> float:
        return self.fun / math.log(2.0)


def halve(F, settings: HalvingSettings | None = None, *, out=None, resume: bool = False, overwrite: bool = False,
          budget_chars: int | None = None, budget_trainings: int | None = None, budget_seconds: float | None = None,
          started: float | None = None, clock: Callable[[], float] = time.monotonic,
          on_event: Callable[[dict], None] | None = None) -> HalvingResult:
    """Tune F's (h, s, l) by successive halving; see the module docstring.

    ``F`` is a held-out :class:`~fastrnn.objective.Objective` with beta 1 and common noise (its
    text, split, dtype, seed, backend and executor are used; its training length is the rungs').
    ``out`` is the run file (JSON Lines; beside it the checkpoint folder and the answer's model
    file, :func:`~fastrnn.tuning.halving_store.companion_paths`); ``resume=True`` continues it (its
    settings must match; the budgets may change). ``started``: the ``clock()`` reading the time
    budget counts from (the command's start; default now). Every argument is checked before a file
    is touched: a refused call changes nothing.
    """
    settings = (settings or HalvingSettings()).resolved()
    _check_objective(F)
    budgets = check_budgets(budget_chars, budget_trainings, budget_seconds)
    if resume and out is None:
        raise ValueError("resuming needs the run file")
    started = clock() if started is None else started
    saved = None
    if resume:
        saved = read_halving(out)
        _check_same_run(saved.settings, settings, F, out)
        if saved.result is not None:
            return stored_result(saved, out)
    elif out is not None:
        check_new_run(out, overwrite)
    run = _Run(F, settings, budgets, clock, started, on_event, saved)
    run.check_budgets()
    writer = None
    try:
        if out is not None:
            folder, model = companion_paths(out)
            run_id = saved.settings["run_id"] if saved else os.urandom(8).hex()
            if saved is None:  # a new run's file first: an existing one is claimed (locked), not yet changed
                writer = RunWriter(out, None, overwrite)
            run.checkpoints = Checkpoints(folder, run_id, F.corpus.fingerprint)
            run.checkpoints.prepare()
            run.model_path = model
            if saved is not None:
                for trial in sorted(run.live_trials()):  # a missing or foreign checkpoint stops here, before any write
                    run.state_of(trial)
                writer = RunWriter(out, saved.end, overwrite)
            run.writer = writer
            if saved is None:
                run.write(dict(type="settings", format=FORMAT, format_version=FORMAT_VERSION, method=METHOD,
                               run_id=run_id, halving=settings.record(), objective=F.settings(),
                               evaluation={"backend": F.backend.name}, checkpoints=os.path.basename(folder),
                               model=os.path.basename(model), **budgets))
                clear_old_files(folder, model)  # the replaced run's (--force)
                if run.calibration is not None:
                    run.write(dict(type="calibration", seconds_per_unit=run.calibration, lanes=run.lanes.count))
        return run.execute()
    finally:
        if writer is not None:
            writer.close()


class _OutOfTime(Exception):
    """A rung was stopped by the time budget (its ``stop`` line is written)."""


def _check_objective(F) -> None:
    definition = F.definition
    if definition.kind != "heldout":
        raise ValueError("successive halving tunes the held-out objective (--objective heldout)")
    if definition.beta != 1:
        raise ValueError("successive halving trains one network per trial: use beta 1 (--beta 1)")
    if definition.noise != "common":
        raise ValueError("successive halving seeds every network with --seed: use common noise (--noise common)")


def _check_same_run(saved: dict, settings: HalvingSettings, F, path) -> None:
    where = f"cannot resume {os.fspath(path)!r}"
    differ = plan_.setting_differences(saved["halving"], settings)
    if differ:
        name, ours, theirs = differ[0]
        raise RunFileError(f"{where}: its {name} is {ours!r}, this run's is {theirs!r}; resume with the same settings "
                           "or start a new --out file")
    differ = differences(settings_from_record(saved["objective"]), F.definition)
    if differ:
        shown = "; ".join(f"{name} {ours!r} there, {theirs!r} here" for name, ours, theirs in differ[:3])
        raise RunFileError(f"{where}: its objective differs ({shown}); resume with the same settings or start a new "
                           "--out file")


def stored_result(saved, out) -> HalvingResult:
    """The result of a finished run read from ``out``. Its model is the one beside ``out`` (the run
    wrote it there): the path the run recorded is where the file was, and a folder moved since
    would name another run's model, or none."""
    line = saved.result
    model = companion_paths(out)[1] if line.get("model") else None
    return HalvingResult(x=line["x"], fun=line["fun"], chars=line["chars"], steps=line["steps"], trial=line["trial"],
                         message=line["message"], counters=line["counters"], seconds=line["seconds"],
                         model=model, finished_before=True, cooldown=line.get("cooldown"))


class _Run(BudgetDecisions, TopPhase):
    """One run: its recorded lines replayed, then continued (see the module docstring)."""

    def __init__(self, F, settings: HalvingSettings, budgets: dict, clock, started, on_event, saved):
        self.F, self.settings, self.budgets = F, settings, budgets
        self.clock, self.started, self.on_event = clock, started, on_event
        self.lanes = Lanes(F)
        self.vocab_size = F.corpus.vocab_size
        self.writer = self.checkpoints = self.model_path = None
        self.calibration: float | None = None
        self.pace = Pace()
        self.trials: dict[int, Config] = {}
        self.trial_lines: dict[int, dict] = {}
        self.records: dict[tuple, dict] = {}
        self.promotions: dict[tuple, dict] = {}
        self.plans: dict[int, dict] = {}
        self.segments: dict[int, dict] = {}
        self.top_caps: dict[int, int] = {}
        self.cooldowns: dict[int, dict] = {}
        self.stopped: dict | None = None  # the ``stop`` line: the time ran out in a rung
        self.steps: dict[int, int] = {}
        self.diverged: set[int] = set()
        self.states: dict[int, TrainState] = {}
        self.elapsed_before = 0.0
        if saved is not None:
            self._replay(saved)

    # -- the record ---------------------------------------------------------------------------
    def _replay(self, saved) -> None:
        for line in saved.lines:
            kind = line["type"]
            if kind == "calibration":
                self.calibration = self.pace.seconds_per_unit = float(line["seconds_per_unit"])
            elif kind == "bracket":
                self.plans[line["bracket"]] = line
            elif kind == "trial":
                h, s, lr = line["x"]
                self.trials[line["trial"]] = Config(int(h), int(s), float(lr), tuple(line["z"]))
                self.trial_lines[line["trial"]] = line
                self.steps.setdefault(line["trial"], 0)
            elif kind == "record":
                self.records[(line["bracket"], line["rung"], line["trial"])] = line
                self.steps[line["trial"]] = line["steps"]
                if line.get("diverged"):
                    self.diverged.add(line["trial"])
            elif kind == "promotion":
                self.promotions[(line["bracket"], line["from_rung"])] = line
                if "chars" in line:
                    self.plans[line["bracket"]]["rungs"][line["rung"]] = line["chars"]
            elif kind == "stop":
                self.stopped = line
            elif kind == "cooldown":
                self.replay_cooldown(line)
            elif kind == "segment":
                self.segments[line["bracket"]] = line
                if line.get("cap") is not None:
                    self.top_caps[line["bracket"]] = line["cap"]
            if "seconds" in line:
                self.elapsed_before = max(self.elapsed_before, float(line["seconds"]))

    def elapsed(self) -> float:
        return self.elapsed_before + (self.clock() - self.started)

    def counters(self) -> dict:
        chars = sum(self.steps[t] * self.trials[t].seq_length for t in self.steps)
        return dict(trainings_run=len(self.trials), trainings_diverged=len(self.diverged),
                    training_steps=sum(self.steps.values()), training_chars=chars, seconds=round(self.elapsed(), 3))

    def write(self, entry: dict) -> None:
        if entry["type"] != "settings":
            entry["seconds"] = round(self.elapsed(), 3)
        if self.writer is not None:
            self.writer.write(entry)
        if self.on_event is not None:
            self.on_event(entry)

    def progress(self, **detail) -> None:
        if self.on_event is not None:
            self.on_event(dict(type="progress", counters=self.counters(), seconds=self.elapsed(), **detail))

    # -- the run ------------------------------------------------------------------------------
    def execute(self) -> HalvingResult:
        bracket = 0
        while self.stopped is None:
            plan = self.plans.get(bracket) or self.decide_plan(bracket)
            if plan is None:
                break
            try:
                self.run_bracket(bracket, plan)
            except _OutOfTime:
                break
            bracket += 1
            if plan.get("auto"):
                break
        return self.finish()

    def run_bracket(self, bracket: int, plan: dict) -> None:
        s = self.settings
        rungs = plan["rungs"]
        first = min((t for t, line in self.trial_lines.items() if line["bracket"] == bracket),
                    default=len(self.trials))
        members = list(range(first, first + plan["starts"]))
        top_rung = len(rungs) - 1
        for wave_index, start in enumerate(range(0, len(members), s.wave)):
            wave = members[start:start + s.wave]
            self.sample(bracket, wave_index, wave)
            if rungs[0] is not None:
                self.train_rung(bracket, 0, wave, rungs[0])
        rung = 0
        while rung < top_rung:
            rung, members = self.promote(bracket, rung, members, plan)
            if rungs[rung] is not None:
                self.train_rung(bracket, rung, members, rungs[rung])
        if rungs[top_rung] is None:
            self.train_top(bracket, members, rungs[top_rung - 1] if top_rung else 0)
        self.conclude(bracket, members, top_rung)

    def sample(self, bracket: int, wave_index: int, wave: list[int]) -> None:
        if all(t in self.trials for t in wave):
            return
        results = [(line["chars"], self.trials[line["trial"]].z, line["fun"]) for line in self.records.values()]
        history = rung_history(results, self.settings.startup)
        configs, used = propose(self.settings.sampler, self.F.seed, self.F.space, wave, history,
                                self.settings.design)
        for trial, config in zip(wave, configs):
            self.trials[trial] = config
            self.steps[trial] = 0
            line = dict(type="trial", trial=trial, bracket=bracket, wave=wave_index, x=config.x, z=list(config.z),
                        seed=self.F.seed, sampler=used)
            self.trial_lines[trial] = line
            self.write(line)

    def state_of(self, trial: int) -> TrainState:
        """The live network of ``trial``: in memory, from its checkpoint, or new (not yet trained)."""
        state = self.states.get(trial)
        if state is not None:
            return state
        config = self.trials[trial]
        if self.checkpoints is not None and self.checkpoints.exists(trial):
            state = self.checkpoints.load(trial, config)
            if state.dtype.name != self.F.dtype:
                raise CheckpointError(f"checkpoint {self.checkpoints.path(trial)!r} holds a {state.dtype} network; "
                                      f"this run trains in {self.F.dtype}")
        elif any(key[2] == trial for key in self.records):
            raise CheckpointError(f"checkpoint {self.checkpoints.path(trial)!r} of trial {trial} is missing; the run "
                                  "cannot continue that network without it (restore the file, or start a new run)")
        else:
            state = TrainState.fresh(config.hidden, config.seq_length, config.learning_rate, self.vocab_size,
                                     self.F.seed, self.F.dtype)
        self.states[trial] = state
        return state

    def train_rung(self, bracket: int, rung: int, members: list[int], chars: int) -> None:
        todo = [t for t in members if (bracket, rung, t) not in self.records]
        if not todo:
            return
        states = [self.state_of(t) for t in todo]
        scores = self.train_to(todo, states, [steps_for(chars, st.seq_length) for st in states], where=(bracket, rung))
        self.save_checkpoints(todo, states)
        for trial, state, score in zip(todo, states, scores):
            self.record(bracket, rung, trial, state, score, chars)

    def train_to(self, trials, states, targets, checkpoint: bool = True, where: tuple | None = None) -> list:
        """Train each state to its target updates in segments of at most CHECKPOINT_SECONDS (each
        followed by checkpoints), then score them; the scores. ``where``: the (bracket, rung)
        that the time budget may stop (see :meth:`_stop_if_out_of_time`)."""
        while True:
            left = [max(0, target - st.steps) if st.status == STATUS_OK else 0 for st, target in zip(states, targets)]
            if where is not None:
                self._stop_if_out_of_time(where, trials, states, left)
            if self.pace.known:
                left = self._segment(states, left, self._stretch_seconds(where))
            last = all(max(0, target - st.steps - n) == 0 or st.status != STATUS_OK
                       for st, target, n in zip(states, targets, left))
            scores = self.advance(states, left, score=last)
            if last:
                return scores
            if checkpoint:
                self.save_checkpoints(trials, states)
            self.progress(trials=list(trials))

    def _segment(self, states, left, limit: float = CHECKPOINT_SECONDS) -> list[int]:
        """The updates each network trains before the next checkpoint: a common stretch of text
        whose predicted time is about ``limit`` seconds."""
        seconds = self.pace.seconds([self.cost(st.hidden, st.seq_length, n * st.seq_length) for st, n in zip(states, left)],
                                    self.lanes.count)
        if seconds <= limit:
            return left
        share = limit / seconds
        return [min(n, max(1, math.ceil(n * share))) if n else 0 for n in left]

    def _may_stop(self) -> bool:
        """Whether a time budget may stop a rung: only once an earlier bracket has an answer."""
        return self.budgets["budget_seconds"] is not None and self.answer() is not None

    def _stretch_seconds(self, where) -> float:
        """Longest stretch between checkpoints; where the time may stop the rung, at most a
        quarter of the time left, so that a slow stretch is seen before the budget is spent."""
        if where is None or not self._may_stop():
            return CHECKPOINT_SECONDS
        return stretch_seconds(self._time_left())

    def _stop_if_out_of_time(self, where, trials, states, left) -> None:
        """A rung the time left cannot finish (training and scoring, at the pace measured so far)
        is stopped, once an earlier bracket has an answer: a ``stop`` line, its networks'
        checkpoints dropped, and the run ends with the answer it has (raises _OutOfTime)."""
        if not self._may_stop() or not self.pace.known:
            return
        heldout = self.F.heldout.data.size
        works = [self.cost(st.hidden, st.seq_length, n * st.seq_length) + self.cost(st.hidden, st.seq_length, heldout, True)
                 for st, n in zip(states, left) if st.status == STATUS_OK]
        need = self.pace.seconds(works, self.lanes.count)
        if need <= self._time_left():
            return
        bracket, rung = where
        self.stopped = dict(type="stop", bracket=bracket, rung=rung, trials=sorted(trials),
                            note=f"the time left ({max(0.0, self._time_left()):.1f} s) cannot finish this rung "
                                 f"(about {need:.1f} s); the answer of an earlier bracket stands")
        self.write(dict(self.stopped))
        self._drop_bracket(bracket, trials)
        raise _OutOfTime

    def advance(self, states, steps, score: bool) -> list:
        trained = [self.cost(st.hidden, st.seq_length, n * st.seq_length) for st, n in zip(states, steps)]
        works = trained
        if score:
            works = [w + self.cost(st.hidden, st.seq_length, self.F.heldout.data.size, scoring=True)
                     for w, st in zip(works, states)]
        began = time.perf_counter()
        scores, seconds = self.lanes.advance(states, steps, score)
        self.pace.observe(works, self.lanes.count, time.perf_counter() - began)
        for state, work, own in zip(states, trained, seconds):
            if state.status == STATUS_OK:  # a diverged network stopped short of its work
                self.pace.observe_shape((state.hidden, state.seq_length), work, own)
        for trial, state in self.states.items():
            self.steps[trial] = state.steps
        return scores

    def save_checkpoints(self, trials, states) -> None:
        if self.checkpoints is not None:
            for trial, state in zip(trials, states):
                self.checkpoints.save(trial, state)

    def value(self, state: TrainState, score) -> tuple[float, bool]:
        """The network's value by the objective's rule, and whether it counts as diverged."""
        value = self.F._run_value(RunOutcome.of(state, score))
        return (self.F.diverged_value, True) if value is None else (float(value), False)

    def record(self, bracket, rung, trial, state, score, chars) -> None:
        fun, diverged = self.value(state, score)
        if diverged:
            self.diverged.add(trial)
        self.steps[trial] = state.steps
        config = self.trials[trial]
        entry = dict(type="record", trial=trial, bracket=bracket, rung=rung, chars=int(chars), steps=int(state.steps),
                     x=config.x, z=list(config.z), fun=fun, heldout_loss=score, diverged=diverged,
                     counters=self.counters())
        self.records[(bracket, rung, trial)] = entry
        self.write(entry)

    def promote(self, bracket: int, rung: int, members: list[int], plan: dict) -> tuple[int, list[int]]:
        """(the rung the best of rung ``rung`` go to, their trials): recorded, or decided now."""
        line = self.promotions.get((bracket, rung))
        if line is None:
            predicted = self.predicted_losses(bracket, rung, members, plan)
            rank = predicted if predicted is not None else {t: self.records[(bracket, rung, t)]["fun"] for t in members}
            ranked = sorted(members, key=lambda t: (rank[t], t))
            to_rung, note = rung + 1, None
            count = plan["counts"][to_rung]
            if self._short_of_time(plan, rung, ranked[:count]):
                to_rung, count = len(plan["rungs"]) - 1, plan["counts"][-1]
                note = "the time left goes to the top rung"
            line = dict(type="promotion", bracket=bracket, from_rung=rung, rung=to_rung, trials=sorted(ranked[:count]),
                        note=note)
            chars = self.stretched_length(plan, to_rung, ranked[:count]) if to_rung == rung + 1 else None
            if chars is not None and chars != plan["rungs"][to_rung]:
                line["chars"] = plan["rungs"][to_rung] = chars  # the rung's length, decided now
            if predicted is not None:
                line["predicted"] = [[t, predicted[t]] for t in ranked]
            self.promotions[(bracket, rung)] = line
            entry = dict(line)
            self.write(entry)
            line["seconds"] = entry["seconds"]  # as a resumed run reads it: when the top phase began
        promoted = list(line["trials"])
        dropped = [t for t in members if t not in promoted]
        for trial in dropped:
            self.states.pop(trial, None)
        if self.checkpoints is not None:
            self.checkpoints.drop(dropped)
        return line["rung"], promoted

    def predicted_losses(self, bracket: int, rung: int, members: list[int], plan: dict) -> dict[int, float] | None:
        """Without a target, from a rung with one below it: each network's loss extrapolated to the
        length it would reach in the top phase (:func:`~fastrnn.tuning.halving_plan.extrapolated_loss`
        through its two last rung values, to :meth:`top_horizon`), by which the rung ranks them: a
        time budget's answer trains 50 to 500 times the search's longest rung, and ranked by their
        values there, a small network levelling off took one of the two top places in each of three
        600 s runs on tinyshakespeare. None (rank by value) otherwise, and when the rung below is
        shorter than :data:`~fastrnn.tuning.halving_plan.MIN_EXTRAPOLATED_CHARS`."""
        if not plan.get("auto") or rung == 0 or plan["rungs"][rung - 1] < plan_.MIN_EXTRAPOLATED_CHARS:
            return None
        lengths = plan["rungs"]
        predicted = {}
        for trial in members:
            now, before = self.records[(bracket, rung, trial)], self.records[(bracket, rung - 1, trial)]
            horizon = self.top_horizon(trial, plan, lengths[rung])
            if horizon is None:
                return None
            predicted[trial] = now["fun"] if now.get("diverged") or before.get("diverged") else plan_.extrapolated_loss(
                before["fun"], now["fun"], lengths[rung] / lengths[rung - 1], horizon / lengths[rung])
        return predicted

    def conclude(self, bracket: int, members: list[int], top_rung: int) -> None:
        """Keep the answer's checkpoint; drop the bracket's other networks'."""
        self._drop_bracket(bracket, members)

    def _drop_bracket(self, bracket: int, trials) -> None:
        """Forget ``trials`` and every network of ``bracket`` held in memory, with their
        checkpoints, except the answer's. Only this bracket's: a resumed run replays its finished
        brackets while it holds the live networks of a later one."""
        best = self.answer()
        dropped = (set(trials) | {t for t in self.states if self.trial_lines[t]["bracket"] == bracket}) - {best}
        for trial in dropped:
            self.states.pop(trial, None)
        if self.checkpoints is not None:
            self.checkpoints.drop(sorted(dropped))

    def live_trials(self) -> set[int]:
        """The trials whose networks the run still needs: promoted but not yet recorded at their
        rung, recorded at a rung that has not promoted yet, and the answer so far."""
        live = set()
        if self.stopped is not None:  # the run ends with the answer it has
            best = self.answer()
            return {best} if best is not None else set()
        for (bracket, _), line in self.promotions.items():
            live |= {t for t in line["trials"] if (bracket, line["rung"], t) not in self.records}
        for (bracket, rung, trial) in self.records:
            if rung < len(self.plans[bracket]["rungs"]) - 1 and (bracket, rung) not in self.promotions:
                live.add(trial)
        best = self.answer()
        return live | ({best} if best is not None else set())

    def answer(self) -> int | None:
        """The best network of any bracket's top rung (held-out loss, then trial index)."""
        tops = [(line["fun"], trial) for (bracket, rung, trial), line in self.records.items()
                if rung == len(self.plans[bracket]["rungs"]) - 1]
        return min(tops)[1] if tops else None

    def finish(self) -> HalvingResult:
        best = self.answer()
        if best is None:
            raise BudgetError("the budgets paid for no network at the top rung")
        record = next(line for (b, r, t), line in self.records.items()
                      if t == best and r == len(self.plans[b]["rungs"]) - 1)
        state = self.state_of(best)
        decay = self.cooldowns.get(record["bracket"], {}).get(best)
        decay = decay if decay is not None and record["steps"] > decay.start else None  # None: a constant rate
        if self.model_path is not None:  # a model `fastrnn train --resume` continues on the run's split
            info = model_info(self.F, self.model_path, record["steps"], record["fun"], dict(
                run=self.writer.path if self.writer is not None else None, method=METHOD, trial=best,
                point=record["x"], value=record["fun"], objective="heldout", seed=self.F.seed, dtype=self.F.dtype,
                steps=record["steps"], whole=True, cooldown=decay.as_list() if decay is not None else None))
            save_model(self.model_path, state, self.F.corpus.vocab, self.F.source_corpus.name, info=info)
        brackets = len(self.plans)
        message = (f"{len(self.trials)} networks in {brackets} bracket{'s' if brackets > 1 else ''}; the answer trained "
                   f"{record['chars']:,} characters ({record['steps']:,} updates)")
        if decay is not None:
            message += f"; {decay.describe(record['steps'])}"
        if self.stopped is not None:
            message += f"; bracket {self.stopped['bracket']} was stopped at rung {self.stopped['rung']}: the time ran out"
        entry = dict(type="result", x=record["x"], fun=record["fun"], bits=record["fun"] / math.log(2.0),
                     chars=record["chars"], steps=record["steps"], trial=best, model=self.model_path, message=message,
                     counters=self.counters(), cooldown=decay.as_list() if decay is not None else None)
        self.write(entry)
        return HalvingResult(x=record["x"], fun=record["fun"], chars=record["chars"], steps=record["steps"], trial=best,
                             message=message, counters=entry["counters"], seconds=entry["seconds"],
                             model=self.model_path, state=state, cooldown=entry["cooldown"])


__all__ = ["halve", "stored_result", "HalvingResult", "HalvingSettings", "BudgetError", "METHOD", "CHECKPOINT_SECONDS"]
