"""Pictures of exact preimages in the plane: a network's preimages level by level (Carlsson et al. 2017,
Figure 1 right) and the ArgMax regions of a classifier on a plane through three inputs."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_level_preimages", "plot_argmax_regions"]

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink")
_ZERO = "tab:red"


def _describe(preimage_set) -> str:
    """The preimage in words: its kind, dimension and number of pieces."""
    kind, dim = preimage_set.kind, preimage_set.dim
    if kind in ("empty", "point"):
        return kind
    if kind == "finite":
        return f"{len(preimage_set)} points"
    pieces = f"{len(preimage_set)} piece{'s' if len(preimage_set) > 1 else ''}"
    return f"{kind} {dim}-D, {pieces}"


def _draw(preimage_set, ax, bounds, colour, label, zero: bool):
    """The set's pieces (already clipped to the window) with one legend entry."""
    from matplotlib.patches import Patch

    style = dict(hatch="///", alpha=0.35, edgecolor=colour, linewidth=0.8) if zero else \
        dict(alpha=0.45, edgecolor=colour, linewidth=1.0)
    preimage_set.plot(ax, bounds=bounds, color=colour, **style)
    for piece in preimage_set.pieces:
        if piece.dim == 0:
            ax.plot(*piece.witness, "o", ms=15, mfc="none", mec=colour, mew=2.5)
    return Patch(facecolor=colour, alpha=0.45, hatch="///" if zero else None, edgecolor=colour, label=label)


def plot_level_preimages(levels, *, bounds, points=None, axes=None):
    """One panel per level of a 2-input network: the preimages of chosen activities at that level.

    Parameters
    ----------
    levels : a list (one entry per level, in order) of lists of ``(label, whole, shown, zero)``: ``whole`` the
        exact preimage in the whole plane (its kind goes in the legend), ``shown`` the same set clipped to
        the window (drawn), ``zero`` True for the set mapped to the zero activity (drawn hatched in red).
    bounds : ``(x0, x1, y0, y1)`` the window. points : optional (k, 2) inputs to mark, labelled x1, x2, ...
    axes : a sequence of len(levels) matplotlib Axes (a new figure when None).

    Returns the Axes.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, len(levels), figsize=(5.2 * len(levels), 5.0), squeeze=False)
        axes = axes[0]
    x0, x1, y0, y1 = bounds
    for level, (ax, entries) in enumerate(zip(axes, levels)):
        handles = []
        others = 0
        for label, whole, shown, zero in entries:
            colour = _ZERO if zero else _COLOURS[others % len(_COLOURS)]
            others += 0 if zero else 1
            handles.append(_draw(shown, ax, bounds, colour, f"{label}: {_describe(whole)}", zero))
        if points is not None:
            for k, point in enumerate(np.atleast_2d(points)):
                ax.plot(*point, "k*", ms=10, mec="white", mew=0.5)
                ax.annotate(f"$x_{k + 1}$", xy=point, xytext=(5, 5), textcoords="offset points")
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
        ax.set_title(f"preimages of activities at level {level + 1}")
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.06), fontsize=8)
    return axes


def plot_argmax_regions(sets, *, bounds, marks=None, mark_labels=None, ax=None, names=None):
    """The exact ArgMax regions of a classifier on a plane, coloured by class.

    Parameters
    ----------
    sets : one PreimageSet per class c (the inputs (s, t) of a 2-input network where output c is largest).
    bounds : ``(s0, s1, t0, t1)`` the window. marks : optional (k, 2) points of the plane to mark
    (the inputs the plane goes through), ``mark_labels`` their k labels. names : class names (default
    the class index). ax : a matplotlib Axes (a new figure when None).

    Returns the Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 6.5))
    palette = plt.get_cmap("tab10")
    handles = []
    for c, preimage_set in enumerate(sets):
        if not len(preimage_set):
            continue
        colour = palette(c % 10)
        preimage_set.plot(ax, bounds=bounds, color=colour, alpha=1.0, edgecolor=colour, linewidth=0.5)
        name = names[c] if names is not None else str(c)
        handles.append(Patch(facecolor=colour, label=f"class {name}: {len(preimage_set)} pieces"))
    if marks is not None:
        marks = np.atleast_2d(marks)
        labels = mark_labels or [f"x{k + 1}" for k in range(len(marks))]
        for point, label in zip(marks, labels):
            ax.plot(*point, "k*", ms=13, markeredgecolor="white")
            ax.annotate(label, xy=point, xytext=(0, -18), textcoords="offset points", fontsize=9, ha="center",
                        bbox=dict(boxstyle="round", fc="white", alpha=0.8))
    s0, s1, t0, t1 = bounds
    ax.set_xlim(s0, s1)
    ax.set_ylim(t0, t1)
    ax.set_aspect("equal")
    ax.set_xlabel("s")
    ax.set_ylabel("t")
    ax.legend(handles=handles, loc="upper right", fontsize=7)
    return ax
