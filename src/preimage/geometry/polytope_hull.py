"""The LPs behind a polytope's affine hull: a least feasible point, the implicit equalities with a
relative-interior point, the hull with the inequalities in its coordinates, and the Chebyshev ball in it.

:class:`~preimage.geometry.Polytope` computes each of these once (cached) through the functions here,
which read the polytope's cached frame (``_feasible_point``, ``_reduced``, ``_row_noise``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse

from ..errors import Infeasible, SolverError, Unbounded
from ..settings import current
from . import linalg
from .lp import solve_lp

if TYPE_CHECKING:
    from .polytope import Polytope

__all__ = ["AffineHull", "affine_hull_of", "implicit_rows", "chebyshev_ball", "least_feasible"]


@dataclass(frozen=True, eq=False)
class AffineHull:
    """The affine hull ``{x0 + Z w : w in R^k}`` of a nonempty polytope P, and P in those coordinates.

    Attributes
    ----------
    point : (d,) float64, x0, a point of the hull (near P's relative interior).
    basis : (d, k) float64, Z, orthonormal columns.
    A : (m', k) float64, unit-norm rows; b : (m',) float64. ``P = {x0 + Z w : A w <= b}``, a
        full-dimensional system in R^k (implicit equalities removed).
    rows : (m',) int, the row of the polytope's A behind each row here.
    implicit : (q,) int, the rows of the polytope's A that hold with equality on all of P.
    """

    point: np.ndarray
    basis: np.ndarray
    A: np.ndarray
    b: np.ndarray
    rows: np.ndarray
    implicit: np.ndarray

    @property
    def dim(self) -> int:
        """k, the dimension of the hull."""
        return self.basis.shape[1]

    def to_ambient(self, W: np.ndarray) -> np.ndarray:
        """Map reduced coordinates W (n, k) to points (n, d): ``x0 + W Z^T``."""
        return self.point + np.asarray(W, dtype=np.float64) @ self.basis.T


def affine_hull_of(polytope: Polytope) -> AffineHull | None:
    """The affine hull of ``polytope``, or None if it is empty; found with two LPs (see
    :func:`implicit_rows`)."""
    found = implicit_rows(polytope)
    if found is None:
        return None
    interior, implicit = found
    M = np.vstack([polytope.E, polytope.A[implicit]])
    g = np.concatenate([polytope.f, polytope.b[implicit]])
    basis = linalg.null_space(M)
    # The affine hull is {M x = g}; x0 is the LP's relative-interior point projected onto it.
    correction, _ = linalg.least_squares(M, g - M @ interior)
    point = interior + correction
    rows = np.setdiff1d(np.arange(polytope.n_ineq), implicit)
    reduced = linalg.restrict_rows(polytope.A[rows], basis)
    norms = np.linalg.norm(reduced, axis=1)
    # A row whose normal lies in the span of the equalities is constant on the hull; it is not
    # implicit, so that constant is a positive slack and the row constrains nothing there.
    keep = norms > 0.0
    with np.errstate(over="ignore"):
        reduced_b = (polytope.b[rows[keep]] - polytope.A[rows[keep]] @ point) / norms[keep]
    finite = reduced_b < np.inf  # a bound beyond float range constrains nothing
    rows = rows[keep][finite]
    reduced_A = reduced[keep][finite] / norms[keep][finite, None]
    reduced_b = reduced_b[finite]
    arrays = (point, basis, reduced_A, reduced_b, rows, implicit)
    for array in arrays:
        array.setflags(write=False)
    return AffineHull(*arrays)


def implicit_rows(polytope: Polytope) -> tuple[np.ndarray, np.ndarray] | None:
    """A relative-interior point of P and the indices of its implicit equalities; None if P is empty.

    On the flat ``{E x = f} = {x_p + Z w}`` (equalities eliminated, see ``Polytope._equality_frame``), from a
    feasible point x_f (the cached feasibility LP), with ``y = w - w_f`` and the slacks
    ``c = b - A x_f >= 0`` clipped to at most 1, one LP in (y, s, lam) over the rows not constant on
    the flat (``A`` below is ``A Z``)::

        A y + s <= lam c,   0 <= s <= 1,   1 <= lam <= 1 / interior_tol,   max sum(s).

    Clipping c replaces P by ``P' = P ∩ {a_i x <= a_i x_f + 1 where c_i > 1}``, which holds
    ``P ∩ B(x_f, 1)`` (unit rows), so a row is implicit for P' iff it is for P (a point of P with
    positive slack on row i gives such points on the segment from x_f, near x_f), and it keeps the
    LP's numbers of order one whatever the size of b. For any feasible (y, s, lam), ``y / lam`` is in
    P' and ``a_i y / lam <= c_i - s_i / lam``. On an implicit row every point of P' has
    ``a_i y / lam = c_i``, which forces ``s_i = 0``. If y* is a relative-interior point of P', every
    other row has slack ``sigma_i > 0`` there, and ``y = lam y*`` with ``lam = 1 / min sigma_i``
    gives ``s_i = 1`` on all of them at once. So the optimum has s_i = 1 on the non-implicit rows
    and 0 on the implicit ones; the threshold 1/2 separates them with room for rounding. The cap on
    lam makes a row whose slack cannot exceed about ``interior_tol`` count as implicit.
    """
    x_f = polytope._feasible_point
    if x_f is None:
        return None
    settings = current()
    x_p, Z, A_r, b_r, flat = polytope._reduced
    noise = polytope._row_noise(polytope.A, polytope.b, x_p)
    # Rows constant on the flat {E x = f} hold with equality on all of P iff that constant slack is 0.
    flat_implicit = np.flatnonzero(flat & (b_r <= settings.feasibility_tol + noise))
    rows = np.flatnonzero(~flat)
    k, m = Z.shape[1], rows.size
    if k == 0 or m == 0:
        return x_f, flat_implicit
    A = A_r[rows]
    w_f = Z.T @ (x_f - x_p)
    # A row counts as implicit when its slack cannot exceed interior_tol plus its own rounding:
    # s_i enters with weight 1 + noise_i / interior_tol, so s_i = 1 needs that much more slack.
    # The weight is capped where the rounding reaches half the set's own size: such a row's slack
    # cannot be told from its noise at all, and it is kept (not implicit) when the set gives it room.
    weight = 1.0 + np.minimum(noise[rows], 0.5) / settings.interior_tol
    slack = np.clip(b_r[rows] - A @ w_f, 0.0, 1.0)
    A_ub = scipy.sparse.hstack([scipy.sparse.csr_matrix(A), scipy.sparse.diags(weight),
                                scipy.sparse.csr_matrix(-slack[:, None])], format="csr")
    cost = np.concatenate([np.zeros(k), np.ones(m), [0.0]])
    lower = np.concatenate([np.full(k, -np.inf), np.zeros(m), [1.0]])
    upper = np.concatenate([np.full(k, np.inf), np.ones(m), [1.0 / settings.interior_tol]])
    try:
        result = solve_lp(cost, A_ub=A_ub, b_ub=np.zeros(m), lb=lower, ub=upper, maximize=True)
    except Infeasible as error:
        raise SolverError(f"{polytope!r}: the implicit-equality LP is infeasible although the polytope "
                          "has a feasible point; the system is too ill-conditioned") from error
    lam = result.x[-1]
    slack_indicator = result.x[k:k + m]
    implicit = np.union1d(rows[slack_indicator < 0.5], flat_implicit)
    return x_f + Z @ (result.x[:k] / lam), implicit


def chebyshev_ball(polytope: Polytope) -> tuple[np.ndarray, float]:
    """Chebyshev centre (k,) and radius of the reduced system ``A w <= b`` of ``polytope``'s affine hull."""
    hull = polytope.affine_hull()
    k = hull.dim
    if k == 0:
        return np.zeros(0), 0.0
    if hull.A.shape[0] == 0:
        return np.zeros(k), np.inf
    A_ub = np.hstack([hull.A, np.ones((hull.A.shape[0], 1))])
    cost = np.concatenate([np.zeros(k), [1.0]])
    lower = np.concatenate([np.full(k, -np.inf), [0.0]])
    try:
        try:
            result = solve_lp(cost, A_ub=A_ub, b_ub=hull.b, lb=lower, maximize=True)
            return result.x[:k], float(result.x[k])
        except Unbounded:
            # Balls of every radius fit; one of radius 1 gives the interior point to return.
            upper = np.concatenate([np.full(k, np.inf), [1.0]])
            result = solve_lp(cost, A_ub=A_ub, b_ub=hull.b, lb=lower, ub=upper, maximize=True)
            return result.x[:k], np.inf
    except Infeasible as error:
        raise SolverError(f"{polytope!r}: the Chebyshev LP of a nonempty polytope was declared infeasible; "
                          "the system is too ill-conditioned") from error


def least_feasible(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A point w (k,) of ``{A w <= b}`` of least max-norm, by one LP in (w, t); Infeasible if none.

    The least point, rather than any vertex, is the frame's origin (see ``Polytope._normal``): a vertex
    on a row far out (``x <= 1e200``) would put the frame where the other rows are lost in rounding.
    """
    k = A.shape[1]
    eye = scipy.sparse.identity(k, format="csr")
    t_column = scipy.sparse.csr_matrix(-np.ones((k, 1)))
    A_ub = scipy.sparse.vstack([scipy.sparse.hstack([scipy.sparse.csr_matrix(A),
                                                     scipy.sparse.csr_matrix((A.shape[0], 1))]),
                                scipy.sparse.hstack([eye, t_column]), scipy.sparse.hstack([-eye, t_column])],
                               format="csr")
    cost = np.zeros(k + 1)
    cost[-1] = 1.0
    # Two rows per coordinate and the cost on t alone: on thousands of coordinates the dual simplex stalls
    # in degenerate pivots where the interior-point method takes seconds.
    result = solve_lp(cost, A_ub=A_ub, b_ub=np.concatenate([b, np.zeros(2 * k)]), ipm_first=k > 500)
    return result.x[:k]
