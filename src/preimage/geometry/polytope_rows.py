"""The rows of a polytope checked and normalised: real finite float64 data, unit-norm rows, zero rows
dropped or found unsatisfiable, and the canonical empty system. Used by :class:`~preimage.geometry.Polytope`.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError


def _real_array(value, name: str) -> np.ndarray:
    """``value`` as a fresh float64 array; complex input is refused (its imaginary part would be dropped)."""
    array = np.array(value)
    if np.iscomplexobj(array):
        raise ValueError(f"{name} is complex; a polytope needs real float64 data")
    try:
        return np.array(array, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} cannot be read as float64 numbers: {error}") from error


def _finite_matrix(M, name: str) -> np.ndarray:
    """M as a fresh (r, d) float64 array; ShapeError unless 2-D, ValueError on NaN, inf or complex."""
    array = _real_array(M, name)
    if array.ndim != 2:
        raise ShapeError(f"{name} must be a 2-D matrix, got shape {array.shape}")
    bad = ~np.isfinite(array)
    if np.any(bad):
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{name} contains {array[i, j]!r} at ({i}, {j}); entries must be finite")
    return array


def _right_hand_side(v, rows: int, name: str, matrix_name: str, matrix_shape) -> np.ndarray:
    """v as a fresh (rows,) float64 array; ShapeError on mismatch, ValueError on NaN or complex."""
    array = _real_array(v, name)
    if array.shape != (rows,):
        raise ShapeError(f"{name} must have shape ({rows},) to match {matrix_name} of shape "
                         f"{tuple(matrix_shape)}, got {array.shape}")
    if np.any(np.isnan(array)):
        raise ValueError(f"{name} contains NaN at index {int(np.argmax(np.isnan(array)))}")
    return array


def _unit_rows(M, v, matrix_name: str, rhs_name: str):
    """Rows of M (r, d) scaled to unit norm with v (r,), without under- or overflow; and the zero rows.

    Each row is divided by its largest entry before its norm is taken, so rows of size 1e-170 or 1e160
    keep their direction. A right-hand side whose scaled value overflows is refused: the row would
    otherwise silently become "no constraint" or "no point".
    Returns (M_unit, v_unit, zero) with zero (r,) bool; zero rows are returned as they are.
    """
    largest = np.max(np.abs(M), axis=1, initial=0.0)
    zero = largest == 0.0
    safe = np.where(zero, 1.0, largest)
    M = M / safe[:, None]
    norms = np.linalg.norm(M, axis=1)
    norms[zero] = 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        v_unit = v / safe / norms
    overflow = np.flatnonzero(~zero & np.isfinite(v) & ~np.isfinite(v_unit))
    if overflow.size:
        i = int(overflow[0])
        raise ValueError(f"row {i} of {matrix_name}: {rhs_name}[{i}] = {v[i]!r} divided by the row's norm "
                         f"(largest entry {largest[i]!r}) overflows float64; rescale the constraint")
    return M / norms[:, None], v_unit, zero


def _normalise_inequalities(A, b, tol):
    """Unit-norm rows; zero rows and ``b = +inf`` rows dropped. Returns (A, b, empty)."""
    A, scaled, zero = _unit_rows(A, b, "A", "b")
    empty = bool(np.any(zero & (b < -tol))) or bool(np.any(scaled == -np.inf))
    keep = ~zero & (scaled < np.inf)
    return A[keep], scaled[keep], empty


def _normalise_equalities(E, f, tol):
    """Unit-norm rows; zero rows with ``|f| <= tol`` dropped. Returns (E, f, empty)."""
    E, scaled, zero = _unit_rows(E, f, "E", "f")
    empty = bool(np.any(zero & (np.abs(f) > tol)))
    return E[~zero], scaled[~zero], empty


def _empty_system(d: int):
    """The canonical empty system in R^d: ``x_1 <= -1`` and ``-x_1 <= -1``."""
    A = np.zeros((2, d))
    A[0, 0], A[1, 0] = 1.0, -1.0
    return A, np.array([-1.0, -1.0]), np.zeros((0, d)), np.zeros(0)
