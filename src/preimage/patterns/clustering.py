"""Constellations: hierarchical clustering of patterns under the Hamming distance (Figures 6-8).

For a linkage whose merge heights never decrease (single, complete, average, weighted), cutting the
dendrogram at threshold t leaves ``n - #{merges of height <= t}`` clusters, exactly what
``scipy.cluster.hierarchy.fcluster(Z, t, "distance")`` returns; the curve of counts over thresholds
0 .. bits is computed from the heights in one pass. Its *score* is the area under the fraction of
clusters ``count / n`` against the threshold as a fraction of the bits, in [0, 1]: large when the
patterns stay apart, small when they form tight constellations. Matched random patterns (independent
Bernoulli units with the data's rates, as many as the data) give the reference curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform

from .._rng import as_generator
from ..errors import ShapeError
from .bernoulli import bernoulli_patterns
from .hamming import as_words, pairwise_hamming
from .packed import Patterns, unpack_bits

__all__ = ["ClusterCurve", "cluster_curve", "constellations"]

_MONOTONE = ("single", "complete", "average", "weighted")


@dataclass(frozen=True)
class ClusterCurve:
    """counts[i] clusters at Hamming threshold thresholds[i] (non-increasing); heights (n-1,) of the merges."""

    thresholds: np.ndarray
    counts: np.ndarray
    heights: np.ndarray
    n: int
    bits: int
    score: float
    linkage: np.ndarray


def cluster_curve(bits: np.ndarray, *, method: str = "average", thresholds=None) -> ClusterCurve:
    """The cluster-count curve of (n, bits) bool patterns (n >= 2).

    thresholds : Hamming distances to cut at (default 0, 1, ..., bits).
    """
    if method not in _MONOTONE:
        raise ShapeError(f"method must be one of {_MONOTONE} (monotone merge heights), got {method!r}")
    bits = np.asarray(bits, dtype=bool)
    if bits.ndim != 2 or len(bits) < 2:
        raise ShapeError(f"clustering needs an (n >= 2, bits) array, got shape {bits.shape}")
    n, width = bits.shape
    distances = squareform(pairwise_hamming(bits).astype(np.float64), checks=False)
    Z = linkage(distances, method=method)
    heights = Z[:, 2]
    grid = np.arange(width + 1, dtype=np.float64) if thresholds is None else np.asarray(thresholds, np.float64)
    counts = n - np.searchsorted(np.sort(heights), grid, side="right")
    x = grid / max(width, 1)
    score = float(np.sum((counts[1:] + counts[:-1]) / 2.0 * np.diff(x)) / n) if len(grid) > 1 else 0.0
    return ClusterCurve(grid, counts.astype(np.int64), heights, n, width, score, Z)


def constellations(patterns: Patterns, *, layer: int | None = None, n_subset: int = 1000, method: str = "average",
                   rng=None) -> dict:
    """Data and matched random cluster curves of a random subset of ``n_subset`` inputs.

    layer : a stored layer's index, or None for all layers side by side.
    Returns {"data": ClusterCurve, "random": ClusterCurve, "subset": (m,) indices, "score_ratio": data / random}.
    """
    generator = as_generator(rng)
    n = len(patterns)
    m = min(n_subset, n)
    subset = np.sort(generator.choice(n, m, replace=False))
    if layer is None:
        bits = patterns[subset].bits()
    else:
        bits = unpack_bits(as_words(patterns, layer)[subset], patterns.units[layer])
    data = cluster_curve(bits, method=method)
    random = cluster_curve(bernoulli_patterns(bits.mean(axis=0), m, generator), method=method)
    ratio = data.score / random.score if random.score > 0 else float("nan")
    return {"data": data, "random": random, "subset": subset, "score_ratio": ratio}
