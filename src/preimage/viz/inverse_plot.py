"""Samples of an inverse set as an image grid."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError

__all__ = ["plot_image_grid"]


def plot_image_grid(images, *, ax=None, columns: int | None = None, cmap="gray_r", title: str | None = None,
                    vmin: float | None = None, vmax: float | None = None, gap: float = 0.5):
    """Draw images (n, h, w) as one grid in one Axes (a new figure when ax is None); returns the Axes.

    columns : images per row (default about sqrt(n)). vmin, vmax : the grey scale (default: the images' range).
    gap : the blank between images, as a fraction of a pixel row (drawn as NaN, the colour map's background).
    """
    import matplotlib.pyplot as plt

    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3 or images.shape[0] == 0:
        raise ShapeError(f"images must have shape (n, h, w) with n >= 1, got {images.shape}")
    n, h, w = images.shape
    columns = int(columns) if columns else int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    pad = max(1, int(round(gap * 2)))
    canvas = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad), np.nan)
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        canvas[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = image
    if ax is None:
        _, ax = plt.subplots(figsize=(max(2.0, 0.35 * columns * w / 4), max(2.0, 0.35 * rows * h / 4)))
    colours = plt.get_cmap(cmap).with_extremes(bad="white")
    low = np.nanmin(images) if vmin is None else vmin
    high = np.nanmax(images) if vmax is None else vmax
    ax.imshow(canvas, cmap=colours, vmin=low, vmax=high if high > low else low + 1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return ax
