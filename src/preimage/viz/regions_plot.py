"""Pictures of a 2-D slice's linear regions: coloured by pattern, class or local Lipschitz constant."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_slice", "plot_line"]


def _pattern_colours(patterns, seed: int = 0) -> np.ndarray:
    """One random colour (n, 3) per distinct pattern, the same for equal patterns."""
    keys = np.packbits(patterns.bits(), axis=1)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    palette = np.random.default_rng(seed).uniform(0.25, 0.95, size=(int(inverse.max()) + 1, 3))
    return palette[inverse]


def plot_slice(partition, ax=None, color: str = "pattern", boundary: bool = True, edges: bool = True,
               cmap: str = "viridis", colorbar: bool = True):
    """Draw a :class:`~preimage.regions.Slice2D`.

    color : "pattern" (a colour per activation pattern), "class" (argmax of the output) or "lipschitz"
    (the 2-norm of the output's Jacobian along the slice, logarithmic scale). boundary : draw the
    decision boundary in black on top. edges : draw the region edges. Returns the Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.colors import LogNorm

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    polygons = partition.polygons()
    collection = PolyCollection(polygons, linewidths=0.2 if edges else 0.0,
                                edgecolors="0.3" if edges else "face")
    if color == "pattern":
        collection.set_facecolor(_pattern_colours(partition.patterns))
    elif color == "class":
        classes = partition.classes()
        collection.set_facecolor(plt.get_cmap("tab10")(classes % 10))
    elif color == "lipschitz":
        values = partition.lipschitz()
        positive = values[values > 0]
        low = float(positive.min()) if positive.size else 1.0
        collection.set_array(np.maximum(values, low))
        collection.set_cmap(cmap)
        collection.set_norm(LogNorm(vmin=low, vmax=max(low * (1 + 1e-3), float(values.max()))))
    else:
        raise ValueError(f"color must be 'pattern', 'class' or 'lipschitz', got {color!r}")
    ax.add_collection(collection)
    if color == "lipschitz" and colorbar:
        ax.figure.colorbar(collection, ax=ax, label="local Lipschitz constant along the slice")
    if boundary:
        segments = partition.decision_boundary()
        if len(segments):
            ax.add_collection(LineCollection(segments, colors="black", linewidths=1.5))
    (s0, s1), (t0, t1) = partition.bounds
    ax.set_xlim(s0, s1)
    ax.set_ylim(t0, t1)
    ax.set_aspect("equal")
    ax.set_xlabel("s")
    ax.set_ylabel("t")
    ax.set_title(f"{len(partition)} linear regions")
    return ax


def plot_line(partition, ax=None, output: int = 0):
    """Draw output ``output`` along a :class:`~preimage.regions.LinePartition`, breakpoints marked."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    ax.plot(partition.t, partition.outputs[:, output], "-", lw=1.2)
    ax.plot(partition.t, partition.outputs[:, output], ".", ms=3, color="0.3")
    ax.set_xlabel("t along x0 -> x1")
    ax.set_ylabel(f"output {output}")
    ax.set_title(f"{len(partition)} linear pieces")
    return ax
