"""The hyperplane arrangement of one layer near data: distances of its hyperplanes to data points, and the
number of regions it cuts a 2-D slice through the data into.

On the slice ``x(s, t) = origin + s u + t v`` every pre-activation of a layer is affine in (s, t),
``z_j = a_j s + b_j t + c_j``, so the layer's hyperplanes meet the slice in lines and its regions on the slice
are the cells of a line arrangement. Each cell of a hyperplane arrangement has its own sign vector (a cell
is an intersection of open halfspaces, hence convex and connected), so the count of cells equals the number
of distinct sign patterns of the layer's pre-activations on the slice. It is counted exactly by adding the
lines one at a time: inside a convex window a line with k distinct crossings with the earlier lines adds
k + 1 cells, which sums to ``1 + L + sum_p (m_p - 1)`` for L distinct lines meeting the open window and
m_p distinct lines through each crossing point p inside it. Lines within ``feasibility_tol`` of each other
(normalised coefficients) count as one, and so do crossings that close. ``grid_pattern_count`` counts the
distinct patterns met on a grid instead: a lower bound that misses cells the grid does not hit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError
from ..settings import current

__all__ = ["SliceLines", "slice_lines", "slice_region_count", "grid_pattern_count", "hyperplane_distances"]

# largest number of line pairs intersected at once
_PAIR_CHUNK = 1 << 22


def _affine_of(layer):
    """(matrix, bias) of a ConvLayer or a preimage Layer (anything with ``matrix``/``bias_vector`` or W/b)."""
    if hasattr(layer, "bias_vector"):
        return layer.matrix, layer.bias_vector
    if hasattr(layer, "affine"):
        return layer.W, layer.b
    raise ShapeError(f"expected a ConvLayer or a Layer, got {type(layer).__name__}")


def _flat(values, dimension: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    array = array.reshape(array.shape[0], -1) if array.ndim > 2 else array
    if array.ndim == 1:
        array = array[None, :]
    if array.shape[1] != dimension:
        raise ShapeError(f"{name} must have {dimension} values per point, got {array.shape[1]}")
    if not np.all(np.isfinite(array)):
        raise ShapeError(f"{name} contains NaN or inf")
    return array


def hyperplane_distances(layer, X, per_channel: bool = False) -> np.ndarray:
    """Euclidean distance of each point to each unit's hyperplane: X (n, d) or (n, *input_shape) -> (n, m).

    ``|m_j . x + b_j| / |m_j|``; a unit whose row is zero has no hyperplane (distance inf).
    per_channel : for a ConvLayer, return (n, C_out) instead: each point's distance to the nearest
    hyperplane of each filter (over all positions the filter is applied at).
    """
    matrix, bias = _affine_of(layer)
    points = _flat(X, matrix.shape[1], "X")
    values = np.asarray((matrix @ points.T).T) + bias[None, :]
    if hasattr(matrix, "multiply"):
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    else:
        norms = np.linalg.norm(matrix, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        distances = np.where(norms[None, :] > 0, np.abs(values) / np.where(norms > 0, norms, 1.0)[None, :],
                             np.inf)
    if not per_channel:
        return distances
    if not hasattr(layer, "output_shape") or len(layer.output_shape) != 3:
        raise ShapeError("per_channel needs a layer with (C, H, W) outputs, such as a ConvLayer")
    return distances.reshape(len(points), layer.output_shape[0], -1).min(axis=2)


@dataclass(frozen=True)
class SliceLines:
    """The lines ``a s + b t + c = 0`` of a layer on a slice, one per unit; (m, 3) ``coefficients``."""

    coefficients: np.ndarray
    bounds: tuple[tuple[float, float], tuple[float, float]]

    def values(self, S, T) -> np.ndarray:
        """Pre-activations at points (s, t): S, T (k,) -> (k, m)."""
        a, b, c = self.coefficients.T
        return np.outer(S, a) + np.outer(T, b) + c[None, :]


def _bounds(bounds):
    try:
        (s0, s1), (t0, t1) = bounds
    except (TypeError, ValueError):
        raise ShapeError(f"bounds must be ((s0, s1), (t0, t1)), got {bounds!r}") from None
    s0, s1, t0, t1 = (float(v) for v in (s0, s1, t0, t1))
    if not (s0 < s1 and t0 < t1) or not np.all(np.isfinite([s0, s1, t0, t1])):
        raise ShapeError(f"bounds must be finite with s0 < s1 and t0 < t1, got {bounds!r}")
    return (s0, s1), (t0, t1)


def slice_lines(layer, origin, u, v, bounds=((-1.0, 1.0), (-1.0, 1.0))) -> SliceLines:
    """The lines a layer's units cut the slice ``origin + s u + t v`` with (origin, u, v: one input each)."""
    matrix, bias = _affine_of(layer)
    basis = _flat(np.stack([np.ravel(origin), np.ravel(u), np.ravel(v)]), matrix.shape[1], "origin, u, v")
    images = np.asarray((matrix @ basis.T).T)
    coefficients = np.stack([images[1], images[2], images[0] + bias], axis=1)
    return SliceLines(coefficients, _bounds(bounds))


def _distinct_lines(lines: SliceLines) -> np.ndarray:
    """(L, 3) the distinct lines meeting the open window, each scaled to |(a, b)| = 1, a canonical sign."""
    tol = current().feasibility_tol
    coefficients = lines.coefficients
    norms = np.linalg.norm(coefficients[:, :2], axis=1)
    scale = np.maximum(np.abs(coefficients).max(axis=1), np.finfo(float).tiny)
    proper = norms > tol * scale
    unit = coefficients[proper] / norms[proper, None]
    (s0, s1), (t0, t1) = lines.bounds
    corners = np.array([[s0, t0], [s0, t1], [s1, t0], [s1, t1]])
    at_corners = unit[:, :2] @ corners.T + unit[:, 2:3]
    reach = tol * max(1.0, np.abs(corners).max())
    crossing = (at_corners.min(axis=1) < -reach) & (at_corners.max(axis=1) > reach)
    unit = unit[crossing]
    first = np.where(np.abs(unit[:, 0]) > tol, unit[:, 0], unit[:, 1])
    unit = unit * np.sign(first)[:, None]
    keys = np.round(unit / tol).astype(np.int64)
    _, keep = np.unique(keys, axis=0, return_index=True)
    return unit[np.sort(keep)]


def slice_region_count(layer, origin, u, v, bounds=((-1.0, 1.0), (-1.0, 1.0))) -> int:
    """The number of regions (distinct sign patterns of the layer's pre-activations) on the window of the
    slice ``origin + s u + t v``, s and t in ``bounds``; exact up to ``feasibility_tol`` (module docstring)."""
    lines = _distinct_lines(slice_lines(layer, origin, u, v, bounds))
    count = len(lines)
    if count < 2:
        return 1 + count
    tol = current().feasibility_tol
    (s0, s1), (t0, t1) = _bounds(bounds)
    margin = tol * max(1.0, abs(s0), abs(s1), abs(t0), abs(t1))
    first, second = np.triu_indices(count, k=1)
    points = []
    for start in range(0, first.size, _PAIR_CHUNK):
        i, j = first[start:start + _PAIR_CHUNK], second[start:start + _PAIR_CHUNK]
        a1, b1, c1 = lines[i].T
        a2, b2, c2 = lines[j].T
        determinant = a1 * b2 - a2 * b1
        proper = np.abs(determinant) > tol
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (b1 * c2 - b2 * c1) / determinant
            t = (a2 * c1 - a1 * c2) / determinant
        inside = proper & (s > s0 + margin) & (s < s1 - margin) & (t > t0 + margin) & (t < t1 - margin)
        points.append(np.stack([s[inside], t[inside]], axis=1))
    crossings = np.concatenate(points)
    if not len(crossings):
        return 1 + count
    _, pairs_at_point = np.unique(np.round(crossings / tol).astype(np.int64), axis=0, return_counts=True)
    # k pairs meet at a point crossed by m lines with k = m (m - 1) / 2
    lines_at_point = np.rint((1.0 + np.sqrt(1.0 + 8.0 * pairs_at_point)) / 2.0)
    return int(1 + count + np.sum(lines_at_point - 1.0))


def grid_pattern_count(layer, origin, u, v, bounds=((-1.0, 1.0), (-1.0, 1.0)), resolution: int = 200) -> int:
    """Distinct sign patterns (bit: pre-activation > 0) at the centres of a resolution x resolution grid on
    the window: a lower bound of ``slice_region_count``."""
    if int(resolution) < 1:
        raise ShapeError(f"resolution must be a positive integer, got {resolution!r}")
    lines = slice_lines(layer, origin, u, v, bounds)
    (s0, s1), (t0, t1) = lines.bounds
    resolution = int(resolution)
    s = s0 + (np.arange(resolution) + 0.5) * (s1 - s0) / resolution
    t = t0 + (np.arange(resolution) + 0.5) * (t1 - t0) / resolution
    S, T = (grid.ravel() for grid in np.meshgrid(s, t))
    chunk = max(1, current().chunk_size)
    patterns = []
    for start in range(0, S.size, chunk):
        values = lines.values(S[start:start + chunk], T[start:start + chunk])
        patterns.append(np.packbits(values > 0, axis=1))
    return int(len(np.unique(np.concatenate(patterns), axis=0)))
