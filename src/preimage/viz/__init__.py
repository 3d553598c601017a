"""Plots (matplotlib for files)."""

from .inverse_plot import plot_image_grid
from .layer_plot import plot_layer_preimages

__all__ = ["plot_image_grid", "plot_layer_preimages"]
