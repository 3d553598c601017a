"""Hit-and-run: every point inside, the uniform distribution's moments and marginals recovered up to 50-D,
and the effective sample size."""

import math

import numpy as np
import pytest
from scipy.signal import lfilter
from scipy.stats import beta, chi2, kstest

from preimage.errors import ShapeError
from preimage.geometry.sampling import (check_halfspaces, effective_sample_size, hit_and_run, hit_and_run_chains,
                                        walk_length)
from preimage.geometry.volume import estimate_volume
from preimage.settings import configure, current


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


# ------------------------------------------------------------------- walk length and mixing in high dimension

def chebyshev_simplex(k):
    """The simplex of :func:`simplex` and its Chebyshev centre: x_i = r with (1 - k r) / sqrt(k) = r."""
    return (*simplex(k), np.full(k, 1 / (k + math.sqrt(k))))


def rotated_box(k, aspect, seed):
    """A box of sides from 1 to ``aspect`` (geometric), turned at random: (A, b, rotation q, sides).

    The polytope is ``{x : 0 <= (q.T x)_j <= sides_j}``; its Chebyshev centre ``q @ 0.5`` sits at one
    end of every long side, so the walk has to round the box and travel along it.
    """
    q = np.linalg.qr(np.random.default_rng(seed).standard_normal((k, k)))[0]
    sides = np.geomspace(1.0, aspect, k)
    A, b = cube(k)
    return A @ q.T, np.concatenate([sides, np.zeros(k)]), q, sides


@pytest.mark.parametrize("k", [1, 5, 15, 30, 50])
def test_walk_length_grows_with_the_dimension(k):
    burn_in, thin = walk_length(k)
    assert burn_in == max(200, 2 * k * k) and thin == max(10, 2 * k)
    with configure(hit_and_run_burn_in=7, hit_and_run_thin=3):
        assert walk_length(k) == (7, 3)


@pytest.mark.parametrize("k", [5, 15, 30, 50])
def test_simplex_sum_follows_beta_law(k):
    """On the simplex, sum(x) of a uniform point is Beta(k, 1); the default walk gets there from the centre."""
    A, b, centre = chebyshev_simplex(k)
    points = hit_and_run(A, b, centre, 256, rng=k, chains=128)
    assert_inside(A, b, points)
    assert kstest(points.sum(axis=1), beta(k, 1).cdf).pvalue > 1e-3


@pytest.mark.parametrize("k", [5, 20, 50])
def test_rotated_thin_box_coordinates_are_uniform(k):
    """Every coordinate of a uniform point of a box, turned back, is uniform along its side."""
    A, b, q, sides = rotated_box(k, aspect=10.0, seed=k)
    points = hit_and_run(A, b, q @ np.full(k, 0.5), 256, rng=k, chains=128)
    assert_inside(A, b, points)
    unit = (points @ q) / sides
    for j in (0, k // 2, k - 1):  # the shortest, a middle and the longest side
        assert kstest(unit[:, j], "uniform").pvalue > 1e-3


@pytest.mark.parametrize("draws,chains", [(8, 256), (1000, 4)])
def test_effective_sample_size_of_independent_draws_is_their_number(draws, chains):
    samples = np.random.default_rng(draws).standard_normal((draws, chains, 3))
    ess = effective_sample_size(samples)
    assert ess.shape == (3,)
    assert np.all(np.abs(ess / (draws * chains) - 1.0) < 0.25)


def test_effective_sample_size_of_an_autocorrelated_chain():
    """AR(1) with coefficient phi: the size is n (1 - phi) / (1 + phi), here a tenth of n and less."""
    phi, draws, chains = 0.9, 2000, 4
    noise = np.random.default_rng(3).standard_normal((draws + 200, chains))
    series = lfilter([1.0], [1.0, -phi], noise, axis=0)[200:]  # 200 steps forget the zero start
    expected = draws * chains * (1 - phi) / (1 + phi)
    ess = effective_sample_size(series)
    assert 0.7 * expected < ess < 1.4 * expected
    assert ess < 0.2 * effective_sample_size(noise[200:])


def test_effective_sample_size_edge_cases():
    assert effective_sample_size(np.random.default_rng(0).standard_normal((1, 50))) == 50.0
    assert np.isnan(effective_sample_size(np.ones((10, 3, 2)))).all()
    with pytest.raises(ShapeError):
        effective_sample_size(np.zeros(10))
    with pytest.raises(ValueError, match="at least 2"):
        effective_sample_size(np.zeros((1, 1)))
    with pytest.raises(ValueError, match="NaN"):
        effective_sample_size(np.array([[0.0, np.nan], [1.0, 2.0]]))


def test_chains_have_the_effective_size_of_their_number_on_the_simplex():
    """Thinned points of the default walk are nearly independent in sum(x), the slowest statistic
    of the start's offset; the chains themselves are independent."""
    A, b, centre = chebyshev_simplex(15)
    walks = hit_and_run_chains(A, b, centre, draws=8, chains=128, rng=2)
    assert effective_sample_size(walks.sum(axis=2)) > 0.5 * walks.shape[0] * walks.shape[1]
    assert np.all(effective_sample_size(walks) >= 0.9 * walks.shape[1])


def test_twenty_dimensional_simplex_volume_within_its_error_bars():
    """The volume estimator walks by the same rule; a short run (64 chains, 256 points a phase)."""
    k = 20
    A, b, centre = chebyshev_simplex(k)
    with configure(hit_and_run_chains=64):
        estimate, stderr = estimate_volume(A, b, centre, float(centre[0]), rng=20, samples_per_phase=256)
    truth = 1 / math.factorial(k)
    assert 0 < stderr < 0.25 * truth
    assert abs(estimate - truth) <= 3 * stderr
