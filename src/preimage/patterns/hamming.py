"""Hamming distances between activation patterns at dataset scale.

Patterns are compared as bit-packed uint64 words: the distance of two patterns is
``sum_w popcount(a_w XOR b_w)``. Padding bits of a layer are 0 in every pattern, so words of several
layers side by side give the distance over all those layers.

The exact k-nearest-neighbour search (``hamming_knn``) visits every unordered pair once: the n x n
problem is cut into square tiles of the upper triangle, each tile computed with the processor's
popcount (numba, compiled for the host) and fed into two running top-k lists, one for its rows and
one for its columns. The tiles are dealt to as many workers as there are threads; every worker keeps its
own top-k lists for all rows, merged at the end, so no two threads ever write the same memory.
Neighbours are ordered by (distance, index): the result is unique and the same on any number of threads.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

from .._rng import as_generator
from ..errors import ShapeError
from .packed import Patterns, pack_bits

__all__ = ["as_words", "hamming", "hamming_pairs", "pairwise_hamming", "random_pair_distances", "hamming_knn",
           "activity_distances"]

_TILE = 256


@intrinsic
def _ctpop(typingctx, value):
    """The LLVM population count of one uint64 (the processor's popcnt instruction)."""
    signature = types.uint64(types.uint64)

    def codegen(context, builder, sig, args):
        return builder.ctpop(args[0])

    return signature, codegen


def as_words(patterns, layer: int | None = None) -> np.ndarray:
    """The packed words of ``patterns``, (n, w) uint64, C-contiguous and writable (one compiled kernel type).

    patterns : a ``Patterns`` (``layer``: the index of one stored layer; None: all layers side by side),
        an (n, bits) bool array, or an (n, w) uint64 array of packed words (used as is).
    """
    if isinstance(patterns, Patterns):
        if layer is None:
            return np.require(patterns.packed(), "<u8", ["C", "W"])
        if not -len(patterns.units) <= layer < len(patterns.units):
            raise ShapeError(f"layer {layer} out of range: the patterns hold {len(patterns.units)} layers")
        return np.require(patterns.words[layer], "<u8", ["C", "W"])
    if layer is not None:
        raise ShapeError("layer= chooses a layer of a Patterns object; an array has one block of bits")
    array = np.asarray(patterns)
    if array.ndim != 2:
        raise ShapeError(f"patterns must be an (n, bits) bool array or a Patterns object, got shape {array.shape}")
    if array.dtype == np.uint64:
        return np.require(array, "<u8", ["C", "W"])
    if array.dtype != bool:
        if not np.isin(array, (0, 1)).all():
            raise ShapeError("a pattern array must hold 0/1 or bools")
        array = array.astype(bool)
    return pack_bits(array)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise distances of two (m, w) uint64 word arrays -> (m,) int64."""
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=1, dtype=np.int64)


def hamming_pairs(patterns, pairs, layer: int | None = None) -> np.ndarray:
    """Distances of chosen pairs: pairs (m, 2) int -> (m,) int64."""
    words = as_words(patterns, layer)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= len(words)):
        raise ShapeError(f"pair indices must lie in [0, {len(words)})")
    return hamming(words[pairs[:, 0]], words[pairs[:, 1]])


def random_pair_distances(patterns: Patterns, n_pairs: int = 10000, rng=None) -> list[np.ndarray]:
    """Distances of ``n_pairs`` random pairs of distinct inputs, per stored layer (the same pairs in each).

    Returns one (n_pairs,) int64 array per layer (the paper's Figure 2 histograms).
    """
    n = len(patterns)
    if n < 2:
        raise ShapeError("random pairs need at least 2 patterns")
    generator = as_generator(rng)
    first = generator.integers(0, n, n_pairs)
    second = (first + generator.integers(1, n, n_pairs)) % n
    pairs = np.stack([first, second], axis=1)
    return [hamming_pairs(patterns, pairs, layer=i) for i in range(len(patterns.units))]


def pairwise_hamming(patterns, subset=None, layer: int | None = None) -> np.ndarray:
    """All distances among ``subset`` (indices; None: all): (m, m) int64, 0 on the diagonal."""
    words = as_words(patterns, layer)
    if subset is not None:
        words = np.require(words[np.asarray(subset)], "<u8", ["C", "W"])
    out = np.empty((len(words), len(words)), dtype=np.int64)
    _pairwise_kernel(words, out)
    return out


@numba.njit(parallel=True, cache=True)
def _pairwise_kernel(words, out):
    n, w = words.shape
    for i in numba.prange(n):
        for j in range(n):
            total = 0
            for k in range(w):
                total += _ctpop(words[i, k] ^ words[j, k])
            out[i, j] = total


@numba.njit(inline="always")
def _offer(dist, idx, row, d, j):
    """Put candidate (d, j) into row ``row`` of the sorted top-k lists if it beats their last entry."""
    k = dist.shape[1]
    if d > dist[row, k - 1] or (d == dist[row, k - 1] and j >= idx[row, k - 1]):
        return
    pos = k - 1
    while pos > 0 and (dist[row, pos - 1] > d or (dist[row, pos - 1] == d and idx[row, pos - 1] > j)):
        dist[row, pos] = dist[row, pos - 1]
        idx[row, pos] = idx[row, pos - 1]
        pos -= 1
    dist[row, pos] = d
    idx[row, pos] = j


@numba.njit(parallel=True, cache=True)
def _knn_kernel(words, tiles, starts, dist, idx):
    """Worker t runs the tile pairs tiles[starts[t]:starts[t+1]] (I <= J) into its lists dist[t], idx[t].

    A tile's distances go to a block that stays in cache; its rows then offer their candidates to the
    rows' lists, and its columns to the columns' lists, each against the list's current last entry.
    """
    n, w = words.shape
    k_last = dist.shape[2] - 1
    workers = starts.shape[0] - 1
    for t in numba.prange(workers):
        td = dist[t]
        ti = idx[t]
        block = np.empty((_TILE, _TILE), dtype=np.int64)
        for s in range(starts[t], starts[t + 1]):
            r0 = tiles[s, 0] * _TILE
            c0 = tiles[s, 1] * _TILE
            r1 = min(r0 + _TILE, n)
            c1 = min(c0 + _TILE, n)
            diagonal = r0 == c0
            for i in range(r0, r1):
                for j in range(c0, c1):
                    total = 0
                    for k in range(w):
                        total += _ctpop(words[i, k] ^ words[j, k])
                    block[i - r0, j - c0] = total
            for i in range(r0, r1):
                worst = td[i, k_last]
                for j in range(i + 1 if diagonal else c0, c1):
                    d = block[i - r0, j - c0]
                    if d < worst or (d == worst and j < ti[i, k_last]):
                        _offer(td, ti, i, d, j)
                        worst = td[i, k_last]
            for j in range(c0, c1):
                worst = td[j, k_last]
                for i in range(r0, min(j, r1) if diagonal else r1):
                    d = block[i - r0, j - c0]
                    if d < worst or (d == worst and i < ti[j, k_last]):
                        _offer(td, ti, j, d, i)
                        worst = td[j, k_last]


@numba.njit(parallel=True, cache=True)
def _merge_kernel(dist, idx, out_dist, out_idx):
    workers, n, k = dist.shape
    for i in numba.prange(n):
        for t in range(workers):
            for m in range(k):
                if idx[t, i, m] >= 0:
                    _offer(out_dist, out_idx, i, dist[t, i, m], idx[t, i, m])


def _deal_tiles(n_tiles: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """The upper-triangle tile pairs, split into ``workers`` runs of nearly equal work."""
    rows, cols = np.triu_indices(n_tiles)
    tiles = np.stack([rows, cols], axis=1).astype(np.int64)
    work = np.where(rows == cols, 0.5, 1.0)
    bounds = np.searchsorted(np.cumsum(work), np.linspace(0, work.sum(), workers + 1)[1:-1])
    starts = np.concatenate([[0], bounds, [len(tiles)]]).astype(np.int64)
    return tiles, starts


def hamming_knn(patterns, k: int, layer: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every pattern among the others, in Hamming distance.

    Parameters
    ----------
    patterns : a ``Patterns`` object (all stored layers side by side, or ``layer``), an (n, bits) bool
        array, or (n, w) uint64 packed words.
    k : neighbours per pattern, 1 <= k < n.

    Returns
    -------
    idx : (n, k) int64, the neighbours of each pattern (itself excluded), nearest first; ties in
        distance are broken by the smaller index.
    dist : (n, k) int64, their distances.
    """
    words = as_words(patterns, layer)
    n = len(words)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        raise ShapeError(f"k must be an integer in [1, {n - 1}] for {n} patterns, got {k!r}")
    k = int(k)
    n_tiles = -(-n // _TILE)
    workers = max(1, min(numba.get_num_threads(), n_tiles * (n_tiles + 1) // 2))
    tiles, starts = _deal_tiles(n_tiles, workers)
    big = np.iinfo(np.int64).max
    dist = np.full((workers, n, k), big, dtype=np.int64)
    idx = np.full((workers, n, k), -1, dtype=np.int64)
    _knn_kernel(words, tiles, starts, dist, idx)
    if workers == 1:
        return idx[0], dist[0]
    out_dist = np.full((n, k), big, dtype=np.int64)
    out_idx = np.full((n, k), -1, dtype=np.int64)
    _merge_kernel(dist, idx, out_dist, out_idx)
    return out_idx, out_dist


def activity_distances(activities: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """L2 distances of each input's activity to those of its neighbours.

    activities : (n, units) float; idx : (n, k) int (from ``hamming_knn``) -> (n, k) float64.
    """
    activities = np.asarray(activities, dtype=np.float64)
    idx = np.asarray(idx)
    if activities.ndim != 2 or idx.ndim != 2 or len(idx) != len(activities):
        raise ShapeError(f"activities {activities.shape} and neighbour indices {idx.shape} do not match")
    out = np.empty(idx.shape, dtype=np.float64)
    for column in range(idx.shape[1]):
        out[:, column] = np.linalg.norm(activities - activities[idx[:, column]], axis=1)
    return out
