"""Plots (matplotlib for files)."""

from .layer_plot import plot_layer_preimages

__all__ = ["plot_layer_preimages"]
