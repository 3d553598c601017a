"""Plots (matplotlib for files)."""

from .layer_plot import plot_layer_preimages
from .regions_plot import plot_line, plot_slice

__all__ = ["plot_layer_preimages", "plot_slice", "plot_line"]
