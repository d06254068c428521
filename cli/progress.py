"""Progress bars on stderr, shown only to a person at a terminal."""

from __future__ import annotations

import math
import sys

from tqdm import tqdm


def progress_bar(total: int | None, quiet: bool, **kwargs) -> tqdm:
    """A tqdm bar on stderr; silent with ``--quiet`` or when stderr is not a terminal."""
    return tqdm(total=total, file=sys.stderr, disable=quiet or not sys.stderr.isatty(), dynamic_ncols=True, **kwargs)


class RunBars:
    """One bar per labelled run (a trial's step size, a method's seed), the previous one closed when
    the next begins: ``bars(label, position, postfix)``; ``close()`` at the end."""

    def __init__(self, quiet: bool, total: int | None = None, **kwargs):
        self.quiet, self.total, self.kwargs = quiet, total, kwargs
        self.bars: dict = {}

    def __call__(self, label: str, position: int, postfix: str) -> None:
        if label not in self.bars:
            self.close()
            self.bars[label] = progress_bar(total=self.total, quiet=self.quiet, desc=label, **self.kwargs)
        bar = self.bars[label]
        bar.update(position - bar.n)
        bar.set_postfix_str(postfix)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


class TuneProgress:
    """What `tune`'s bar counts and says. With a budget the bar counts it (training characters or
    networks, this run's own), so its end and its time estimate are the run's; without one it
    counts steps up to --steps, and :meth:`warning` says early how long that is heading for. A
    sampler's record shows the trial's own point and value beside the best so far."""

    def __init__(self, max_steps: int, budget_chars: int | None, budget_trainings: int | None, counters_at_start,
                 budget_seconds: float | None = None):
        self.max_steps, self.start = max_steps, counters_at_start
        if budget_seconds is not None:  # the bar counts the run's own clock (its records' elapsed)
            self.total, self.unit, self.counter = int(math.ceil(budget_seconds)), "s", "elapsed"
        elif budget_chars is not None:
            self.total, self.unit, self.counter = budget_chars, "char", "training_chars"
        elif budget_trainings is not None:
            self.total, self.unit, self.counter = budget_trainings, "network", "trainings_run"
        else:
            self.total, self.unit, self.counter = max_steps, "step", None
        self.best = float("inf")
        self.warned = False

    def position(self, record: dict) -> int:
        if self.counter is None:
            return record["step"]
        if self.counter == "elapsed":
            return min(self.total, int(record["elapsed"]))
        return min(self.total, record["counters"][self.counter] - self.start[self.counter])

    def postfix(self, record: dict, form) -> str:
        self.best = min(self.best, record["fun"])
        if record.get("rule") == "skipped":
            skipped = len(record.get("trials", [None]))
            return f"{skipped} trial{'s' * (skipped > 1)} skipped: {record['note']}; best={self.best:.4f}"
        if "trial" in record:
            trial = record["trial"]
            return f"trial={form(trial['x'])} F={trial['fun']:.4f} best={self.best:.4f}"
        if "trials" in record:  # a batch: its best trial
            trial = min(record["trials"], key=lambda trial: trial["fun"])
            return (f"{len(record['trials'])} trials, best of them={form(trial['x'])} F={trial['fun']:.4f} "
                    f"best={self.best:.4f}")
        return f"x={form(record['x'])} F={record['fun']:.4f} best={self.best:.4f}"

    def warning(self, record: dict, seconds: float) -> str | None:
        """Once, after the first step of a run without a budget: where --steps is heading."""
        if self.counter is not None or self.warned or record["step"] < 1:
            return None
        self.warned = True
        remaining = seconds / record["step"] * (self.max_steps - record["step"])
        hours, rest = divmod(int(remaining), 3600)
        return (f"no budget: up to {self.max_steps:,} steps, about {hours}:{rest // 60:02d}:{rest % 60:02d} more at "
                "this pace; --budget-seconds, --budget-chars or --budget-trainings bounds the run")
