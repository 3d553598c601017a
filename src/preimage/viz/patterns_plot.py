"""Plots of activation-pattern statistics (Swiniarski, Bruna & Cho, Figures 1-9, 25, 26 and secs. 3, 5, 6).

Each function draws numbers computed by ``preimage.patterns`` onto a matplotlib Axes (a new figure when
``ax`` is None) and returns the Axes (or the Figure, for grids).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["plot_activation_histograms", "plot_hamming_distributions", "plot_bernoulli_test",
           "plot_cluster_curves", "plot_nearest_neighbours", "plot_hyperplane_distances", "plot_folded_normal",
           "plot_normalisation_study", "plot_local_map_spectrum", "plot_angle_vs_noise", "plot_geodesic"]


def _axes(ax, figsize=(6, 4)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)[1]


def plot_activation_histograms(stats, *, ax=None, title: str = "activation probability per unit"):
    """Figure 1: the histogram of per-unit activation probabilities, one step line per layer.

    stats : a list of ``LayerStatistics`` (``unit_statistics``).
    """
    ax = _axes(ax)
    for s in stats:
        fraction = s.histogram / max(len(s.probabilities), 1)
        ax.stairs(fraction, s.edges, label=f"layer {s.layer} ({s.saturated:.0%} saturated)")
    ax.set_xlabel("activation probability")
    ax.set_ylabel("fraction of units")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return ax


def plot_hamming_distributions(distances: Sequence[np.ndarray], units: Sequence[int], *, ax=None, bins: int = 40):
    """Figure 2: distances of random pairs per layer (``random_pair_distances``), as a fraction of the units."""
    ax = _axes(ax)
    for i, (d, u) in enumerate(zip(distances, units)):
        ax.hist(np.asarray(d) / max(u, 1), bins=bins, range=(0, 1), histtype="step", density=True, label=f"layer {i}")
    ax.set_xlabel("Hamming distance / units")
    ax.set_ylabel("density")
    ax.legend(fontsize="small")
    return ax


def plot_bernoulli_test(test, *, ax=None, bins: int = 40):
    """Figures 3-5: the simulated null law of the statistic and the observed value (a ``BernoulliTest``)."""
    ax = _axes(ax)
    ax.hist(test.null, bins=bins, density=True, color="tab:gray", alpha=0.6, label=f"Bernoulli ({test.rates})")
    ax.axvline(test.observed, color="tab:red", label=f"data (p = {test.p_value:.3g})")
    ax.set_xlabel(f"{test.statistic} Hamming distance, layer {test.layer}")
    ax.legend(fontsize="small")
    return ax


def plot_cluster_curves(result: dict, *, ax=None):
    """Figures 6-8: clusters against the threshold for the data and matched random (``constellations``)."""
    ax = _axes(ax)
    for name, colour in (("data", "tab:blue"), ("random", "tab:gray")):
        curve = result[name]
        ax.plot(curve.thresholds / max(curve.bits, 1), curve.counts / curve.n, color=colour,
                label=f"{name} (score {curve.score:.3f})")
    ax.set_xlabel("threshold / bits")
    ax.set_ylabel("clusters / inputs")
    ax.legend(fontsize="small")
    return ax


def plot_nearest_neighbours(images: np.ndarray, idx: np.ndarray, *, rows: Sequence[int] | None = None,
                            image_shape=(8, 8), neighbours: int = 8):
    """Figure 9: each chosen input (left column) beside its nearest neighbours in Hamming distance.

    images : (n, prod(image_shape)); idx : (n, k) from ``hamming_knn``; rows : the inputs shown (default 6).
    Returns the Figure.
    """
    import matplotlib.pyplot as plt

    rows = list(range(min(6, len(images)))) if rows is None else list(rows)
    neighbours = min(neighbours, idx.shape[1])
    fig, axes = plt.subplots(len(rows), neighbours + 1, figsize=(1.1 * (neighbours + 1), 1.1 * len(rows)),
                             squeeze=False)
    for r, i in enumerate(rows):
        for c, j in enumerate([i, *idx[i, :neighbours]]):
            axes[r, c].imshow(np.asarray(images[j]).reshape(image_shape), cmap="gray_r")
            axes[r, c].set_axis_off()
    return fig


def plot_hyperplane_distances(distances: np.ndarray, *, ax=None, bins: int = 40):
    """Figure 25: the distances of a layer's hyperplanes to the origin (``hyperplane_distances``)."""
    ax = _axes(ax)
    finite = np.asarray(distances)[np.isfinite(distances)]
    ax.hist(finite, bins=bins, color="tab:blue")
    ax.set_xlabel("distance of the hyperplane to the origin")
    ax.set_ylabel("units")
    return ax


def plot_folded_normal(values: np.ndarray, fit, *, ax=None, bins: int = 60):
    """Figure 26: the positive activations and the fitted folded normal (``folded_normal_fit``)."""
    ax = _axes(ax)
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[x > 0]
    ax.hist(x, bins=bins, density=True, color="tab:gray", alpha=0.6, label="positive activations")
    grid = np.linspace(0, x.max(), 200)
    ax.plot(grid, fit.pdf(grid), color="tab:red", label=f"folded normal (mu {fit.mu:.2f}, sigma {fit.sigma:.2f})")
    ax.legend(fontsize="small")
    return ax


def plot_normalisation_study(study):
    """Sec. 3: per variant, the activation-probability histograms at epoch 0 and after training.

    Returns the Figure (one row per variant, two columns).
    """
    import matplotlib.pyplot as plt

    names = list(study.runs)
    fig, axes = plt.subplots(len(names), 2, figsize=(9, 2.4 * len(names)), squeeze=False, sharex=True)
    for r, name in enumerate(names):
        run = study.runs[name]
        plot_activation_histograms(run.initial, ax=axes[r, 0], title=f"{name}: epoch 0 ({run.accuracy_initial:.0%})")
        plot_activation_histograms(run.trained, ax=axes[r, 1],
                                   title=f"{name}: {study.epochs} epochs ({run.accuracy:.1%})")
    fig.tight_layout()
    return fig


def plot_local_map_spectrum(spectrum: dict, *, ax=None):
    """Sec. 6: the singular values of a stack of local maps (``local_map_spectrum``), log scale."""
    ax = _axes(ax)
    s = spectrum["singular_values"]
    ax.semilogy(np.arange(1, len(s) + 1), np.maximum(s, np.finfo(float).tiny), marker=".")
    ax.axvline(spectrum["rank"], color="tab:red", linestyle=":", label=f"rank {spectrum['rank']}")
    ax.set_xlabel("index")
    ax.set_ylabel("singular value")
    ax.legend(fontsize="small")
    return ax


def plot_angle_vs_noise(result: dict, *, ax=None):
    """Sec. 6: the angle between W_{a,x} and W_{a,x+eps} against the noise level (``angle_vs_noise``)."""
    ax = _axes(ax)
    degrees = np.degrees(result["mean_angle"])
    ax.errorbar(result["noise"], degrees, yerr=np.degrees(result["std_angle"]), marker="o", capsize=3)
    ax.set_xlabel("noise level sigma")
    ax.set_ylabel("angle (degrees)")
    return ax


def plot_geodesic(paths: dict, *, ax=None):
    """Sec. 5: Hamming distance of each step along one or more paths ({label: GeodesicPath}, or an
    ``ExactGeodesic``: its path beside the segment, midpoint and conditional ones it was compared with)."""
    if hasattr(paths, "paths"):
        paths = paths.paths
    ax = _axes(ax)
    for label, path in paths.items():
        ax.plot(np.arange(1, len(path.steps) + 1), path.steps, marker="o", label=f"{label} (total {path.length})")
    ax.set_xlabel("step")
    ax.set_ylabel("Hamming distance")
    ax.legend(fontsize="small")
    return ax
