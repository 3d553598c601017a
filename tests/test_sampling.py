"""Hit-and-run: every point inside, and the uniform distribution's moments and marginals recovered."""

import math

import numpy as np
import pytest
from scipy.stats import chi2

from preimage.errors import ShapeError
from preimage.geometry.sampling import check_halfspaces, hit_and_run, hit_and_run_chains
from preimage.settings import current


def cube(k, side=1.0):
    """[0, side]^k as (A, b)."""
    return np.vstack([np.eye(k), -np.eye(k)]), np.concatenate([np.full(k, side), np.zeros(k)])


def simplex(k):
    """{x >= 0, sum x <= 1} as (A, b) with unit rows."""
    return (np.vstack([-np.eye(k), np.full((1, k), 1 / math.sqrt(k))]),
            np.concatenate([np.zeros(k), [1 / math.sqrt(k)]]))


def uniform_moments(name, k):
    """(A, b, interior point, mean (k,), covariance (k, k)) of the uniform law on a named body."""
    if name == "cube":
        return (*cube(k), np.full(k, 0.5), np.full(k, 0.5), np.eye(k) / 12)
    # The uniform law on the simplex is Dirichlet(1, ..., 1) on k + 1 parts.
    scale = 1 / ((k + 1) ** 2 * (k + 2))
    return (*simplex(k), np.full(k, 1 / (2 * k + 2)), np.full(k, 1 / (k + 1)),
            scale * ((k + 1) * np.eye(k) - np.ones((k, k))))


def chain_z_scores(statistic):
    """z-scores of the means of a (draws, chains, s) statistic against 0, by batch means over chains."""
    chain_means = statistic.mean(axis=0)
    return chain_means.mean(axis=0) / (chain_means.std(axis=0, ddof=1) / math.sqrt(chain_means.shape[0]))


def assert_inside(A, b, points):
    assert points.shape[1] == A.shape[1]
    assert np.all(points @ A.T - b <= current().feasibility_tol)


@pytest.mark.parametrize("name,k", [("cube", 1), ("cube", 2), ("cube", 3), ("simplex", 2), ("simplex", 3)])
def test_mean_and_covariance_match_the_uniform_law(name, k):
    A, b, start, mean, covariance = uniform_moments(name, k)
    walks = hit_and_run_chains(A, b, start, draws=40, chains=128, rng=k)
    assert_inside(A, b, walks.reshape(-1, k))
    centred = walks - mean
    rows, cols = np.triu_indices(k)
    second_moments = centred[..., rows] * centred[..., cols] - covariance[rows, cols]
    statistic = np.concatenate([centred, second_moments], axis=-1)
    assert np.all(np.abs(chain_z_scores(statistic)) < 4.5)


@pytest.mark.parametrize("k", [2, 4])
def test_thin_long_box_mixes_along_its_length(k):
    """A 1000 x 1 x ... box, turned at random, chains starting at one end: the default burn-in does."""
    rng = np.random.default_rng(k)
    q = np.linalg.qr(rng.standard_normal((k, k)))[0]
    A, b = cube(k)
    b = b.copy()
    b[0] = 1000.0
    start = np.full(k, 0.5)
    start[0] = 1.0
    points = hit_and_run(A @ q.T, b, q @ start, 8000, rng=7)
    assert_inside(A @ q.T, b, points)
    length = (points @ q)[:, 0]
    assert abs(length.mean() - 500.0) < 25.0
    assert abs(length.var() / (1000.0**2 / 12) - 1.0) < 0.1
    deciles = np.histogram(length, bins=10, range=(0, 1000))[0] / len(points)
    assert np.all(np.abs(deciles - 0.1) < 0.025)


def test_sharp_wedge_keeps_every_point_inside():
    angle = 1e-4
    A = np.array([[-math.sin(angle), math.cos(angle)], [-math.sin(angle), -math.cos(angle)], [1.0, 0.0]])
    b = np.array([0.0, 0.0, 1.0])
    points = hit_and_run(A, b, np.array([0.5, 0.0]), 20000, rng=1)
    assert_inside(A, b, points)
    # The law of x on the wedge has density 2 x.
    assert abs(points[:, 0].mean() - 2 / 3) < 0.01


def test_triangle_marginal_matches_density():
    A, b = simplex(2)
    points = hit_and_run(A, b, np.array([0.25, 0.25]), 20000, rng=3)
    assert_inside(A, b, points)
    edges = np.linspace(0.0, 1.0, 11)
    cdf = 1.0 - (1.0 - edges) ** 2  # of the density 2 (1 - x)
    observed = np.histogram(points[:, 0], bins=edges)[0]
    expected = len(points) * np.diff(cdf)
    statistic = np.sum((observed - expected) ** 2 / expected)
    # Generous: the thinned chain points are nearly, not exactly, independent.
    assert statistic < 2 * chi2.ppf(0.999, df=len(observed) - 1)


@pytest.mark.parametrize("k", [2, 3])
def test_ball_restriction_is_uniform_in_the_ball(k):
    A, b = cube(k, side=10.0)
    centre = np.full(k, 5.0)
    points = hit_and_run(A, b, centre, 6000, rng=11, ball=(centre, 2.0))
    squared = np.sum((points - centre) ** 2, axis=1) / 4.0
    assert np.all(squared <= 1.0)
    # |w - centre|^2 / r^2 of a uniform point of a k-ball has mean k / (k + 2).
    assert abs(squared.mean() - k / (k + 2)) < 0.02


def test_ball_cut_by_facets_stays_in_both():
    A, b = cube(3)
    points = hit_and_run(A, b, np.full(3, 0.1), 3000, rng=5, ball=(np.zeros(3), 0.8))
    assert_inside(A, b, points)
    assert np.all(np.linalg.norm(points, axis=1) <= 0.8)


@pytest.mark.parametrize("A,b,start", [
    (np.array([[-1.0, 0.0], [0.0, -1.0]]), np.zeros(2), np.ones(2)),
    (np.array([[1.0, 0.0]]), np.ones(1), np.zeros(2)),
    (-np.eye(3), np.zeros(3), np.ones(3)),
], ids=["quadrant", "halfplane", "octant"])
def test_unbounded_polytope_raises(A, b, start):
    with pytest.raises(ValueError, match="unbounded"):
        hit_and_run(A, b, start, 10, rng=0)


@pytest.mark.parametrize("start,ball", [
    (np.array([0.0, 0.5]), None),
    (np.array([1.5, 0.5]), None),
    (np.array([0.5, 1.0 - 1e-12]), None),
    (np.array([0.9, 0.9]), (np.full(2, 0.5), 0.3)),
], ids=["on-facet", "outside", "within-interior-tol", "outside-ball"])
def test_start_not_strictly_inside_raises(start, ball):
    A, b = cube(2)
    with pytest.raises(ValueError, match="strictly inside"):
        hit_and_run(A, b, start, 10, rng=0, ball=ball)


@pytest.mark.parametrize("A,b,error,message", [
    (2 * np.eye(2), np.ones(2), ValueError, "unit norm"),
    (np.eye(2), np.ones(3), ShapeError, "shape"),
    (np.eye(2)[0], np.ones(1), ShapeError, "shape"),
    (np.eye(2), np.array([1.0, np.nan]), ValueError, "NaN"),
], ids=["not-unit", "b-length", "A-vector", "nan"])
def test_bad_halfspaces_are_refused(A, b, error, message):
    with pytest.raises(error, match=message):
        check_halfspaces(A, b)
    with pytest.raises(error, match=message):
        hit_and_run(A, b, np.zeros(2), 5, rng=0)


@pytest.mark.parametrize("n", [0, 1, 5, 300])
def test_shapes_and_seeding(n):
    A, b = cube(3)
    first = hit_and_run(A, b, np.full(3, 0.5), n, rng=42)
    assert first.shape == (n, 3) and first.dtype == np.float64
    np.testing.assert_array_equal(first, hit_and_run(A, b, np.full(3, 0.5), n, rng=np.random.default_rng(42)))


def test_dimension_zero_gives_empty_vectors():
    points = hit_and_run(np.zeros((0, 0)), np.zeros(0), np.zeros(0), 4, rng=0)
    assert points.shape == (4, 0)


def test_chains_keep_their_own_starts():
    A, b = cube(2)
    starts = np.array([[0.1, 0.1], [0.9, 0.9], [0.5, 0.2]])
    walks = hit_and_run_chains(A, b, starts, draws=2, chains=3, rng=0, burn_in=0, thin=1)
    assert walks.shape == (2, 3, 2)
    assert_inside(A, b, walks.reshape(-1, 2))
