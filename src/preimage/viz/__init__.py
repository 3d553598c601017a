"""Plots (matplotlib for files)."""

from .inverse_plot import plot_image_grid
from .layer_plot import plot_layer_preimages
from .preimage_plot import plot_argmax_regions, plot_level_preimages
from .regions_plot import plot_line, plot_slice
from .patterns_plot import (
    plot_activation_histograms, plot_angle_vs_noise, plot_bernoulli_test, plot_cluster_curves, plot_folded_normal,
    plot_geodesic, plot_hamming_distributions, plot_hyperplane_distances, plot_local_map_spectrum,
    plot_nearest_neighbours, plot_normalisation_study,
)

__all__ = ["plot_image_grid", "plot_layer_preimages", "plot_slice", "plot_line", "plot_activation_histograms", "plot_hamming_distributions",
           "plot_bernoulli_test", "plot_cluster_curves", "plot_nearest_neighbours", "plot_hyperplane_distances",
           "plot_folded_normal", "plot_normalisation_study", "plot_local_map_spectrum", "plot_angle_vs_noise",
           "plot_geodesic", "plot_level_preimages", "plot_argmax_regions"]
