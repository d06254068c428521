"""Progress bars on stderr, shown only to a person at a terminal."""

from __future__ import annotations

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
