"""Figures: the paper's hyperparameters over optimisation steps, a tuning run's trials, the
learning curves of trained networks, and methods compared over seeds (median and range). Each
writes one PNG (matplotlib, without a display)."""

from __future__ import annotations

import math
import os
import warnings
from typing import Sequence

import numpy as np

from .run_files import RunFile, trajectory_array
from .trials import trials

NAMES = ("hidden size", "sequence length", "learning rate")
_LN2 = math.log(2.0)
_RUNG_MARKERS = "osD^vP*X"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _log_axis(ax, values, base: int = 10) -> None:
    """A log y axis where every value is positive (else symmetric-log, which shows zero and signs):
    h, s and l span decades, and on a linear axis a learning rate near 0.1 is a flat line. Base 2
    (h and s, searched in log2) is labelled with plain numbers: 16, 32, 64."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size and (values > 0).all():
        ax.set_yscale("log", base=base)
        if base == 2:
            from matplotlib.ticker import FuncFormatter

            ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    elif values.size:
        positive = np.abs(values[values != 0])
        ax.set_yscale("symlog", linthresh=float(positive.min()) if positive.size else 1.0)


def plot_runs(runs: Sequence[RunFile], labels: Sequence[str], out: str | os.PathLike, title: str = "") -> None:
    """One PNG: (A) all three hyperparameters overlaid, (B-D) one panel each, on log axes.

    Several runs (the paper's three step sizes) are drawn one after another on a shared
    step axis, separated by dotted lines, as the paper's Fig 2 restarts at each step size.
    """
    plt = _pyplot()
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
    _log_axis(panel_all, np.concatenate([points.ravel() for _, points in segments]))
    for k, (ax, name) in enumerate(zip(axes.ravel()[1:], NAMES)):
        for n, (index, points) in enumerate(segments):
            ax.plot(index, points[:, k], color=f"C{n + 3}", lw=1, label=labels[n] if labels else None)
        ax.set_title(f"{'BCD'[k]}: {name}")
        _log_axis(ax, np.concatenate([points[:, k] for _, points in segments]), 2 if k < 2 else 10)
        if labels and k == 0:
            ax.legend(loc="best", fontsize=8)
    for ax in axes.ravel():
        for b in boundaries[:-1]:
            ax.axvline(b - 0.5, color="grey", ls=":", lw=0.8)
        ax.set_xlabel("optimizer step" + (" (runs one after another)" if len(runs) > 1 else ""))
        ax.grid(alpha=0.3, which="both")
    if title:
        fig.suptitle(title)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _value_limits(runs: Sequence[RunFile], values: np.ndarray) -> tuple[float, float]:
    """The y range of trial values: from the best to a little above a uniform guess (ln V) for the
    held-out objective; the penalty (1e6 and more) and diverged networks are left above it."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    low = float(finite.min())
    uniform = [run.settings["objective"].get("diverged_value") for run in runs
               if run.settings["objective"].get("kind", "paper") == "heldout"]
    uniform = [value / 2.0 for value in uniform if isinstance(value, (int, float))]  # 2 ln V: a diverged run's
    if uniform:
        high = max(uniform) + 0.25
    else:
        sane = finite[finite < 1e6]
        high = float(sane.max()) if sane.size else float(finite.max())
    high = max(high, low + 1e-3)
    return low - 0.05 * (high - low) - 1e-9, high + 0.05 * (high - low)


def plot_trials(runs: Sequence[RunFile], labels: Sequence[str], out: str | os.PathLike, x: str = "chars",
                title: str = "") -> None:
    """One PNG of the trials of tuning runs: (A) each trial's value (held-out loss) against the
    training characters (or seconds) the run had spent, with the best so far as a line; (B-D) each
    trial's hidden size, sequence length and learning rate on log axes, the best so far as a line.

    Values above the plotted range (penalties, diverged networks) are drawn as triangles on its top
    edge. Trials whose record names a ``rung`` (a successive-halving method's) get a marker per rung.
    """
    plt = _pyplot()
    key = {"chars": "chars", "seconds": "seconds"}[x]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    found = [trials(run) for run in runs]
    values = np.array([t.fun for run_trials in found for t in run_trials], dtype=float)
    low, high = _value_limits(runs, values)
    rungs = sorted({t.extra["rung"] for run_trials in found for t in run_trials if "rung" in t.extra})
    for n, (run_trials, label) in enumerate(zip(found, labels or [None] * len(found))):
        if not run_trials:
            continue
        color = f"C{n}"
        spent = np.array([getattr(t, key) for t in run_trials], dtype=float)
        fun = np.array([t.fun for t in run_trials], dtype=float)
        points = np.array([t.x for t in run_trials], dtype=float)
        best_index = _best_so_far_index(fun)
        markers = [_RUNG_MARKERS[rungs.index(t.extra["rung"]) % len(_RUNG_MARKERS)] if "rung" in t.extra else "o"
                   for t in run_trials]
        ax = axes[0, 0]
        inside = fun <= high
        for marker in set(markers):
            chosen = np.array([m == marker for m in markers]) & inside
            ax.scatter(spent[chosen], fun[chosen], s=14, color=color, marker=marker, alpha=0.6, lw=0)
        above = ~inside & np.isfinite(spent)
        ax.scatter(spent[above], np.full(above.sum(), high), s=22, color=color, marker="^", alpha=0.6, lw=0, clip_on=False)
        best = np.where(best_index >= 0, fun[np.maximum(best_index, 0)], np.nan)
        ax.step(spent, np.minimum(best, high), where="post", color=color, lw=1.5, label=label)
        for k, name in enumerate(NAMES):
            panel = axes.ravel()[k + 1]
            panel.scatter(spent, points[:, k], s=12, color=color, alpha=0.5, lw=0)
            line = np.where(best_index >= 0, points[np.maximum(best_index, 0), k], np.nan)
            panel.step(spent, line, where="post", color=color, lw=1.2)
    axes[0, 0].set_ylim(low, high)
    axes[0, 0].set_title("A: each trial's value, and the best so far")
    axes[0, 0].set_ylabel("held-out loss (nats/char)" if _heldout(runs) else "F")
    for rung_index, rung in enumerate(rungs):
        axes[0, 0].scatter([], [], color="grey", marker=_RUNG_MARKERS[rung_index % len(_RUNG_MARKERS)], label=f"rung {rung}")
    if labels or rungs:
        axes[0, 0].legend(loc="best", fontsize=8)
    all_points = np.array([t.x for run_trials in found for t in run_trials], dtype=float).reshape(-1, 3)
    for k, name in enumerate(NAMES):
        panel = axes.ravel()[k + 1]
        panel.set_title(f"{'BCD'[k]}: {name} of each trial (line: the best so far)")
        _log_axis(panel, all_points[:, k], 2 if k < 2 else 10)
    for ax in axes.ravel():
        ax.set_xlabel("training characters spent" if key == "chars" else "seconds")
        if key == "chars" and _spans_decades([getattr(t, key) for run_trials in found for t in run_trials]):
            ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
    if title:
        fig.suptitle(title)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _best_so_far_index(values: np.ndarray) -> np.ndarray:
    """For each position, the index of the lowest finite value up to it (-1 before the first)."""
    index = np.full(values.size, -1)
    best = -1
    for k, value in enumerate(values):
        if np.isfinite(value) and (best < 0 or value < values[best]):
            best = k
        index[k] = best
    return index


def _heldout(runs: Sequence[RunFile]) -> bool:
    return all(run.settings["objective"].get("kind", "paper") == "heldout" for run in runs)


def _spans_decades(values) -> bool:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    return values.size > 1 and values.max() / values.min() >= 30


def plot_curves(curves: Sequence, labels: Sequence[str], out: str | os.PathLike, title: str = "") -> None:
    """One PNG of learning curves: training (dashed) and held-out (solid) loss per character
    against characters read, log x axis, nats on the left and bits on the right. ``curves``: one
    sequence of :class:`~fastrnn.network.session.CurvePoint` per trained network."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    chars = []
    for n, (curve, label) in enumerate(zip(curves, labels)):
        x = np.array([p.chars for p in curve], dtype=float)
        chars.extend(x)
        train = np.array([p.train_nats for p in curve], dtype=float)
        heldout = np.array([np.nan if p.heldout_nats is None else p.heldout_nats for p in curve], dtype=float)
        ax.plot(x, train, color=f"C{n}", ls="--", lw=1.2, label=f"{label}: training (smoothed)")
        if np.isfinite(heldout).any():
            ax.plot(x, heldout, color=f"C{n}", marker="o", ms=3, lw=1.5, label=f"{label}: held-out")
    if _spans_decades(chars):
        ax.set_xscale("log")
    ax.set_xlabel("training characters read")
    ax.set_ylabel("loss (nats/char)")
    ax.secondary_yaxis("right", functions=(lambda nats: nats / _LN2, lambda bits: bits * _LN2)).set_ylabel(
        "loss (bits/char)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or "learning curve")
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_bands(grid, rows: dict, out: str | os.PathLike, *, xlabel: str, ylabel: str, title: str,
               ylim: tuple[float, float], reference: tuple[str, float] | None = None) -> None:
    """Methods compared over seeds: for each ``rows[label]`` (one row per seed, a value per point
    of ``grid``, NaN before the seed has one), the median as a line and the range as a band; a
    dashed ``reference`` (label, value) line across."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, values in rows.items():
        median, low, high = band(values)
        line, = ax.plot(grid, median, label=label)
        ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.15)
    if reference is not None:
        ax.axhline(reference[1], color="black", linestyle="--", linewidth=1, label=reference[0])
    ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def band(values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, lowest, highest) over the rows of ``values``, ignoring NaN (NaN where a column has
    no value)."""
    values = np.asarray(values, dtype=float)
    with warnings.catch_warnings():  # a column before every seed's first value is all NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=0), np.nanmin(values, axis=0), np.nanmax(values, axis=0)
