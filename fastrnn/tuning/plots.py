"""The paper's figures from run files: hyperparameters over optimisation steps."""

from __future__ import annotations

import os
from typing import Sequence

from .run_files import RunFile, trajectory_array

NAMES = ("hidden size", "sequence length", "learning rate")


def plot_runs(runs: Sequence[RunFile], labels: Sequence[str], out: str | os.PathLike, title: str = "") -> None:
    """One PNG: (A) all three hyperparameters overlaid, (B-D) one panel each.

    Several runs (the paper's three step sizes) are drawn one after another on a shared
    step axis, separated by dotted lines, as the paper's Fig 2 restarts at each step size.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    segments, offset, boundaries = [], 0, []
    for run in runs:
        steps, points = trajectory_array(run)
        index = offset + steps
        segments.append((index, points))
        offset = int(index[-1]) + 1
        boundaries.append(offset)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    panel_all = axes[0, 0]
    for k, name in enumerate(NAMES):
        for n, (index, points) in enumerate(segments):
            panel_all.plot(index, points[:, k], color=f"C{k}", label=name if n == 0 else None, lw=1)
    panel_all.set_title("A: all hyperparameters")
    panel_all.legend(loc="best", fontsize=8)
    for k, (ax, name) in enumerate(zip(axes.ravel()[1:], NAMES)):
        for n, (index, points) in enumerate(segments):
            ax.plot(index, points[:, k], color=f"C{n + 3}", lw=1, label=labels[n] if labels else None)
        ax.set_title(f"{'BCD'[k]}: {name}")
        if labels and k == 0:
            ax.legend(loc="best", fontsize=8)
    for ax in axes.ravel():
        for b in boundaries[:-1]:
            ax.axvline(b - 0.5, color="grey", ls=":", lw=0.8)
        ax.set_xlabel("optimizer step" + (" (runs one after another)" if len(runs) > 1 else ""))
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.savefig(out, dpi=110)
    plt.close(fig)
