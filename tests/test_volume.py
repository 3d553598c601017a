"""Vertices and volume: closed forms, an independent brute-force vertex oracle, and Monte Carlo error bars."""

import itertools
import math

import numpy as np
import pytest

from preimage.geometry.volume import estimate_volume, exact_volume, vertices
from preimage.settings import configure, current


def unit_rows(A, b):
    norms = np.linalg.norm(A, axis=1)
    return A / norms[:, None], b / norms


def cube(k, side=1.0):
    """[0, side]^k as (A, b, interior point)."""
    A = np.vstack([np.eye(k), -np.eye(k)])
    return A, np.concatenate([np.full(k, side), np.zeros(k)]), np.full(k, side / 2)


def simplex(k):
    """{x >= 0, sum x <= 1} as (A, b, interior point)."""
    A, b = unit_rows(np.vstack([-np.eye(k), np.ones((1, k))]), np.concatenate([np.zeros(k), [1.0]]))
    return A, b, np.full(k, 1 / (k + 1))


def cross_polytope(k):
    """{|x|_1 <= 1} as (A, b, interior point): one facet per sign vector."""
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=k)))
    return (*unit_rows(signs, np.ones(len(signs))), np.zeros(k))


def chebyshev_simplex(k):
    """The simplex with its Chebyshev ball (centre, radius): x_i = r with (k r - 1) / sqrt(k) = -r."""
    radius = 1 / (k + math.sqrt(k))
    return *simplex(k)[:2], np.full(k, radius), radius


def random_polytope(k, rng):
    """A bounded polytope around the origin: random facets with offsets in [0.5, 1.5], inside [-2, 2]^k."""
    normals = rng.standard_normal((3 * k + 2, k))
    A, b = unit_rows(normals, np.linalg.norm(normals, axis=1) * rng.uniform(0.5, 1.5, len(normals)))
    return np.vstack([A, np.eye(k), -np.eye(k)]), np.concatenate([b, np.full(2 * k, 2.0)]), np.zeros(k)


def brute_force_vertices(A, b):
    """Every basic feasible point: each nonsingular k-subset of rows solved as equalities, if feasible."""
    k = A.shape[1]
    found = []
    for rows in itertools.combinations(range(len(A)), k):
        sub = A[list(rows)]
        if abs(np.linalg.det(sub)) < 1e-10:
            continue
        point = np.linalg.solve(sub, b[list(rows)])
        if np.all(A @ point <= b + 1e-9) and not any(np.allclose(point, seen, atol=1e-8) for seen in found):
            found.append(point)
    return np.array(found)


def assert_same_points(found, expected, atol=1e-8):
    """Order-independent equality of two (v, k) point sets, each point listed once."""
    assert found.shape == expected.shape
    distances = np.linalg.norm(found[:, None, :] - expected[None, :, :], axis=2)
    assert np.all(distances.min(axis=1) <= atol) and np.all(distances.min(axis=0) <= atol)


def rotation(k, rng):
    q, r = np.linalg.qr(rng.standard_normal((k, k)))
    return q * np.sign(np.diag(r))


# ----------------------------------------------------------------------------------------------- vertices

@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_cube_vertices_are_the_corners(k):
    A, b, interior = cube(k)
    assert_same_points(vertices(A, b, interior), np.array(list(itertools.product([0.0, 1.0], repeat=k))))


@pytest.mark.parametrize("k", [1, 2, 3, 4, 6])
def test_simplex_vertices_are_origin_and_unit_vectors(k):
    A, b, interior = simplex(k)
    assert_same_points(vertices(A, b, interior), np.vstack([np.zeros(k), np.eye(k)]))


@pytest.mark.parametrize("extra_row,extra_b", [
    ([1.0, 1.0, 1.0], 5.0),   # touches nothing
    ([1.0, 1.0, 1.0], 3.0),   # touches the cube at the corner (1, 1, 1) only: a degenerate vertex
    ([1.0, 0.0, 0.0], 1.0),   # a facet given twice
], ids=["far", "through-corner", "duplicate-facet"])
def test_redundant_row_changes_nothing(extra_row, extra_b):
    A, b, interior = cube(3)
    extra_A, extra_b = unit_rows(np.array([extra_row]), np.array([extra_b]))
    found = vertices(np.vstack([A, extra_A]), np.concatenate([b, extra_b]), interior)
    assert_same_points(found, np.array(list(itertools.product([0.0, 1.0], repeat=3))))


def test_pyramid_apex_where_four_facets_meet_counted_once():
    normals = np.array([[0.0, 0, -1], [1, 0, 1], [-1, 0, 1], [0, 1, 1], [0, -1, 1]])
    A, b = unit_rows(normals, np.array([0.0, 1, 1, 1, 1]))
    expected = np.array([[-1.0, -1, 0], [1, -1, 0], [-1, 1, 0], [1, 1, 0], [0, 0, 1]])
    assert_same_points(vertices(A, b, np.array([0.0, 0.0, 0.3])), expected)


@pytest.mark.parametrize("k", [4, 5])
def test_cross_polytope_vertices_each_on_many_facets_counted_once(k):
    A, b, interior = cross_polytope(k)
    assert_same_points(vertices(A, b, interior), np.vstack([np.eye(k), -np.eye(k)]))


@pytest.mark.parametrize("seed", range(20))
def test_vertices_agree_with_brute_force(seed):
    rng = np.random.default_rng(seed)
    A, b, interior = random_polytope(2 + seed % 3, rng)
    found = vertices(A, b, interior)
    assert np.all(found @ A.T - b <= current().feasibility_tol)
    assert_same_points(found, brute_force_vertices(A, b), atol=1e-7)


def test_vertices_refused_above_max_vertex_dim():
    A, b, interior = cube(4)
    with configure(max_vertex_dim=3), pytest.raises(ValueError, match="max_vertex_dim"):
        vertices(A, b, interior)


@pytest.mark.parametrize("A,b,interior", [
    (np.array([[-1.0]]), np.array([0.0]), np.array([1.0])),
    (np.array([[-1.0, 0.0], [0.0, -1.0]]), np.zeros(2), np.ones(2)),
    (np.array([[-1.0, 0.0], [0.0, -1.0], [1.0, 0.0]]), np.array([0.0, 0.0, 1.0]), np.array([0.5, 1.0])),
    (-np.eye(3), np.zeros(3), np.ones(3)),
], ids=["ray", "quadrant", "half-strip", "octant"])
def test_unbounded_polytope_raises(A, b, interior):
    with pytest.raises(ValueError, match="unbounded"):
        vertices(A, b, interior)


@pytest.mark.parametrize("point", [[1.0, 0.5], [2.0, 0.5], [0.5, 1e-12]],
                         ids=["on-facet", "outside", "too-close"])
def test_vertices_need_a_strictly_interior_point(point):
    A, b, _ = cube(2)
    with pytest.raises(ValueError, match="strictly inside"):
        vertices(A, b, np.array(point))


# ------------------------------------------------------------------------------------------- exact volume

@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("side", [0.5, 3.0])
def test_cube_volume(k, side):
    assert exact_volume(*cube(k, side)) == pytest.approx(side**k, rel=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
def test_simplex_volume(k):
    assert exact_volume(*simplex(k)) == pytest.approx(1 / math.factorial(k), rel=1e-12)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_rotated_translated_box_volume(k):
    rng = np.random.default_rng(k)
    sides = rng.uniform(0.5, 2.0, k)
    A, b, interior = np.vstack([np.eye(k), -np.eye(k)]), np.concatenate([sides, np.zeros(k)]), sides / 2
    # The box {x : A x <= b} moved to {Q x + t}: A Q^T y <= b + A Q^T t.
    q, shift = rotation(k, rng), rng.uniform(-5, 5, k)
    moved_A = A @ q.T
    moved = exact_volume(moved_A, b + moved_A @ shift, q @ interior + shift)
    assert moved == pytest.approx(np.prod(sides), rel=1e-10)


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_cross_polytope_volume(k):
    assert exact_volume(*cross_polytope(k)) == pytest.approx(2**k / math.factorial(k), rel=1e-12)


def test_point_has_unit_counting_volume():
    assert exact_volume(np.zeros((0, 0)), np.zeros(0), np.zeros(0)) == 1.0


# ------------------------------------------------------------------------------------- Monte Carlo volume

MONTE_CARLO_CASES = {
    "cube8": (*cube(8)[:2], np.full(8, 0.5), 0.5, 1.0),
    "cross8": (*cross_polytope(8)[:2], np.zeros(8), 1 / math.sqrt(8), 2**8 / math.factorial(8)),
    "simplex10": (*chebyshev_simplex(10), 1 / math.factorial(10)),
}


@pytest.mark.parametrize("name", MONTE_CARLO_CASES)
def test_estimate_within_its_error_bars(name):
    A, b, centre, radius, truth = MONTE_CARLO_CASES[name]
    estimate, stderr = estimate_volume(A, b, centre, radius, rng=2026)
    assert stderr > 0
    assert abs(estimate - truth) <= 4 * stderr
    assert abs(estimate - truth) <= 0.15 * truth


def test_standard_error_shrinks_with_more_samples():
    A, b, centre, radius, truth = MONTE_CARLO_CASES["cube8"]
    _, coarse = estimate_volume(A, b, centre, radius, rng=1, samples_per_phase=500)
    _, fine = estimate_volume(A, b, centre, radius, rng=1, samples_per_phase=8000)
    # The error should fall like 1 / sqrt(samples): a factor 4 here.
    assert 0 < fine < 0.5 * coarse


@pytest.mark.parametrize("seed", range(3))
def test_estimate_agrees_with_exact_volume_in_low_dimension(seed):
    rng = np.random.default_rng(100 + seed)
    A, b, _ = random_polytope(3, rng)
    # The rows are unit, so the origin's distances to the facets are the offsets b.
    estimate, stderr = estimate_volume(A, b, np.zeros(3), float(b.min()), rng=seed)
    assert abs(estimate - exact_volume(A, b, np.zeros(3))) <= 4 * stderr


def test_estimate_refuses_a_ball_that_leaves_the_polytope():
    A, b, centre = cube(8)
    with pytest.raises(ValueError, match="not inside"):
        estimate_volume(A, b, centre, 0.6, rng=0)


def test_estimate_refuses_an_unbounded_polytope():
    A, b = -np.eye(3), np.zeros(3)
    with pytest.raises(ValueError, match="unbounded"):
        estimate_volume(A, b, np.ones(3), 0.5, rng=0)


# ---------------------------------------------------------------------------------------------------
# Hulls that qhull builds only centred (6-D, hundreds of near-degenerate vertices)


def _hard_hexa_polytope(seed):
    """A random 6-D polytope on whose uncentred vertices qhull reports a wide merge or a coplanar repartition."""
    rng = np.random.default_rng(seed)
    m = int(rng.integers(10, 60))
    A, b = rng.standard_normal((m, 6)), rng.uniform(0.5, 2, m)
    centre = rng.standard_normal(6) * 10 ** rng.uniform(0, 5)
    return A, b + A @ centre, centre


@pytest.mark.parametrize("seed", [194, 348])
def test_six_dimensional_hull_built_centred_agrees_with_rejection_sampling(seed):
    from preimage import Polytope

    A, b, centre = _hard_hexa_polytope(seed)
    found = Polytope(A, b).volume()
    assert found.exact
    # Independent: uniform points in the vertices' bounding box, the fraction inside times its volume.
    points = vertices(*unit_rows(A, b), centre)
    lo, hi = points.min(axis=0), points.max(axis=0)
    rng = np.random.default_rng(seed)
    draws = lo + (hi - lo) * rng.random((400_000, 6))
    inside = np.mean(np.all(draws @ A.T <= b, axis=1))
    box = float(np.prod(hi - lo))
    stderr = box * math.sqrt(inside * (1 - inside) / len(draws))
    assert abs(found.value - box * inside) <= 4 * stderr


def test_volume_falls_back_to_the_estimate_when_no_hull_can_be_built(monkeypatch):
    from scipy.spatial import QhullError

    from preimage import Polytope
    from preimage.geometry import volume

    def refuse(*args, **kwargs):
        raise QhullError("QH6271 qhull topology error (qh_check_dupridge): wide merge")

    monkeypatch.setattr(volume, "ConvexHull", refuse)
    A, b, _ = cube(3, 2.0)
    with pytest.raises(volume.HullError, match="8 vertices in dimension 3 .*defaults: QH6271.*Qt: QH6271"):
        exact_volume(A, b, np.ones(3))
    found = Polytope(A, b).volume(rng=1)
    assert not found.exact and found.stderr > 0
    assert abs(found.value - 8.0) <= 4 * found.stderr
