"""Layer preimages: membership, sampling, classification against independent oracles, cone form."""

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

import preimage as pim
from preimage.geometry import Box, Polytope, is_omnidirectional
from preimage.network import IDENTITY, RELU, AffineMap, Layer, leaky_relu
from preimage.preimages import layer_preimage, layer_preimages, singleton_test

SHAPES = {"square": (4, 4), "wide": (3, 6), "tall": (9, 3), "tall-2d": (7, 2)}


def relu_layer(W, b, activation=RELU):
    return Layer(AffineMap(np.asarray(W, float), np.asarray(b, float)), activation, "layer")


def rank_deficient_layer(rng, m=6, d=4, r=2):
    W = rng.standard_normal((m, r)) @ rng.standard_normal((r, d))
    return relu_layer(W, rng.standard_normal(m))


def maps_to(layer, X, y, tol=1e-7):
    return np.all(np.abs(layer(np.atleast_2d(X)) - y) <= tol * (1 + np.abs(y)))


def layers_under_test(rng):
    for name, (m, d) in SHAPES.items():
        yield name, relu_layer(rng.standard_normal((m, d)), rng.standard_normal(m))
    yield "rank-deficient", rank_deficient_layer(rng)


# ---------------------------------------------------------------------------------------------------
# An independent oracle: per-row LPs with scipy's linprog (the textbook method), no code shared.
def oracle_kind_dim(E, f, A, b, d, big=1e4):
    bounds = [(None, None)] * d
    kw = dict(A_ub=A if len(A) else None, b_ub=b if len(A) else None,
              A_eq=E if len(E) else None, b_eq=f if len(E) else None, bounds=bounds, method="highs")
    feasible = linprog(np.zeros(d), **kw)
    if feasible.status == 2:
        return "empty", -1
    assert feasible.status == 0
    implicit = []
    for i in range(len(A)):
        res = linprog(A[i], **kw)  # minimise a_i.x: row i is implicit iff min = max = b_i
        if res.status == 0 and res.fun >= b[i] - 1e-7:
            implicit.append(i)
    M = np.vstack([E, A[implicit]]) if len(E) or implicit else np.zeros((0, d))
    dim = d - (np.linalg.matrix_rank(M, tol=1e-9) if len(M) else 0)
    extent = []
    for j in range(d):
        for sign in (1, -1):
            c = np.zeros(d)
            c[j] = -sign
            res = linprog(c, **{**kw, "bounds": [(-big, big)] * d})
            extent.append(-res.fun)
    bounded = max(extent) < big / 2
    if dim == 0:
        return "point", 0
    return ("bounded" if bounded else "unbounded"), dim


def system(layer, y):
    act = y > 0
    W = layer.affine.dense()
    return W[act], y[act] - layer.b[act], W[~act], -layer.b[~act]


# ---------------------------------------------------------------------------------------------------
def test_input_lies_in_its_own_layer_preimage(rng):
    for name, layer in layers_under_test(rng):
        X = rng.standard_normal((20, layer.in_features))
        for x, pre in zip(X, layer_preimages(layer, X)):
            assert pre.contains(x), name
            assert pre.kind != "empty", name
            assert pre.polytope.contains(pre.point())


def test_sampled_points_map_to_the_activity(rng):
    for name, layer in layers_under_test(rng):
        x = rng.standard_normal(layer.in_features)
        pre = layer_preimage(layer, layer(x[None])[0], witness=x)
        window = Box(x - 2.0, x + 2.0)
        region = pre.polytope.intersect(window.to_polytope())
        samples = region.sample(200, rng=np.random.default_rng(1))
        assert samples.shape == (200, layer.in_features)
        assert maps_to(layer, samples, pre.y), name
        if pre.dim > 0:
            assert np.ptp(samples, axis=0).max() > 1e-3, name


@pytest.mark.parametrize("seed", range(12))
def test_classification_agrees_with_the_oracle_on_small_layers(seed):
    rng = np.random.default_rng(seed)
    m, d = rng.integers(2, 7), rng.integers(1, 4)
    W = rng.integers(-2, 3, size=(m, d)).astype(float)
    b = rng.integers(-2, 3, size=m).astype(float)
    layer = relu_layer(W, b)
    X = rng.integers(-2, 3, size=(6, d)).astype(float)  # integer points make tight rows common
    for x in X:
        y = layer(x[None])[0]
        expected = oracle_kind_dim(*system(layer, y), d)
        with_witness = layer_preimage(layer, y, witness=x)
        by_lp = layer_preimage(layer, y)
        assert (with_witness.kind, with_witness.dim) == expected
        assert (by_lp.kind, by_lp.dim) == expected
        assert singleton_test(layer, x).singleton == (expected[0] == "point")


def test_brute_force_classification_on_tiny_layers():
    # every 2x2 layer with weights in {-1, 0, 1}, bias 0, at the point 0 (every unit tight)
    for entries in itertools.product([-1.0, 0.0, 1.0], repeat=4):
        W = np.array(entries).reshape(2, 2)
        layer = relu_layer(W, np.zeros(2))
        pre = layer_preimage(layer, np.zeros(2), witness=np.zeros(2))
        assert (pre.kind, pre.dim) == oracle_kind_dim(*system(layer, np.zeros(2)), 2), entries


def test_infeasible_activity_is_empty(rng):
    layer = relu_layer(rng.standard_normal((8, 3)), rng.standard_normal(8))
    pre = layer_preimage(layer, np.abs(rng.standard_normal(8)) + 0.5)
    assert pre.kind == "empty" and pre.dim == -1
    assert pim.Polytope is Polytope and pre.polytope.is_empty()
    negative = layer_preimage(layer, -np.ones(8))
    assert negative.kind == "empty"


def test_singleton_by_omnidirectional_tight_rows():
    # three inactive units tight at 0 whose rows positively span the plane: the preimage of 0 is {0}
    W = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    layer = relu_layer(W, np.zeros(3))
    test = singleton_test(layer, np.zeros(2))
    assert test.singleton and test.omnidirectional and test.active_rank == 0
    assert layer_preimage(layer, np.zeros(3)).kind == "point"
    assert is_omnidirectional(W)
    # drop one row: a cone
    layer2 = relu_layer(W[:2], np.zeros(2))
    assert not singleton_test(layer2, np.zeros(2)).singleton
    assert layer_preimage(layer2, np.zeros(2)).kind == "unbounded"


def test_singleton_with_active_rows_and_tight_rows():
    # R^3: one active unit fixes x3; tight rows in the plane x3 = const are omnidirectional there
    W = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, -1.0, 0.0], [5.0, 5.0, 0.0]])
    b = np.array([0.0, 0.0, 0.0, 0.0, -1.0])
    layer = relu_layer(W, b)
    x = np.array([0.0, 0.0, 2.0])
    test = singleton_test(layer, x)
    assert test.singleton and test.active_rank == 1 and test.nullity == 2
    assert sorted(test.tight.tolist()) == [1, 2, 3]
    assert layer_preimage(layer, layer(x[None])[0]).kind == "point"


@pytest.mark.parametrize("seed", range(5))
def test_cone_form_and_h_form_are_the_same_set(seed):
    rng = np.random.default_rng(seed)
    d = 3
    layer = relu_layer(rng.standard_normal((d, d)), rng.standard_normal(d))
    x = rng.standard_normal(d)
    y = layer(x[None])[0]
    y[rng.integers(d)] = 0.0  # at least one inactive unit
    pre = layer_preimage(layer, y)
    cone = pre.cone_form
    assert cone is not None
    W = layer.affine.dense()
    assert np.allclose(W @ cone.basis, np.eye(d))
    # generator form -> H-form
    t = rng.exponential(size=(50, cone.inactive.size))
    points = cone.points(t)
    assert pre.contains(points).all() and maps_to(layer, points, y)
    # H-form -> generator form: coefficients are non-negative and rebuild the point
    region = pre.polytope.intersect(Box(cone.apex - 5, cone.apex + 5).to_polytope())
    samples = region.sample(100, rng=np.random.default_rng(seed))
    coef = cone.coefficients(samples, W)
    assert np.all(coef >= -1e-9)
    assert np.allclose(cone.points(coef), samples, atol=1e-9)
    assert pre.dim == cone.inactive.size
    assert pre.kind == ("point" if cone.inactive.size == 0 else "unbounded")


def test_cone_form_only_for_square_invertible(rng):
    assert layer_preimage(relu_layer(rng.standard_normal((3, 2)), np.zeros(3)), np.ones(3)).cone_form is None
    singular = relu_layer(np.array([[1.0, 2.0], [2.0, 4.0]]), np.zeros(2))
    assert layer_preimage(singular, np.zeros(2)).cone_form is None


@pytest.mark.parametrize("activation", [leaky_relu(0.2), IDENTITY])
def test_invertible_activations_give_affine_sets(rng, activation):
    layer = Layer(AffineMap(rng.standard_normal((2, 4)), rng.standard_normal(2)), activation, "leaky")
    x = rng.standard_normal(4)
    y = layer(x[None])[0]
    for pre in (layer_preimage(layer, y, witness=x), layer_preimage(layer, y)):
        assert pre.kind == "unbounded" and pre.dim == 2
        assert pre.contains(x)
    square = Layer(AffineMap(rng.standard_normal((3, 3))), activation, "sq")
    x = rng.standard_normal(3)
    pre = layer_preimage(square, square(x[None])[0])
    assert pre.kind == "point" and np.allclose(pre.point(), x)


def test_bounded_preimage(rng):
    # inactive rows omnidirectional around a 2-D null space: a bounded polygon
    W = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, -1.0, 0.0]])
    b = np.array([0.0, -1.0, -1.0, -1.0])
    layer = relu_layer(W, b)
    x = np.array([0.0, 0.0, 3.0])
    pre = layer_preimage(layer, layer(x[None])[0], witness=x)
    assert (pre.kind, pre.dim) == ("bounded", 2)
    assert (layer_preimage(layer, pre.y).kind, layer_preimage(layer, pre.y).dim) == ("bounded", 2)
    samples = pre.polytope.sample(300, rng=np.random.default_rng(0))
    assert maps_to(layer, samples, pre.y)


def test_bad_activity_and_witness(rng):
    layer = relu_layer(rng.standard_normal((3, 2)), np.zeros(3))
    with pytest.raises(pim.ShapeError, match="3 units"):
        layer_preimage(layer, np.ones(4))
    with pytest.raises(pim.ShapeError, match="NaN"):
        layer_preimage(layer, np.array([1.0, np.nan, 0.0]))
    x = rng.standard_normal(2)
    with pytest.raises(ValueError, match="witness"):
        layer_preimage(layer, layer(x[None])[0] + 1.0, witness=x)


def test_classify_layer_matches_one_at_a_time(rng):
    for name, layer in layers_under_test(rng):
        X = rng.standard_normal((15, layer.in_features))
        result = pim.classify_layer(layer, X, workers=2)
        expected = [(p.kind, p.dim) for p in layer_preimages(layer, X)]
        assert list(zip(result.kind, result.dim)) == expected, name
        assert np.array_equal(result.active, (layer.preactivation(X) > 0).sum(axis=1))
        assert sum(result.counts().values()) == 15


def test_short_rows_are_judged_like_long_ones():
    # W = [[1e-6], [-1e-6]], b = [0, -1e-10]: the preimage of y = 0 is the interval [-1e-4, 0].
    layer = Layer(AffineMap(np.array([[1e-6], [-1e-6]]), np.array([0.0, -1e-10])), RELU)
    truth = layer_preimage(layer, np.zeros(2))
    assert truth.kind == "bounded" and truth.dim == 1
    with_witness = pim.LayerPreimage(layer, np.zeros(2), witness=np.array([-0.5e-4]))
    assert with_witness.kind == "bounded" and with_witness.dim == 1
    assert pim.classify_layer(layer, np.array([[-0.5e-4]])).kind[0] == "bounded"
    assert not singleton_test(layer, np.array([-0.5e-4])).singleton


def test_a_row_much_shorter_than_the_others_still_bounds():
    # W = [[1], [-1e-11]], b = [-1, -1e-11]: y = 0 holds on [-1, 1] (bounded), witness or not.
    layer = Layer(AffineMap(np.array([[1.0], [-1e-11]]), np.array([-1.0, -1e-11])), RELU)
    assert layer_preimage(layer, np.zeros(2)).kind == "bounded"
    assert pim.LayerPreimage(layer, np.zeros(2), witness=np.array([0.0])).kind == "bounded"
    assert is_omnidirectional(np.array([[1.0], [-1e-11]]))
