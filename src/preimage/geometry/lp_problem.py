"""An LP's data for HiGHS: the arguments of :func:`~preimage.geometry.lp.solve_lp` checked, stacked
and scaled into one row-bounded matrix, and the result type of a proven optimum.

Nothing here calls the solver; :mod:`preimage.geometry.lp` builds every model from these pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse

from ..errors import Infeasible, ShapeError

__all__ = ["LPResult"]


@dataclass(frozen=True)
class LPResult:
    """A proven optimum.

    Attributes
    ----------
    x : (n,) float64, an optimal point.
    value : float, the optimal objective ``c . x`` (in the sense asked: the maximum when maximising).
    row_duals : (m_ub + m_eq,) float64 or None. ``d value / d (row bound)``, the rows of ``A_ub``
        first, then those of ``A_eq`` (for an ``LPModel``: its rows in their current order). None when
        the solver has no valid dual solution.
    iterations : int, simplex + interior-point + crossover iterations of the successful solve.
    """

    x: np.ndarray
    value: float
    row_duals: np.ndarray | None
    iterations: int



@dataclass(frozen=True)
class _Bounds:
    """What the status mapping needs of a loaded LP besides HiGHS: its bounds, and each row's scale factor."""

    col_lower: np.ndarray
    col_upper: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    row_scale: np.ndarray  # (m,) each loaded row and its bounds is the caller's row times this


@dataclass(frozen=True)
class _Problem:
    """An LP in HiGHS's form: ``row_lower <= M x <= row_upper``, ``col_lower <= x <= col_upper``."""

    c: np.ndarray
    matrix: scipy.sparse.csc_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    row_scale: np.ndarray  # (m,) each row of ``matrix`` and its bounds is the caller's row times this

    @property
    def n(self) -> int:
        return self.c.size

    @property
    def bounds(self) -> _Bounds:
        return _Bounds(self.col_lower, self.col_upper, self.row_lower, self.row_upper, self.row_scale)

    @classmethod
    def build(cls, c, A_ub, b_ub, A_eq, b_eq, lb, ub) -> "_Problem":
        """Validate the arguments of :func:`~preimage.geometry.lp.solve_lp` and stack them into one
        row-bounded matrix.

        Bounds that no point meets (``b_ub = -inf``, ``lb > ub``, ``lb = +inf``, ``ub = -inf``) raise
        Infeasible here: the answer is certain and HiGHS need not see them. An infinite ``b_eq`` is refused.
        """
        c = _vector(c, None, "c")
        n = c.size
        parts, lower, upper = [], [], []
        for name, A, rhs, equality in (("A_ub", A_ub, b_ub, False), ("A_eq", A_eq, b_eq, True)):
            rhs_name = "b_eq" if equality else "b_ub"
            if A is None and rhs is None:
                continue
            if A is None or rhs is None:
                raise ShapeError(f"{name} and {rhs_name} must be given together")
            matrix = _as_csr(A, n, name)
            rhs = _vector(rhs, matrix.shape[0], rhs_name, allow=() if equality else (np.inf, -np.inf))
            if np.any(rhs == -np.inf):
                raise Infeasible(f"row {int(np.argmax(rhs == -np.inf))} of A_ub has bound -inf")
            parts.append(matrix)
            lower.append(rhs if equality else np.full(rhs.size, -np.inf))
            upper.append(rhs)
        matrix = (scipy.sparse.vstack(parts, format="csr") if parts
                  else scipy.sparse.csr_matrix((0, n)))
        matrix.eliminate_zeros()
        col_lower = _bound(lb, n, "lb", -np.inf)
        col_upper = _bound(ub, n, "ub", np.inf)
        bad = np.flatnonzero((col_lower > col_upper) | (col_lower == np.inf) | (col_upper == -np.inf))
        if bad.size:
            j = int(bad[0])
            raise Infeasible(f"variable {j} has bounds lb = {col_lower[j]!r} > ub = {col_upper[j]!r}")
        matrix, row_lower, row_upper, row_scale = _unit_rows(
            matrix, np.concatenate(lower) if lower else np.zeros(0),
            np.concatenate(upper) if upper else np.zeros(0))
        return cls(c, matrix.tocsc(), row_lower, row_upper, col_lower, col_upper, row_scale)


def _unit_rows(matrix: scipy.sparse.csr_matrix, lower: np.ndarray, upper: np.ndarray):
    """Rows ``lower <= M x <= upper`` rescaled to unit 2-norm, and the (m,) factor each row was multiplied by.

    The solver's tolerances (feasibility, small matrix entries) are absolute, so they mean the same on
    every row only once the rows have one size: a row and its bounds multiplied by 1e-170 or 1e160 is the
    same constraint and is solved as such. The norm is taken after division by the row's largest entry,
    so it neither under- nor overflows; an all-zero row keeps factor 1. A bound whose rescaled value
    overflows cannot be met by (lower) or cannot cut (upper) any finite point, and becomes infinite, except
    on an equality row, which is refused.
    """
    matrix = matrix.tocsr(copy=True)
    m = matrix.shape[0]
    rows = np.repeat(np.arange(m), np.diff(matrix.indptr))
    largest = np.zeros(m)
    np.maximum.at(largest, rows, np.abs(matrix.data))
    safe = np.where(largest > 0.0, largest, 1.0)
    data = matrix.data / safe[rows]
    norm = np.sqrt(np.bincount(rows, weights=data * data, minlength=m))
    norm = np.where(norm > 0.0, norm, 1.0)
    matrix.data = data / norm[rows]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        scaled_lower = lower / safe / norm
        scaled_upper = upper / safe / norm
    equality = lower == upper
    overflow = np.flatnonzero(equality & ~np.isfinite(scaled_upper))
    if overflow.size:
        i = int(overflow[0])
        raise ValueError(f"equality row {i}: bound {upper[i]!r} over the row's largest entry {largest[i]!r} "
                         "overflows float64")
    with np.errstate(over="ignore"):
        factor = 1.0 / safe / norm
    return matrix, scaled_lower, scaled_upper, factor


def _vector(value, size: int | None, name: str, allow: tuple = ()) -> np.ndarray:
    """``value`` as a (size,) float64 array, refusing NaN and infinities other than those in ``allow``."""
    array = np.array(value, dtype=np.float64, copy=True)
    if array.ndim != 1 or (size is not None and array.size != size):
        expected = "(n,)" if size is None else f"({size},)"
        raise ShapeError(f"{name} must have shape {expected}, got {array.shape}")
    if np.any(np.isnan(array)):
        raise ValueError(f"{name} contains NaN at index {int(np.argmax(np.isnan(array)))}")
    infinite = np.isinf(array) & ~np.isin(array, allow)
    if np.any(infinite):
        raise ValueError(f"{name} contains {array[infinite][0]!r} at index {int(np.argmax(infinite))}")
    return array


def _bound(value, n: int, name: str, default: float) -> np.ndarray:
    """Variable bounds as an (n,) array: None -> ``default``; a scalar broadcasts."""
    if value is None:
        return np.full(n, default)
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(n, float(array))
    return _vector(array, n, name, allow=(np.inf, -np.inf))


def _as_csr(A, n: int, name: str) -> scipy.sparse.csr_matrix:
    """A dense or sparse (r, n) matrix as CSR float64, refusing NaN and infinities."""
    matrix = scipy.sparse.csr_matrix(A, dtype=np.float64) if scipy.sparse.issparse(A) \
        else scipy.sparse.csr_matrix(_dense_2d(A, name))
    if matrix.shape[1] != n:
        raise ShapeError(f"{name} must have {n} columns (one per variable), got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix.data)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return matrix


def _dense_2d(A, name: str) -> np.ndarray:
    array = np.asarray(A, dtype=np.float64)
    if array.ndim != 2:
        raise ShapeError(f"{name} must be a 2-D matrix, got shape {array.shape}")
    return array
