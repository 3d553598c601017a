"""Polyhedral cones ``{v : A v <= 0}``: is the cone only the origin?

A matrix A (m, k) is *omnidirectional* (Behrmann et al. 2018) when every nonzero direction ``v`` has
some ``(A v)_i > 0``, that is ``{v : A v <= 0} = {0}``. For the preimage of a ReLU layer this is
exactly when the preimage is bounded; for any polyhedron ``{x : A x <= b}`` it is exactly when the
recession cone is trivial.
"""

from __future__ import annotations

import numpy as np

from ..errors import Infeasible, ShapeError
from . import linalg
from .lp import solve_lp

__all__ = ["is_omnidirectional", "recession_cone_is_trivial"]


def is_omnidirectional(A) -> bool:
    """True iff ``{v in R^k : A v <= 0} = {0}`` for A (m, k).

    By Stiemke's theorem of the alternative this holds iff rank(A) = k and some ``c > 0`` has
    ``A^T c = 0``: the rows positively span R^k. Decided by a rank test (``rank_rtol``) and one
    feasibility LP (``c >= 1``, ``A^T c = 0``; scaling makes ``c >= 1`` the same as ``c > 0``).
    Exactly-zero rows are dropped (they constrain nothing) and every other row is normalised to unit
    norm first, however short it is next to the others: a row of norm 1e-11 beside one of norm 1 is
    a direction like any other. (Rounding noise of a row restricted to a subspace it is orthogonal to is
    zeroed, relative to that row's own norm, by ``linalg.restrict_rows``.)

    Fast exits: k = 0 is True (R^0 is the origin); fewer than k + 1 nonzero rows is False (a
    positive spanning set of R^k has at least k + 1 vectors).
    """
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2:
        raise ShapeError(f"A must be a 2-D matrix (m, k), got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise ValueError("A contains NaN or infinite entries")
    k = A.shape[1]
    if k == 0:
        return True
    norms = linalg.row_norms(A)
    nonzero = norms > 0.0
    rows = A[nonzero] / norms[nonzero, None]
    if rows.shape[0] < k + 1 or linalg.rank(rows) < k:
        return False
    try:
        solve_lp(np.zeros(rows.shape[0]), A_eq=rows.T, b_eq=np.zeros(k), lb=1.0)
    except Infeasible:
        return False
    return True


def recession_cone_is_trivial(A, E=None) -> bool:
    """True iff ``{v in R^d : A v <= 0, E v = 0} = {0}`` for A (m, d), E (p, d) or None.

    The rows of A are normalised, the cone is restricted to null(E) (orthonormal basis Z, ``rank_rtol``)
    and ``A Z`` tested with :func:`is_omnidirectional`; a restricted row of norm at most ``rank_rtol``
    (a row in the span of E) constrains nothing and is dropped. A nonempty polyhedron
    ``{A x <= b, E x = f}`` is bounded iff this holds.
    """
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2:
        raise ShapeError(f"A must be a 2-D matrix (m, d), got shape {A.shape}")
    if E is None:
        return is_omnidirectional(A)
    E = np.asarray(E, dtype=np.float64)
    if E.ndim != 2 or E.shape[1] != A.shape[1]:
        raise ShapeError(f"E must have shape (p, {A.shape[1]}) to match A {A.shape}, got {E.shape}")
    norms = linalg.row_norms(A)
    unit = A[norms > 0] / norms[norms > 0, None]
    return is_omnidirectional(linalg.restrict_rows(unit, linalg.null_space(E)))
