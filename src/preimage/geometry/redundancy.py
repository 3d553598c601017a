"""The minimal H-form of a polytope: implicit equalities made explicit, redundant inequalities removed.

``Polytope.minimal()`` calls ``minimal_system``, which works on the polytope's cached facts (its affine
hull and a relative-interior point) and returns the arrays of the minimal form. Rows are settled in three
steps, cheapest first: exact duplicates are merged (``_tightest_copies``), rows that rays from the interior
point prove to be facets are kept without an LP (``_facets_hit_by_rays``), and every other row gets one
redundancy LP on a single warm-started ``LPModel``: relaxed, ``a_i . x`` maximised, dropped at once
when that maximum stays within ``feasibility_tol`` of ``b_i``, kept when its LP ends without a proof.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg

from ..errors import SolverError
from ..settings import current
from .lp import LPModel

if TYPE_CHECKING:
    from .polytope import Polytope

__all__ = ["minimal_system"]

_log = logging.getLogger(__name__)

# Rays shot at once by _facets_hit_by_rays: a batch holds rays x rows floats.
_RAYS_PER_BATCH = 256


def minimal_system(polytope: Polytope) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(A, b, E, f)``: a minimal H-form of the nonempty ``polytope`` (see :meth:`Polytope.minimal`).

    A : (m', d), b : (m',), E : (q, d), f : (q,), float64, C-contiguous, rows of unit norm (taken from
    the polytope's rows). E holds ``q = d - dim`` independent rows of ``[E; implicit rows of A]`` chosen by
    pivoted QR; A the non-implicit rows that are not redundant. The polytope's cached affine hull and
    relative-interior point are used (and computed if not yet known).
    """
    d = polytope.dim_ambient
    hull = polytope.affine_hull()
    tol = current().feasibility_tol
    M = np.vstack([polytope.E, polytope.A[hull.implicit]])
    g = np.concatenate([polytope.f, polytope.b[hull.implicit]])
    codim = d - hull.dim
    if codim > 0:
        _, _, pivots = scipy.linalg.qr(M.T, mode="economic", pivoting=True)
        chosen = np.sort(pivots[:codim])
        E, f = M[chosen], g[chosen]
    else:
        E, f = np.zeros((0, d)), np.zeros(0)
    A, b = _tightest_copies(polytope.A[hull.rows], polytope.b[hull.rows])
    keep = np.ones(b.size, dtype=bool)
    if b.size:
        facet = _facets_hit_by_rays(A, b, polytope.relative_interior_point(), hull.basis, tol)
        model = LPModel(d, A_ub=A, b_ub=b, A_eq=E, b_eq=f)
        for i in np.flatnonzero(~facet):
            # Row i is relaxed to a bound strictly above b_i in float64 (even for a huge b_i), so the
            # LP can exceed b_i where the row matters, while the objective a_i.x stays bounded by the
            # relaxed row itself: every LP here has an optimum.
            model.set_row_upper(i, b[i] + max(1.0, abs(b[i])))
            try:
                maximum = model.maximize(A[i]).value
            except SolverError as error:
                _log.warning("minimal(): row %d kept, its redundancy LP gave no proof: %s", i, error)
                model.restore_row(i)
                continue
            if maximum <= b[i] + tol:
                keep[i] = False
                model.set_row_upper(i, np.inf)
            else:
                model.restore_row(i)
    return tuple(np.ascontiguousarray(array) for array in (A[keep], b[keep], E, f))


def _facets_hit_by_rays(A, b, point, basis, tol) -> np.ndarray:
    """Rows (m,) proven non-redundant by ray shooting, without an LP: a (m,) bool mask.

    From ``point`` (strictly inside every row) rays run within the affine hull (``basis`` (d, k)): one
    along each row's normal projected on the hull, then ``min(4 m, chunk_size)`` random ones (seed 0,
    so the result is reproducible). The first row a ray meets, at ``t1``, is a facet when the next one
    is met only at ``t2`` with ``(t2 - t1) * rate > tol``: the points of the ray between ``t1`` and
    ``t2`` satisfy every other row, and those near ``t2`` violate row i by more than ``tol``, which is
    the LP test of :meth:`Polytope.minimal` answered by a witness. Rows not proven here are left to the
    LPs. Rays go in batches to bound memory.
    """
    m, k = A.shape[0], basis.shape[1]
    proven = np.zeros(m, dtype=bool)
    if k == 0:
        return proven
    slack = b - A @ point
    normals = (A @ basis) @ basis.T
    random_rays = np.random.default_rng(0).standard_normal((min(4 * m, current().chunk_size), k)) @ basis.T
    directions = np.vstack([normals, random_rays])
    for start in range(0, len(directions), _RAYS_PER_BATCH):
        rates = directions[start:start + _RAYS_PER_BATCH] @ A.T  # (rays, m): slack used per unit step
        hits = np.full((len(rates), m + 1), np.inf)  # a column of inf: "no second row" when m = 1
        ahead = rates > 0
        hits[:, :m][ahead] = (np.broadcast_to(slack, rates.shape)[ahead]) / rates[ahead]
        first = np.argmin(hits, axis=1)
        t1, t2 = np.partition(hits, 1, axis=1)[:, :2].T
        met = np.isfinite(t1)
        margin = np.full(len(rates), -np.inf)
        margin[met] = (t2[met] - t1[met]) * rates[met, first[met]]
        proven[first[met & (margin > tol)]] = True
    return proven


def _tightest_copies(A, b):
    """Rows (m, d) that are exact duplicates reduced to one, with the smallest b; first-seen order kept."""
    if b.size == 0:
        return A, b
    _, first, group = np.unique(A, axis=0, return_index=True, return_inverse=True)
    group = group.ravel()
    tightest = np.full(first.size, np.inf)
    np.minimum.at(tightest, group, b)
    order = np.argsort(first)
    return A[first[order]], tightest[order]
