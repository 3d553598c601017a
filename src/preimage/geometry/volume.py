"""Vertices and volume of a bounded full-dimensional polytope ``{w in R^k : A w <= b}``.

Low dimensions are exact up to rounding: the vertices come from qhull's halfspace intersection and the
volume from the convex hull of those vertices. Higher dimensions use the multiphase Monte Carlo
estimator of Dyer, Frieze and Kannan (1991) with the ball schedule of Lovász and Vempala, driven by
hit-and-run, which returns its own standard error beside the estimate.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull, HalfspaceIntersection, QhullError, cKDTree
from scipy.special import gammaln

from .._rng import as_generator
from ..errors import ShapeError, Unbounded
from ..settings import current
from .cones import is_omnidirectional
from .lp import LPModel
from .sampling import check_halfspaces, hit_and_run_chains, walk_length

__all__ = ["vertices", "exact_volume", "estimate_volume", "HullError"]

# qhull's options for the convex hull of the vertices, in the order tried (None: scipy's defaults).
_HULL_OPTIONS = (None, "Qt", "Qt Qbb Qx")


class HullError(ValueError):
    """qhull found the vertices but could not build their convex hull under any of its options."""


def vertices(A, b, interior) -> np.ndarray:
    """The vertices of a bounded full-dimensional polytope, each listed once.

    Parameters
    ----------
    A : (m, k) float64 with unit-norm rows; b : (m,) float64. The polytope is ``{w : A w <= b}``.
    interior : (k,) float64, strictly inside (every slack above ``interior_tol``).

    Returns
    -------
    (v, k) float64. ``k = 0``: the single point, shape (1, 0). ``k = 1``: the two endpoints, lower
    first. Vertices closer than ``feasibility_tol`` (relative to the coordinates' magnitude, when
    above 1) are one vertex; a degenerate vertex that qhull reports several times appears once.

    Raises
    ------
    ValueError : ``k > max_vertex_dim``, ``interior`` not strictly inside, the polytope unbounded, or
        qhull failing on the system.
    """
    A, b = check_halfspaces(A, b)
    k = A.shape[1]
    settings = current()
    if k > settings.max_vertex_dim:
        raise ValueError(f"vertex enumeration refused in dimension {k} > max_vertex_dim = "
                         f"{settings.max_vertex_dim}: the vertex count can grow like m^(k/2)")
    interior = _strictly_interior(A, b, interior)
    if k == 0:
        return np.zeros((1, 0))
    if k == 1:
        return np.array([[value] for value in _interval(A[:, 0], b)])
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            intersection = HalfspaceIntersection(np.hstack([A, -b[:, None]]), interior)
    except QhullError as error:
        # A flat dual (too few or coplanar dual points) is how qhull meets most unbounded systems.
        if not is_omnidirectional(A):
            raise ValueError("the polytope is unbounded: some direction v != 0 has A v <= 0") from error
        raise ValueError(f"qhull could not intersect the {A.shape[0]} halfspaces in dimension {k}: "
                         f"{error}") from error
    # The polytope is bounded iff the dual points' hull holds the origin strictly: every offset < 0.
    if np.any(intersection.dual_equations[:, -1] >= 0) or not np.all(np.isfinite(intersection.intersections)):
        raise ValueError("the polytope is unbounded: qhull found a vertex at infinity")
    points = _merge_close(intersection.intersections, settings.feasibility_tol)
    scale = max(1.0, float(np.abs(points).max()))
    violation = float((points @ A.T - b).max())
    if violation > settings.feasibility_tol * scale:
        raise ValueError(f"qhull returned a vertex violating a constraint by {violation!r}; the system "
                         "is too ill-conditioned for exact vertex enumeration")
    return points


def exact_volume(A, b, interior) -> float:
    """The k-dimensional volume of a bounded full-dimensional polytope, exact up to rounding.

    Parameters
    ----------
    A : (m, k) float64 with unit-norm rows; b : (m,) float64; interior : (k,) float64 strictly inside.

    Returns
    -------
    float: the length for ``k = 1``, the convex hull volume of :func:`vertices` for ``k >= 2``, and 1.0
    (the counting measure of a point) for ``k = 0``.

    Raises
    ------
    ValueError : as :func:`vertices`. HullError (a ValueError) : the vertices are right but qhull cannot
        build their hull, with its defaults nor with triangulated output (callers fall back to the
        estimate).
    """
    return hull_volume(vertices(A, b, interior))


def hull_volume(points: np.ndarray) -> float:
    """The k-dimensional volume of the convex hull of points (n, k) that span R^k; HullError as above."""
    k = points.shape[1]
    if k == 0:
        return 1.0
    if k == 1:
        return float(points[:, 0].max() - points[:, 0].min())
    # Centred and scaled to unit size, qhull's merging tolerances fit the points; triangulated output
    # ("Qt") then resolves the duplicate ridges that wide merges report on many near-degenerate vertices.
    centred = points - points.mean(axis=0)
    size = float(np.abs(centred).max())
    failures = []
    for options in _HULL_OPTIONS:
        try:
            return float(ConvexHull(centred / size, qhull_options=options).volume) * size ** k
        except QhullError as error:
            failures.append(f"{options or 'defaults'}: {str(error).splitlines()[0]}")
    raise HullError(f"qhull could not build the hull of {len(points)} vertices in dimension {k} "
                    f"({'; '.join(failures)})")


def estimate_volume(A, b, centre, radius: float, rng=None,
                    samples_per_phase: int | None = None) -> tuple[float, float]:
    """Monte Carlo volume of a bounded full-dimensional polytope P, with its standard error.

    Multiphase method: with ``B_i`` the ball of radius ``radius * 2**(i/k)`` about ``centre`` and ``q``
    the first index whose ball holds P, ``vol P = vol B_0 * prod_i vol(P ∩ B_i) / vol(P ∩ B_{i-1})``.
    Each factor is at most 2 (P is convex and holds the centre); its inverse, at least 1/2, is
    estimated by the fraction of hit-and-run points of ``P ∩ B_i`` that lie in ``B_{i-1}``. The chains
    of one phase start where those of the previous phase stopped, a warm start.

    Parameters
    ----------
    A : (m, k) float64 with unit-norm rows; b : (m,) float64. The polytope is ``{w : A w <= b}``.
    centre : (k,) float64 and radius > 0: a ball inside P (the Chebyshev ball, say).
    rng : ``numpy.random.Generator``, an int seed, or None (seed 0).
    samples_per_phase : hit-and-run points kept per phase, the thinning of :func:`walk_length` steps
        apart in their chain (``volume_samples`` of the settings when None); the positions in between
        count too. Each phase first walks a quarter of the burn-in of :func:`walk_length`: its
        chains start warm, uniform on the previous phase's smaller set.

    Returns
    -------
    (estimate, standard_error), floats. The variance of each phase's fraction is estimated by batch
    means over the independent chains, which accounts for the chains' autocorrelation, and never
    taken below the binomial variance; the phases are combined by the delta method on the log of
    the estimate. ``k = 0`` gives ``(1.0, 0.0)``.

    Raises
    ------
    ValueError : the ball is not inside P, or P is unbounded.
    """
    A, b = check_halfspaces(A, b)
    k = A.shape[1]
    settings = current()
    centre = np.asarray(centre, dtype=np.float64)
    radius = float(radius)
    if centre.shape != (k,):
        raise ShapeError(f"centre must have shape ({k},), got {centre.shape}")
    if not (np.isfinite(radius) and radius > settings.interior_tol):
        raise ValueError(f"radius must be finite and above interior_tol = {settings.interior_tol!r}, "
                         f"got {radius!r}")
    margin = float((b - A @ centre).min(initial=np.inf)) - radius
    if margin < -settings.feasibility_tol:
        raise ValueError(f"the ball of radius {radius!r} about the centre is not inside the polytope: it "
                         f"crosses a facet by {-margin!r}")
    samples = settings.volume_samples if samples_per_phase is None else int(samples_per_phase)
    if samples < 2:
        raise ValueError(f"samples_per_phase must be >= 2, got {samples}")
    if k == 0:
        return 1.0, 0.0
    generator = as_generator(rng)
    phases = max(0, math.ceil(k * math.log2(_outer_radius(A, b, centre) / radius)))
    chains = max(2, min(samples, settings.hit_and_run_chains))
    burn_in, thin = walk_length(k)
    burn_in //= 4  # a phase starts warm; 15-D and 20-D simplex estimates show no bias with this
    # Every step's position enters the fraction, not only the thinned points: the test is cheap and
    # batch means over the chains account for the extra correlation.
    steps = -(-samples // chains) * thin
    log_estimate = _log_ball_volume(k, radius)
    log_variance = 0.0
    start = np.array(np.broadcast_to(centre, (chains, k)))
    for phase in range(1, phases + 1):
        inner, outer = radius * 2.0 ** ((phase - 1) / k), radius * 2.0 ** (phase / k)
        walks = hit_and_run_chains(A, b, start, steps, chains, generator, burn_in, thin=1, ball=(centre, outer))
        inside = np.einsum("dck,dck->dc", walks - centre, walks - centre) <= inner**2
        fraction = float(inside.mean())
        if fraction == 0.0:
            raise RuntimeError(f"volume phase {phase}: no hit-and-run point fell in the inner ball, "
                               "whose share is at least 1/2; the chains did not mix")
        batch_variance = float(inside.mean(axis=0).var(ddof=1)) / chains
        binomial_variance = fraction * (1.0 - fraction) / inside.size
        log_estimate -= math.log(fraction)
        log_variance += max(batch_variance, binomial_variance) / fraction**2
        # A chain ending within interior_tol of a facet or of the next sphere restarts at the centre.
        last = walks[-1]
        next_outer = radius * 2.0 ** ((phase + 1) / k)
        usable = ((b - last @ A.T).min(axis=1, initial=np.inf) > settings.interior_tol) & (
            np.linalg.norm(last - centre, axis=1) < next_outer - settings.interior_tol)
        start = np.where(usable[:, None], last, centre)
    estimate = math.exp(log_estimate)
    return estimate, estimate * math.sqrt(log_variance)


def _strictly_interior(A, b, interior) -> np.ndarray:
    """``interior`` as a (k,) float64 array, or ValueError unless every slack exceeds ``interior_tol``."""
    interior = np.asarray(interior, dtype=np.float64)
    if interior.shape != (A.shape[1],):
        raise ShapeError(f"interior point must have shape ({A.shape[1]},), got {interior.shape}")
    tol = current().interior_tol
    slack = float((b - A @ interior).min(initial=np.inf))
    if not (np.all(np.isfinite(interior)) and slack > tol):
        raise ValueError(f"the point given as interior is not strictly inside: smallest slack {slack!r} "
                         f"(need > interior_tol = {tol!r})")
    return interior


def _interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The ends of ``{w in R : a w <= b}`` for a (m,) column ``a`` of +-1; ValueError if unbounded."""
    upper = b[a > 0] / a[a > 0]
    lower = b[a < 0] / a[a < 0]
    if upper.size == 0 or lower.size == 0:
        raise ValueError("the polytope is unbounded: an interval with a missing end")
    return float(lower.max()), float(upper.min())


def _merge_close(points: np.ndarray, tol: float) -> np.ndarray:
    """Merge (n, k) points closer than ``tol * max(1, max |coordinate|)`` into their mean.

    The merged points keep the order in which each cluster first appears.
    """
    radius = tol * max(1.0, float(np.abs(points).max(initial=0.0)))
    pairs = cKDTree(points).query_pairs(radius, output_type="ndarray")
    n = len(points)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # Renumber clusters by first appearance so the output follows qhull's order.
    _, first, labels = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels = rank[labels]
    merged = np.zeros((len(first), points.shape[1]))
    np.add.at(merged, labels, points)
    return merged / np.bincount(labels)[:, None]


def _log_ball_volume(k: int, radius: float) -> float:
    """log of the volume of a k-dimensional ball of the given radius."""
    return 0.5 * k * math.log(math.pi) - float(gammaln(0.5 * k + 1.0)) + k * math.log(radius)


def _outer_radius(A, b, centre) -> float:
    """An upper bound of ``max |w - centre|`` over P: the farthest corner of P's bounding box.

    The box takes 2k LPs on one warm-started model. ValueError if P is unbounded.
    """
    k = A.shape[1]
    model = LPModel(k, A_ub=A, b_ub=b)
    reach = np.zeros(k)
    for j in range(k):
        axis = np.zeros(k)
        axis[j] = 1.0
        try:
            reach[j] = max(model.maximize(axis).value - centre[j], centre[j] - model.minimize(axis).value)
        except Unbounded as error:
            raise ValueError(f"the polytope is unbounded along coordinate {j}") from error
    return float(np.linalg.norm(reach))
