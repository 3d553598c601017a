"""A set means the same far from the origin, at any scale and with rows of any size (adversarial cases)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from preimage import Polytope
from preimage.settings import current


def _rotation(rng, d):
    return scipy.stats.special_ortho_group.rvs(d, random_state=rng)


def _cut_cube(Q, centre, cut=0.3):
    """The rotated unit cube around ``centre`` with ``Q[0].(x - c) = cut`` written as two inequalities."""
    A = np.vstack([Q, -Q, Q[:1], -Q[:1]])
    b = np.concatenate([Q @ centre + 0.5, -(Q @ centre) + 0.5, [Q[0] @ centre + cut], [-(Q[0] @ centre) - cut]])
    return Polytope(A, b)


@pytest.mark.parametrize("offset", [0.0, 1e6, 1e7, 1e9])
def test_cut_cube_far_from_the_origin_is_two_dimensional(offset):
    rng = np.random.default_rng(7)
    for _ in range(40 if offset == 1e7 else 10):
        Q = _rotation(rng, 3)
        centre = offset * rng.uniform(0.5, 1.0, size=3)
        P = _cut_cube(Q, centre)
        assert P.dim == 2
        assert not P.is_empty()
        # The cut of a unit cube through its centre region: a square of area 1 seen in its own plane.
        assert P.volume(relative=True).value == pytest.approx(1.0, rel=1e-6)
        V = P.vertices()
        assert len(V) == 4 and np.all(P.contains(V))
        X = P.sample(50, rng=1)
        assert np.all(P.contains(X))


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1.0, 1e4, 1e8])
def test_facts_are_invariant_under_scaling(scale):
    rng = np.random.default_rng(3)
    Q = _rotation(rng, 3)
    full = Polytope(np.vstack([Q, -Q]), scale * np.full(6, 0.5))
    assert full.dim == 3 and full.kind == "bounded"
    assert full.volume().value == pytest.approx(scale ** 3, rel=1e-9)
    assert full.chebyshev()[1] == pytest.approx(0.5 * scale, rel=1e-9)
    assert full.minimal().n_ineq == 6
    cut = _cut_cube(Q, np.zeros(3))
    flat = Polytope(cut.A, cut.b * scale)
    assert flat.dim == 2
    assert flat.volume(relative=True).value == pytest.approx(scale ** 2, rel=1e-6)


@pytest.mark.parametrize("width", [1.6e-9, 1.8e-9, 2e-9, 5e-10, 3e-9])
def test_thin_slabs_dimension_and_interior_agree(width):
    # A slab 0 <= x_0 <= width in a unit square: whatever dimension it is given, its facts follow.
    P = Polytope([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], [width, 0.0, 1.0, 0.0])
    if P.dim == 2:
        assert P.volume().value == pytest.approx(width, rel=1e-6)
        assert np.all(P.contains(P.sample(20, rng=0)))
        assert len(P.vertices()) == 4
    else:
        assert P.dim == 1
        assert P.volume(relative=True).value == pytest.approx(1.0, rel=1e-6)
        assert np.all(P.contains(P.sample(20, rng=0)))


@pytest.mark.parametrize("size", [1e-170, 1e-30, 1.0, 1e30, 1e160])
def test_rows_of_any_size_keep_the_set(size):
    box = Polytope(size * np.vstack([np.eye(2), -np.eye(2)]), size * np.ones(4))
    assert box.kind == "bounded" and box.n_ineq == 4
    assert box.volume().value == pytest.approx(4.0)
    half = Polytope([[size]], [-size])  # x <= -1
    assert not half.contains([0.0]) and half.contains([-1.0])


def test_overflowing_row_is_refused():
    with pytest.raises(ValueError, match="overflows"):
        Polytope([[1e-300, 0.0]], [1e300])
    with pytest.raises(ValueError, match="overflows"):
        Polytope([[1.0, 0.0]], [0.0], E=[[1e-300, 0.0]], f=[1e300])


def test_complex_data_is_refused():
    with pytest.raises(ValueError, match="complex"):
        Polytope(np.array([[1.0 + 1e-3j]]), [1.0])
    with pytest.raises(ValueError, match="complex"):
        Polytope([[1.0]], np.array([1.0 + 0j]))


@pytest.mark.parametrize("n", [2.7, "3", None, True])
def test_sample_count_must_be_whole(n):
    P = Polytope(np.vstack([np.eye(2), -np.eye(2)]), np.ones(4))
    with pytest.raises((ValueError, TypeError)):
        P.sample(n)


def test_sample_count_accepts_whole_floats_and_numpy_ints():
    P = Polytope(np.vstack([np.eye(2), -np.eye(2)]), np.ones(4))
    assert P.sample(3.0).shape == (3, 2)
    assert P.sample(np.int64(4)).shape == (4, 2)


def test_vertices_far_away_are_contained():
    rng = np.random.default_rng(11)
    misses = 0
    for _ in range(30):
        Q = _rotation(rng, 3)
        centre = 1e9 * rng.uniform(0.5, 1.0, size=3)
        P = Polytope(np.vstack([Q, -Q]), np.concatenate([Q @ centre + 0.5, -(Q @ centre) + 0.5]))
        misses += int(np.sum(~P.contains(P.vertices())))
    assert misses == 0


def test_contains_still_rejects_points_clearly_outside():
    P = Polytope(np.vstack([np.eye(2), -np.eye(2)]), np.concatenate([np.full(2, 1e7 + 1), np.full(2, -(1e7 - 1))]))
    assert P.contains([1e7, 1e7])
    assert not P.contains([1e7 + 1 + 1e-6, 1e7])
    assert not P.contains([1e7 + 1 + current().feasibility_tol * 1e3, 1e7])


def test_infeasible_random_systems_are_empty_without_solver_error():
    rng = np.random.default_rng(5)
    for _ in range(40):
        P = Polytope(rng.standard_normal((60, 20)), rng.standard_normal(60))
        assert P.kind in ("empty", "bounded", "unbounded")


def test_rotated_high_dimensional_cube_missing_a_facet_is_unbounded():
    rng = np.random.default_rng(2)
    Q = _rotation(rng, 200)
    A = np.vstack([Q, -Q[:-1]])
    P = Polytope(A, np.ones(A.shape[0]))
    assert not P.is_bounded()
    assert Polytope(np.vstack([Q, -Q]), np.ones(400)).is_bounded()


def test_layer_activities_of_zero_are_decided():
    # y = 0 at a wide random layer: {W x + b <= 0} is often empty; each answer is a proof, never an error.
    from preimage.network import RELU, AffineMap, Layer
    from preimage.preimages import layer_preimage
    rng = np.random.default_rng(13)
    kinds = set()
    for _ in range(30):
        layer = Layer(AffineMap(rng.standard_normal((80, 30)), rng.standard_normal(80)), RELU)
        kinds.add(layer_preimage(layer, np.zeros(80)).kind)
    assert "empty" in kinds
