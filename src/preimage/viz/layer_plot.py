"""Pictures of one layer in the plane (Carlsson et al. 2017, Figure 1 left)."""

from __future__ import annotations

import numpy as np

from ..geometry import Box, Polytope
from ..network.layers import Layer
from ..preimages.layer import layer_preimage

__all__ = ["plot_layer_preimages"]

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _clip_to_view(polytope: Polytope, view: Box) -> Polytope:
    return polytope.intersect(view.to_polytope())


def plot_layer_preimages(layer: Layer, activities, *, ax=None, bounds=((-3.0, 3.0), (-3.0, 3.0)), labels=None):
    """Draw a 2-input ReLU layer: its hyperplanes, the basis e_i, and the preimages of ``activities``.

    Parameters
    ----------
    layer : a ReLU layer with 2 inputs (any number of units; the basis is drawn when W is 2x2 invertible).
    activities : (k, m) activities y whose preimages are drawn (a point, a ray or a cone, clipped to view).
    ax : a matplotlib Axes (a new figure when None).
    bounds : ((x0, x1), (y0, y1)) the window.
    labels : optional k strings for the legend.

    Returns the Axes.
    """
    import matplotlib.pyplot as plt

    if layer.in_features != 2:
        raise ValueError(f"plot_layer_preimages draws 2-input layers; this one has {layer.in_features} inputs")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    (x0, x1), (y0, y1) = bounds
    view = Box(np.array([x0, y0], dtype=float), np.array([x1, y1], dtype=float))
    W, b = layer.affine.dense(), layer.b
    grid = np.linspace(x0, x1, 2)
    for i, (w, c) in enumerate(zip(W, b)):
        if abs(w[1]) > abs(w[0]):
            ax.plot(grid, -(w[0] * grid + c) / w[1], color="0.4", lw=1)
        else:
            ys = np.linspace(y0, y1, 2)
            ax.plot(-(w[1] * ys + c) / w[0], ys, color="0.4", lw=1)
        ax.annotate(f"$H_{i + 1}$", xy=_label_point(w, c, bounds), color="0.3")
    activities = np.atleast_2d(np.asarray(activities, dtype=np.float64))
    labels = labels or [f"y = ({', '.join(f'{v:g}' for v in y)})" for y in activities]
    for k, (y, label) in enumerate(zip(activities, labels)):
        colour = _COLOURS[k % len(_COLOURS)]
        pre = layer_preimage(layer, y)
        if pre.kind == "empty":
            continue
        shown = _clip_to_view(pre.polytope, view)
        if shown.is_empty():
            continue
        vertices = shown.vertices()
        if shown.dim == 0 or len(vertices) == 1:
            ax.plot(*vertices[0], "o", color=colour, ms=8, label=f"{label}: point")
        elif shown.dim == 1:
            shape = "a ray" if pre.kind == "unbounded" else "a segment"
            ax.plot(vertices[:, 0], vertices[:, 1], color=colour, lw=3, label=f"{label}: {shape}")
        else:
            centre = vertices.mean(axis=0)
            order = np.argsort(np.arctan2(vertices[:, 1] - centre[1], vertices[:, 0] - centre[0]))
            ax.fill(vertices[order, 0], vertices[order, 1], color=colour, alpha=0.3,
                    label=f"{label}: {'a cone' if pre.kind == 'unbounded' else 'a polygon'}")
    cone = layer_preimage(layer, np.zeros(layer.out_features)).cone_form
    if cone is not None:
        for i in range(2):
            e = cone.basis[:, i]
            ax.annotate("", xy=cone.apex + e, xytext=cone.apex,
                        arrowprops=dict(arrowstyle="->", color="black", lw=1.5))
            ax.annotate(f"$e_{i + 1}$", xy=cone.apex + 1.08 * e)
        ax.plot(*cone.apex, "k.", ms=6)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.legend(loc="lower left", fontsize=8)
    return ax


def _label_point(w: np.ndarray, c: float, bounds) -> tuple[float, float]:
    """A point of the line w.x + c = 0 near the window's edge, for its label."""
    (x0, x1), (y0, y1) = bounds
    foot = -c * w / float(w @ w)
    direction = np.array([-w[1], w[0]]) / np.linalg.norm(w)
    reach = 0.8 * min(x1 - x0, y1 - y0) / 2
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    along = float((centre - foot) @ direction) + reach
    point = foot + along * direction
    return float(np.clip(point[0], x0, x1)), float(np.clip(point[1], y0, y1))
