"""Polytope, Box and omnidirectionality: exact facts on known sets, and agreement with qhull."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.spatial import ConvexHull, HalfspaceIntersection

from preimage.errors import EmptyDomainError, ShapeError
from preimage.geometry import (
    Box, Polytope, Volume, is_omnidirectional, linalg, recession_cone_is_trivial, solve_lp,
)
from preimage.geometry.redundancy import _facets_hit_by_rays
from preimage.settings import configure, current


def box_rows(d):
    return np.vstack([np.eye(d), -np.eye(d)])


def same_rows(X, Y, tol=1e-9):
    """Order-independent equality of two row sets (n, k)."""
    X, Y = np.atleast_2d(X), np.atleast_2d(Y)
    if X.shape != Y.shape:
        return False
    distances = np.linalg.norm(X[:, None, :] - Y[None, :, :], axis=2)
    return bool(np.all(distances.min(axis=1) <= tol) and np.all(distances.min(axis=0) <= tol))


# name -> (constructor arguments, dim, kind, Chebyshev radius, implicit rows of the normalised A)
KNOWN = {
    "unit cube": ((box_rows(3), [1, 1, 1, 0, 0, 0]), 3, "bounded", 0.5, []),
    "simplex": ((np.vstack([-np.eye(3), np.ones((1, 3))]), [0, 0, 0, 1]), 3, "bounded", 1 / (3 + np.sqrt(3)), []),
    "segment by inequalities": ((box_rows(3), [1, 0, 0, 0, 0, 0]), 1, "bounded", 0.0, [1, 2, 4, 5]),
    "point by inequalities": ((box_rows(2), [1, 2, -1, -2]), 0, "point", 0.0, [0, 1, 2, 3]),
    "halfspace": (([[1.0, 1.0]], [1.0]), 2, "unbounded", np.inf, []),
    "slab": (([[1.0, 0.0], [-1.0, 0.0]], [1.0, 1.0]), 2, "unbounded", 1.0, []),
    "cone": (([[-1.0, 1.0], [-1.0, -1.0]], [0.0, 0.0]), 2, "unbounded", np.inf, []),
    "square in a plane": ((box_rows(3)[[0, 1, 3, 4]], [2, 2, 0, 0], [[0, 0, 2.0]], [2.0]), 2, "bounded", 1.0, []),
    "line in the plane": ((np.zeros((0, 2)), [], [[0.0, 1.0]], [0.0]), 1, "unbounded", np.inf, []),
    "segment in a plane": ((box_rows(3)[[0, 1, 3, 4]], [1, 0, 0, 0], [[0, 0, 1.0]], [0.0]), 1, "bounded", 0.0, [1, 3]),
    # The second row lies in the span of E: restricted to the line it is rounding noise, not a bound.
    "row in the span of E": (([[1, 1, 2], [2, 2, 2]], [2, 2], [[2, -1, -2], [1, 1, 1]], [2, 0]),
                             1, "unbounded", np.inf, []),
}


@pytest.mark.parametrize("name", KNOWN)
def test_known_polytope_facts(name):
    args, dim, kind, radius, implicit = KNOWN[name]
    P = Polytope(*args)
    assert not P.is_empty()
    assert P.dim == dim
    assert P.kind == kind
    assert P.is_bounded() == (kind in ("bounded", "point"))
    centre, r = P.chebyshev()
    assert r == pytest.approx(radius, rel=1e-7, abs=1e-9)
    assert P.contains(centre)
    if np.isfinite(r) and r > 0:  # the ball lies inside: every row's slack at the centre is >= r
        assert np.all(P.b - P.A @ centre >= r * np.linalg.norm(P.A @ _equality_null(P), axis=1) - 1e-9)
    hull = P.affine_hull()
    assert hull.implicit.tolist() == implicit
    assert hull.dim == dim
    assert np.allclose(hull.basis.T @ hull.basis, np.eye(dim))
    x = P.relative_interior_point()
    assert P.contains(x)
    non_implicit = np.setdiff1d(np.arange(P.n_ineq), implicit)
    assert np.all(P.b[non_implicit] - P.A[non_implicit] @ x > current().interior_tol)
    assert np.allclose(P.A[implicit] @ x, P.b[implicit], atol=1e-9)


def _equality_null(P):
    return linalg.null_space(P.E)


EMPTY = {
    "contradictory rows": ([[1.0, 0.0], [-1.0, 0.0]], [-1.0, 0.5]),
    "zero row with negative b": (np.zeros((1, 2)), [-1.0]),
    "b = -inf": ([[1.0, 0.0]], [-np.inf]),
    "zero equality row with f != 0": (np.zeros((0, 2)), [], np.zeros((1, 2)), [1.0]),
    "inconsistent equalities": (np.zeros((0, 2)), [], [[1.0, 0.0], [2.0, 0.0]], [1.0, 1.0]),
    "equality outside the box": (box_rows(2), [1, 1, 1, 1], [[1.0, 1.0]], [3.0]),
}


@pytest.mark.parametrize("name", EMPTY)
def test_empty_polytopes(name):
    P = Polytope(*EMPTY[name])
    assert P.is_empty()
    assert P.dim == -1
    assert P.kind == "empty"
    assert P.is_bounded()
    assert not np.any(P.contains(np.random.default_rng(0).normal(size=(100, 2))))
    with pytest.raises(EmptyDomainError):
        P.chebyshev()
    with pytest.raises(EmptyDomainError):
        P.relative_interior_point()
    with pytest.raises(EmptyDomainError):
        P.sample(3)
    assert float(P.volume()) == 0.0
    assert P.vertices().shape == (0, 2)
    assert P.minimal().is_empty()


def test_rows_normalised_and_arrays_frozen():
    P = Polytope([[3.0, 4.0], [0.0, -2.0]], [10.0, 1.0], [[0.0, 5.0]], [5.0])
    assert np.allclose(P.A, [[0.6, 0.8], [0.0, -1.0]])
    assert np.allclose(P.b, [2.0, 0.5])
    assert np.allclose(P.E, [[0.0, 1.0]]) and np.allclose(P.f, [1.0])
    assert (P.dim_ambient, P.n_ineq, P.n_eq) == (2, 2, 1)
    for array in (P.A, P.b, P.E, P.f):
        with pytest.raises(ValueError):
            array[0] = 1.0
    with pytest.raises(AttributeError):
        P.A = np.eye(2)


def test_inputs_are_copied():
    A = np.eye(2)
    P = Polytope(A, [1.0, 1.0])
    A[0, 0] = 5.0
    assert P.A[0, 0] == 1.0


@pytest.mark.parametrize("args, kept", [
    ((np.array([[0.0, 0.0], [1.0, 0.0]]), [2.0, 1.0]), 1),  # 0 <= 2: dropped
    ((np.array([[0.0, 0.0], [1.0, 0.0]]), [0.0, 1.0]), 1),  # 0 <= 0: dropped
    ((np.array([[1.0, 0.0], [0.0, 1.0]]), [np.inf, 1.0]), 1),  # b = +inf: no constraint
])
def test_rows_that_constrain_nothing_are_dropped(args, kept):
    P = Polytope(*args)
    assert P.n_ineq == kept
    assert not P.is_empty()


def test_zero_equality_row_with_zero_f_dropped():
    P = Polytope(np.eye(2), [1.0, 1.0], np.zeros((1, 2)), [0.0])
    assert P.n_eq == 0 and P.dim == 2


@pytest.mark.parametrize("args", [
    ([[np.nan, 0.0]], [1.0]),
    ([[np.inf, 0.0]], [1.0]),
    ([[1.0, 0.0]], [np.nan]),
    ([[1.0, 0.0]], [1.0], [[np.inf, 0.0]], [0.0]),
    ([[1.0, 0.0]], [1.0], [[1.0, 0.0]], [np.nan]),
    ([[1.0, 0.0]], [1.0], [[1.0, 0.0]], [np.inf]),
])
def test_non_finite_input_refused(args):
    with pytest.raises(ValueError):
        Polytope(*args)


@pytest.mark.parametrize("args, named", [
    (([1.0, 0.0], [1.0]), "A"),
    ((np.eye(2), [1.0]), "b"),
    ((np.eye(2), [[1.0, 1.0]]), "b"),
    ((np.eye(2), [1.0, 1.0], np.eye(3), [1.0, 1.0, 1.0]), "E"),
    ((np.eye(2), [1.0, 1.0], np.eye(2), [1.0]), "f"),
    ((np.eye(2), [1.0, 1.0], np.eye(2), None), "E and f"),
    ((np.zeros((1, 0)), [1.0]), "A"),
])
def test_bad_shapes_refused_with_names(args, named):
    with pytest.raises(ShapeError, match=named):
        Polytope(*args)


def test_minimal_cube_with_redundant_and_duplicate_rows():
    d = 3
    rows = np.vstack([box_rows(d), box_rows(d), 2 * np.eye(d), np.ones((1, d)), [[1.0, 1.0, 0.0]],
                      box_rows(d)[:2]])
    rhs = np.concatenate([np.ones(d), np.zeros(d), np.ones(d), np.zeros(d), 2 * np.ones(d), [3.0], [2.0],
                          [1.5, 1.0]])
    P = Polytope(rows, rhs)
    M = P.minimal()
    assert M.n_ineq == 6 and M.n_eq == 0
    assert same_rows(np.column_stack([M.A, M.b]), np.column_stack([box_rows(d), [1, 1, 1, 0, 0, 0]]))
    X = np.random.default_rng(0).uniform(-0.5, 1.5, size=(2000, d))
    assert np.array_equal(P.contains(X), M.contains(X))
    assert M.minimal() is M


def test_minimal_moves_implicit_rows_to_independent_equalities():
    # The segment [0, 1] x {0} x {0}, with x3 = 0 said three times (twice as equalities).
    P = Polytope(box_rows(3), [1, 0, 0, 0, 0, 0], [[0, 0, 1.0], [0, 0, 2.0]], [0.0, 0.0])
    M = P.minimal()
    assert M.n_eq == 2 and np.linalg.matrix_rank(M.E) == 2
    assert M.n_ineq == 2 and M.dim == 1
    X = np.random.default_rng(1).uniform(-0.5, 1.5, size=(500, 3))
    X[::2, 1:] = 0.0
    assert np.array_equal(P.contains(X), M.contains(X))


def test_minimal_of_a_point_is_equalities_only():
    M = Polytope(box_rows(2), [1, 2, -1, -2]).minimal()
    assert (M.n_ineq, M.n_eq) == (0, 2)
    assert M.contains([1.0, 2.0]) and not M.contains([1.0, 2.1])


def test_contains_shapes_and_tolerance():
    P = Box(np.zeros(2), np.ones(2)).to_polytope()
    assert P.contains([0.5, 0.5]) is True
    assert P.contains([1.0 + 1e-12, 0.5]) is True
    assert P.contains([1.1, 0.5]) is False
    assert P.contains([1.1, 0.5], tol=0.2) is True
    assert P.contains(np.array([[0.5, 0.5], [2.0, 0.0]])).tolist() == [True, False]
    with pytest.raises(ShapeError):
        P.contains(np.zeros((2, 3)))


def test_intersect_and_with_constraints():
    cube = Box(np.zeros(2), np.ones(2)).to_polytope()
    shifted = Box(np.full(2, 0.5), np.full(2, 2.0)).to_polytope()
    both = cube.intersect(shifted)
    assert both.chebyshev()[1] == pytest.approx(0.25)
    edge = cube.with_constraints(np.zeros((0, 2)), [], [[1.0, 0.0]], [1.0])
    assert edge.dim == 1 and edge.kind == "bounded"
    assert cube.with_constraints([[1.0, 1.0]], [-1.0]).is_empty()
    with pytest.raises(ShapeError):
        cube.intersect(Box(np.zeros(3), np.ones(3)).to_polytope())


def test_pickle_round_trip_keeps_arrays_exactly():
    P = Polytope(np.random.default_rng(0).normal(size=(7, 3)), np.ones(7), [[1.0, 2.0, 3.0]], [0.5])
    Q = pickle.loads(pickle.dumps(P))
    for name in ("A", "b", "E", "f"):
        assert np.array_equal(getattr(P, name), getattr(Q, name))
        assert not getattr(Q, name).flags.writeable
    assert Q.dim == P.dim


# --------------------------------------------------------------------- omnidirectionality

def regular_simplex_normals(k):
    """k + 1 unit vectors in R^k summing to zero: the facet normals of a simplex around 0."""
    vertices = np.eye(k + 1) - 1.0 / (k + 1)
    basis = np.linalg.svd(vertices)[2][:k]
    rows = vertices @ basis.T
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("A, expected", [
    (regular_simplex_normals(2), True),
    (regular_simplex_normals(3), True),
    (regular_simplex_normals(5), True),
    (box_rows(3), True),
    (box_rows(3)[:-1], False),  # a box missing one face: -e3 is a recession direction
    (np.array([[1.0, 0, 0], [0, 1.0, 0], [-1.0, -1.0, 0], [2.0, 1.0, 0]]), False),  # rank 2 in R^3
    (np.array([[1.0, 0.0], [0.0, 1.0]]), False),  # fewer than k + 1 rows
    (np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [0.0, 0.0]]), True),  # a zero row changes nothing
    (np.zeros((3, 0)), True),  # R^0
    # A short row is a direction like any other (rounding noise is zeroed earlier, by restrict_rows).
    (np.array([[1.0], [-4e-17]]), True),
    (np.array([[1.0], [-1e-11]]), True),
])
def test_is_omnidirectional_known(A, expected):
    assert is_omnidirectional(A) is expected


def brute_force_has_recession_direction(A, rng, n=20000):
    """True if some sampled unit direction v has A v <= 0 (a nonzero cone direction)."""
    V = rng.normal(size=(n, A.shape[1]))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    return bool(np.any(np.all(V @ A.T <= 0.0, axis=1)))


@pytest.mark.parametrize("seed", range(40))
def test_is_omnidirectional_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    k = 2 + seed % 2
    m = int(rng.integers(k + 1, k + 5))
    A = rng.normal(size=(m, k))
    # For Gaussian rows the cone {A v <= 0} is {0} or has interior (almost surely), so a dense enough
    # sample of directions finds it when it is there.
    assert is_omnidirectional(A) == (not brute_force_has_recession_direction(A, rng))


def test_recession_cone_with_equalities():
    # x1 + x2 <= 1, -x1 <= 0 (a wedge, unbounded), cut by x1 = x2: bounded segment.
    A = np.array([[1.0, 1.0], [-1.0, 0.0]])
    assert not recession_cone_is_trivial(A)
    assert recession_cone_is_trivial(A, np.array([[1.0, -1.0]]))
    P = Polytope(A, [1.0, 0.0], [[1.0, -1.0]], [0.0])
    assert P.kind == "bounded" and P.dim == 1


# --------------------------------------------------------------------- against qhull

def random_polytope_with_oracle(rng, d, k):
    """A random k-dim polytope in R^d, given by inequalities only, and its qhull hull in k-dim coordinates.

    The polytope is the hull of random points in a random affine k-flat; its facets come from qhull
    and its flat from pairs of opposite inequalities (implicit equalities the Polytope must find).
    """
    frame = np.linalg.qr(rng.normal(size=(d, d)))[0]
    Z, N = frame[:, :k], frame[:, k:]
    origin = rng.normal(size=d)
    points = rng.normal(size=(k + 6, k))
    hull = ConvexHull(points)
    normals, offsets = hull.equations[:, :-1], hull.equations[:, -1]  # normals . w + offsets <= 0
    A = np.vstack([normals @ Z.T, N.T, -N.T])
    b = np.concatenate([-offsets + normals @ Z.T @ origin, N.T @ origin, -N.T @ origin])
    order = rng.permutation(len(b))
    vertices = origin + points[hull.vertices] @ Z.T
    return Polytope(A[order], b[order]), hull, vertices


@pytest.mark.parametrize("seed", range(20))
def test_random_polytopes_agree_with_qhull(seed):
    rng = np.random.default_rng(100 + seed)
    if seed < 10:  # full-dimensional in R^2..R^4
        d = k = 2 + seed % 3
    else:  # in a proper flat of R^3 or R^4
        d = 3 + seed % 2
        k = d - 1 if seed % 4 < 2 else 2
    P, hull, vertices = random_polytope_with_oracle(rng, d, k)
    assert P.dim == k
    assert P.kind == "bounded"
    assert same_rows(P.vertices(), vertices, tol=1e-7)
    assert float(P.volume(relative=True)) == pytest.approx(hull.volume, rel=1e-7)
    assert float(P.volume()) == (pytest.approx(hull.volume, rel=1e-7) if k == d else 0.0)
    if k == d:
        interior = P.relative_interior_point()
        halfspaces = HalfspaceIntersection(np.column_stack([P.A, -P.b]), interior)
        assert same_rows(np.unique(halfspaces.intersections.round(9), axis=0), vertices, tol=1e-7)
    minimal = P.minimal()
    assert (minimal.n_ineq, minimal.n_eq) == (len(hull.equations), d - k)
    X = P.sample(200, rng)
    assert np.all(P.contains(X, tol=1e-8))


@pytest.mark.parametrize("seed", range(6))
def test_random_unbounded_polytopes(seed):
    rng = np.random.default_rng(200 + seed)
    d = 2 + seed % 3
    direction = rng.normal(size=d)
    A = rng.normal(size=(d + 4, d))
    A -= np.outer(A @ direction, direction) / (direction @ direction)  # rows orthogonal to direction ...
    A += np.outer(np.abs(rng.normal(size=d + 4)), direction)  # ... then tilted so A (-direction) < 0
    P = Polytope(A, rng.uniform(0.5, 1.0, d + 4))
    assert P.kind == "unbounded"
    assert np.all(P.A @ -direction <= 0)
    assert float(P.volume()) == np.inf
    with pytest.raises(ValueError, match="unbounded"):
        P.sample(5)
    with pytest.raises(ValueError, match="unbounded"):
        P.vertices()


# --------------------------------------------------------------------- vertices, volume, sampling

def test_cube_and_simplex_measures():
    cube = Box(np.zeros(3), np.ones(3)).to_polytope()
    assert cube.volume() == Volume(pytest.approx(1.0), 0.0, True)
    assert same_rows(cube.vertices(), np.array(np.meshgrid(*[[0.0, 1.0]] * 3)).reshape(3, -1).T)
    simplex = Polytope(np.vstack([-np.eye(3), np.ones((1, 3))]), [0, 0, 0, 1])
    assert float(simplex.volume()) == pytest.approx(1 / 6)


def test_lower_dimensional_measures_and_samples():
    segment = Polytope(box_rows(3), [2, 0, 0, 1, 0, 0])  # [-1, 2] x {0} x {0}
    assert float(segment.volume()) == 0.0
    assert float(segment.volume(relative=True)) == pytest.approx(3.0)
    assert same_rows(segment.vertices(), [[-1, 0, 0], [2, 0, 0]])
    X = segment.sample(400, rng=3)
    assert np.all(segment.contains(X))
    assert np.all(X[:, 1:] == 0.0)
    assert X[:, 0].min() < -0.8 and X[:, 0].max() > 1.8
    point = Polytope(box_rows(2), [1, 2, -1, -2])
    assert np.array_equal(point.sample(3), np.tile([1.0, 2.0], (3, 1)))
    assert float(point.volume(relative=True)) == 1.0
    assert np.array_equal(point.vertices(), [[1.0, 2.0]])


def test_samples_are_uniform_and_reproducible():
    square = Box(np.zeros(2), np.array([2.0, 1.0])).to_polytope()
    X = square.sample(4000)
    assert np.array_equal(X, square.sample(4000))  # rng=None is seed 0, not fresh entropy
    assert not np.array_equal(X, square.sample(4000, rng=1))
    assert np.all(square.contains(X))
    assert np.allclose(X.mean(axis=0), [1.0, 0.5], atol=0.05)
    assert np.mean(X[:, 0] < 1.0) == pytest.approx(0.5, abs=0.05)


def test_volume_estimate_above_exact_dimension():
    square = Box(np.zeros(2), np.array([2.0, 1.0])).to_polytope()
    with configure(exact_volume_dim=1, volume_samples=2000):
        estimate = square.volume(rng=0)
    assert not estimate.exact and estimate.stderr > 0
    assert abs(estimate.value - 2.0) < 5 * estimate.stderr


def test_vertices_refused_above_max_vertex_dim():
    with configure(max_vertex_dim=2):
        with pytest.raises(ValueError, match="max_vertex_dim"):
            Box(np.zeros(3), np.ones(3)).to_polytope().vertices()


# --------------------------------------------------------------------- Box

def test_box_basics():
    box = Box([0.0, -1.0], [2.0, 1.0])
    assert box.dim == 2
    assert np.array_equal(box.centre, [1.0, 0.0]) and np.array_equal(box.radius, [1.0, 1.0])
    assert box.volume() == 4.0
    assert box.contains([2.0, 1.0]) and not box.contains([2.1, 0.0])
    X = box.sample(1000)
    assert np.all(box.contains(X)) and np.array_equal(X, box.sample(1000))
    P = box.to_polytope()
    assert np.array_equal(P.contains(X), box.contains(X))
    assert float(P.volume()) == pytest.approx(box.volume())
    lower, upper = box.split(0)
    assert lower == Box([0.0, -1.0], [1.0, 1.0]) and upper == Box([1.0, -1.0], [2.0, 1.0])
    assert lower.volume() + upper.volume() == box.volume()
    with pytest.raises(ValueError):
        box.split(1, at=3.0)


@pytest.mark.parametrize("lo, hi, error, match", [
    ([0.0, 2.0], [1.0, 1.0], EmptyDomainError, r"lo\[1\]"),
    ([0.0, np.nan], [1.0, 1.0], ValueError, "lo"),
    ([0.0, 0.0], [1.0, np.inf], ValueError, "hi"),
    ([0.0], [1.0, 1.0], ShapeError, "shape"),
])
def test_box_refuses_bad_bounds(lo, hi, error, match):
    with pytest.raises(error, match=match):
        Box(lo, hi)


@pytest.mark.parametrize("far", [1e10, 1e17, 1e200])
def test_far_rows_are_handled_exactly(far):
    # x <= far is the only upper bound on x: never redundant, however far; y in [0, 1].
    P = Polytope([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1e-30, 1.0]], [far, 1.0, 0.0, far])
    assert P.dim == 2 and P.kind == "unbounded"
    assert P.chebyshev()[1] == pytest.approx(0.5)
    M = P.minimal()
    assert M.n_ineq == 3
    assert M.contains([far, 0.5]) and not M.contains([far * 1.5, 0.5])


@pytest.mark.parametrize("seed", range(4))
def test_rows_proven_by_rays_are_facets(seed):
    rng = np.random.default_rng(300 + seed)
    d, m = 3 + seed, 60
    P = Polytope(rng.normal(size=(m, d)), rng.uniform(0.5, 2.0, m))
    tol = current().feasibility_tol
    proven = _facets_hit_by_rays(P.A, P.b, P.relative_interior_point(), P.affine_hull().basis, tol)
    assert proven.any()
    for i in np.flatnonzero(proven):  # with row i relaxed, a_i.x exceeds b_i: row i is needed
        relaxed = P.b.copy()
        relaxed[i] += 1.0
        assert solve_lp(P.A[i], A_ub=P.A, b_ub=relaxed, maximize=True).value > P.b[i] + tol
