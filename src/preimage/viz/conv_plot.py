"""Pictures of cone nesting (Gamba et al.): state distributions per layer pair and over training."""

from __future__ import annotations

import numpy as np

from ..conv.nesting import STATES

__all__ = ["plot_nesting", "plot_nesting_over_training", "plot_experiment"]

_COLOURS = {"OUT_FULL_IN": "tab:blue", "OUT_PARTIAL_IN": "tab:cyan", "IN_FULL_OUT": "tab:red",
            "IN_PARTIAL_OUT": "tab:orange"}


def _axes(ax):
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(6, 3.5)).subplots()
    return ax


def plot_nesting(nesting, *, ax=None, title=None):
    """Stacked bars: for each layer pair of a NetworkNesting, the fraction of out channels in each state."""
    ax = _axes(ax)
    bottom = np.zeros(len(nesting.pairs))
    positions = np.arange(len(nesting.pairs))
    for state in STATES:
        fractions = []
        for pair in nesting.pairs:
            counts = pair.counts()
            defined = sum(counts[s] for s in STATES)
            fractions.append(counts[state] / defined if defined else 0.0)
        ax.bar(positions, fractions, bottom=bottom, color=_COLOURS[state], label=state)
        bottom += np.asarray(fractions)
    ax.set_xticks(positions, [f"b{p.block}:{p.inner}>{p.outer}" for p in nesting.pairs], rotation=45,
                  ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of channels")
    ax.set_title(title if title is not None else nesting.label)
    return ax


def plot_nesting_over_training(runs, *, ax=None, title=""):
    """Net-wise fraction of each state against checkpoint index, for a list of NetworkNesting."""
    ax = _axes(ax)
    steps = np.arange(len(runs))
    for state in STATES:
        ax.plot(steps, [run.fractions()[state] for run in runs], marker="o", color=_COLOURS[state], label=state)
    ax.set_xticks(steps, [run.label for run in runs], rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of channels")
    ax.set_title(title)
    return ax


def plot_experiment(result, path=None):
    """One row per model of an ExperimentResult: layer pairs at init, after training, and over training.

    Writes a PNG atomically to ``path`` when given; returns the figure.
    """
    import io

    from matplotlib.figure import Figure

    from .._io import write_atomic

    names = list(result.nesting)
    figure = Figure(figsize=(15, 4.2 * len(names)))
    axes = figure.subplots(len(names), 3, squeeze=False)
    for row, name in enumerate(names):
        runs = result.nesting[name]
        plot_nesting(runs[0], ax=axes[row, 0], title=f"{name}: init")
        plot_nesting(runs[-1], ax=axes[row, 1],
                     title=f"{name}: {runs[-1].label} (test acc. {result.accuracy[name][-1]:.2f})")
        plot_nesting_over_training(runs, ax=axes[row, 2], title=f"{name}: net-wise over training")
    axes[0, 2].legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    if path is not None:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        write_atomic(path, buffer.getvalue())
    return figure
