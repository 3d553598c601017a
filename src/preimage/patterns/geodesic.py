"""Approximate geodesics in activation-pattern space between two inputs (Swiniarski, Bruna & Cho, sec. 5).

A path x_0 = x, x_1, ..., x_T = x' is scored by the Hamming distances of consecutive patterns.

* ``conditional_geodesic`` (the paper's Algorithm 1, conditioned on a dataset): the path through
  dataset inputs that minimises the summed Hamming distance, found by Dijkstra on the symmetrised
  k-nearest-neighbour graph of the patterns of {x, x', data} (``hamming_knn``); each hop also costs
  ``1 / (2 (n + 1))``, less than one bit over any path, so among paths of least Hamming length the one
  of fewest hops wins and equal patterns are still joined. k doubles until x and x' are connected.
* ``midpoint_geodesic``: recursive midpoints. ``variant="linear"`` bisects the straight segment until
  consecutive patterns differ in at most ``max_step`` bits (or ``depth`` halvings); ``variant="data"``
  takes as midpoint of a and b the dataset input m minimising ``max(H(a, m), H(m, b))`` (ties: the
  smaller ``|a - m| + |m - b|``), and recurses while that beats ``H(a, b)``.

The exact path along linear regions is not computed here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from ..errors import ShapeError
from .hamming import as_words, hamming, hamming_knn

__all__ = ["GeodesicPath", "path_hamming", "conditional_geodesic", "midpoint_geodesic"]


@dataclass(frozen=True)
class GeodesicPath:
    """points (T + 1, d), first and last the given inputs; steps (T,) int64 Hamming distances of consecutive
    patterns; data_index (T + 1,) the dataset row of each point (-1 for the ends and new midpoints)."""

    points: np.ndarray
    steps: np.ndarray
    data_index: np.ndarray

    @property
    def length(self) -> int:
        """Summed Hamming distance along the path."""
        return int(self.steps.sum())

    @property
    def euclidean_steps(self) -> np.ndarray:
        return np.linalg.norm(np.diff(self.points, axis=0), axis=1)


def _words(net, X, layer) -> np.ndarray:
    patterns = net.patterns(X)
    if layer is None:
        return as_words(patterns)
    if layer not in patterns.layers:
        raise ShapeError(f"layer {layer} has no pattern; layers with patterns: {patterns.layers}")
    return as_words(patterns, patterns.layers.index(layer))


def path_hamming(net, points, layer: int | None = None) -> np.ndarray:
    """Hamming distances between the patterns of consecutive points (T + 1, d) -> (T,) int64.

    layer : an index into ``net.layers`` (one layer's pattern) or None (all kinked layers).
    """
    words = _words(net, points, layer)
    return hamming(words[:-1], words[1:])


def _ends(net, x0, x1) -> np.ndarray:
    x0, _ = net.as_batch(x0)
    x1, _ = net.as_batch(x1)
    if len(x0) != 1 or len(x1) != 1:
        raise ShapeError("a geodesic joins two single inputs")
    return np.vstack([x0, x1])


def conditional_geodesic(net, x0, x1, data, *, k: int = 10, layer: int | None = None) -> GeodesicPath:
    """The least-Hamming path from x0 to x1 through inputs of ``data`` (m, d) (see the module docstring)."""
    ends = _ends(net, x0, x1)
    data, _ = net.as_batch(data)
    X = np.vstack([ends, data])
    words = _words(net, X, layer)
    n = len(X)
    hop = 1.0 / (2.0 * (n + 1))
    k = max(1, min(int(k), n - 1))
    while True:
        idx, dist = hamming_knn(words, k)
        rows = np.repeat(np.arange(n), k)
        graph = coo_matrix((dist.ravel() + hop, (rows, idx.ravel())), shape=(n, n)).tocsr()
        graph = graph.maximum(graph.T)
        lengths, previous = dijkstra(graph, directed=False, indices=0, return_predecessors=True)
        if np.isfinite(lengths[1]) or k == n - 1:
            break
        k = min(2 * k, n - 1)
    order = [1]
    while order[-1] != 0:
        order.append(int(previous[order[-1]]))
    order = np.array(order[::-1])
    data_index = np.where(order >= 2, order - 2, -1)
    return GeodesicPath(X[order], hamming(words[order[:-1]], words[order[1:]]), data_index)


def midpoint_geodesic(net, x0, x1, *, variant: str = "linear", data=None, depth: int = 8, max_step: int = 1,
                      layer: int | None = None) -> GeodesicPath:
    """A path from x0 to x1 by recursive midpoints (see the module docstring); ``data`` (m, d) for "data"."""
    if variant not in ("linear", "data"):
        raise ShapeError(f"variant must be 'linear' or 'data', got {variant!r}")
    ends = _ends(net, x0, x1)
    if variant == "data":
        if data is None:
            raise ShapeError("the 'data' variant needs data= (the inputs midpoints are chosen from)")
        data, _ = net.as_batch(data)
        data_words = _words(net, data, layer)
    points = [ends[0], ends[1]]
    sources = [-1, -1]
    words = list(_words(net, ends, layer))
    for _ in range(depth):
        new_points, new_sources, new_words = [points[0]], [sources[0]], [words[0]]
        changed = False
        for a in range(len(points) - 1):
            pa, pb, wa, wb = points[a], points[a + 1], words[a], words[a + 1]
            gap = int(hamming(wa[None], wb[None])[0])
            if gap > max_step:
                if variant == "linear":
                    mid = 0.5 * (pa + pb)
                    new_points.append(mid)
                    new_sources.append(-1)
                    new_words.append(_words(net, mid[None], layer)[0])
                    changed = True
                else:
                    to_a = hamming(data_words, np.broadcast_to(wa, data_words.shape))
                    to_b = hamming(data_words, np.broadcast_to(wb, data_words.shape))
                    worst = np.maximum(to_a, to_b)
                    spread = np.linalg.norm(data - pa, axis=1) + np.linalg.norm(data - pb, axis=1)
                    best = int(np.lexsort((spread, worst))[0])
                    if worst[best] < gap:
                        new_points.append(data[best])
                        new_sources.append(best)
                        new_words.append(data_words[best])
                        changed = True
            new_points.append(pb)
            new_sources.append(sources[a + 1])
            new_words.append(wb)
        points, sources, words = new_points, new_sources, new_words
        if not changed:
            break
    words = np.array(words)
    return GeodesicPath(np.array(points), hamming(words[:-1], words[1:]), np.array(sources, dtype=np.int64))
