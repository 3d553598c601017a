"""Targets and their compilation: own activity/pattern satisfy their target, rows agree with direct evaluation."""

import numpy as np
import pytest

import preimage as pim
from preimage.errors import ModelError, ShapeError
from preimage.network import IDENTITY, RELU, AffineMap, Layer, Network, leaky_relu
from preimage.preimages.targets import (
    Activity, AnyOf, ArgMax, Conjunction, InputPolytope, NeuronRange, OutputPolytope, Pattern, compile_target,
    satisfies,
)


def random_mlp(rng, sizes, activation=RELU, last=IDENTITY):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        act = last if i == len(sizes) - 2 else activation
        layers.append(Layer(AffineMap(rng.standard_normal((b, a)), rng.standard_normal(b)), act, f"fc{i}"))
    return Network(layers)


@pytest.fixture
def net(rng):
    return random_mlp(rng, [3, 6, 5, 4])


def inside(target, net, X):
    return satisfies(compile_target(target, net), net, X)


@pytest.mark.parametrize("activation, last", [(RELU, IDENTITY), (leaky_relu(0.1), IDENTITY), (RELU, RELU)])
def test_a_point_satisfies_its_own_activity_at_every_layer(rng, activation, last):
    net = random_mlp(rng, [3, 6, 5, 4], activation, last)
    X = rng.standard_normal((20, 3))
    activities = net.activations(X)
    for layer in range(len(net.layers)):
        for x, y in zip(X, activities[layer]):
            assert inside(Activity(layer, y), net, x)
            assert inside(Activity(layer - len(net.layers), y), net, x)


def test_other_points_miss_an_activity(rng, net):
    X = rng.standard_normal((50, 3))
    y = net.activations(X[:1])[0][0]
    hits = inside(Activity(0, y), net, X)
    same = np.all(net.activations(X)[0] == y, axis=1)
    assert hits[0] and np.array_equal(hits[1:], same[1:])


def test_output_activity_compiles_to_output_equalities(rng, net):
    y = net.forward(rng.standard_normal(3))
    (c,) = compile_target(Activity(-1, y), net)
    assert c.layer_rows == () and c.output_E.shape == (4, 4) and np.array_equal(c.output_f, y)


def test_negative_relu_activity_is_an_empty_conjunction(rng, net):
    y = np.abs(rng.standard_normal(6))
    y[2] = -0.5
    (c,) = compile_target(Activity(0, y), net)
    assert c.trivially_empty
    assert not np.any(satisfies(c, net, rng.standard_normal((100, 3))))


def test_activity_on_a_non_injective_activation_is_refused(rng):
    net = random_mlp(rng, [3, 4, 2], leaky_relu(-0.5))
    with pytest.raises(ModelError, match="not injective"):
        compile_target(Activity(0, np.ones(4)), net)


def test_a_point_satisfies_its_own_pattern(rng, net):
    X = rng.standard_normal((30, 3))
    patterns = net.patterns(X)
    for i, x in enumerate(X):
        row = patterns[i]
        assert inside(Pattern(row), net, x)
        assert inside(Pattern(row.bits()[0]), net, x)
        assert inside(Pattern(row, layer=1), net, x)
    bits = patterns.bits()
    hits = inside(Pattern(bits[0]), net, X)
    assert np.array_equal(hits, np.all(bits == bits[0], axis=1))


def test_partial_and_masked_patterns_free_their_units(rng, net):
    X = rng.standard_normal((200, 3))
    Z = net.preactivations(X)[0]
    bits = np.ma.masked_array([1, 0, 1, 1, 0, 0], mask=[False, True, True, False, True, True])
    expected = (Z[:, 0] > 0) & (Z[:, 3] > 0)
    assert np.array_equal(inside(Pattern(bits, layer=0), net, X), expected)
    assert np.array_equal(inside(Pattern([1, -1, -1, 1, -1, -1], layer=0), net, X), expected)
    (c,) = compile_target(Pattern([1, -1, -1, 1, 0, -1], layer=0), net)
    rows = c.rows_of(0)
    assert rows.fixed_on.tolist() == [True, False, False, True, False, False]
    assert rows.fixed_off.tolist() == [False, False, False, False, True, False]


def test_argmax_output_polytope_and_neuron_range_agree_with_direct_evaluation(rng, net):
    X = rng.standard_normal((500, 3))
    Y = net.forward(X)
    Z = net.preactivations(X)
    for c in range(4):
        assert np.array_equal(inside(ArgMax(c), net, X), np.argmax(Y, axis=1) == c)
    C, d = rng.standard_normal((3, 4)), rng.standard_normal(3)
    assert np.array_equal(inside(OutputPolytope(C, d), net, X), np.all(Y @ C.T <= d, axis=1))
    lo, hi = np.quantile(Z[1][:, 2], [0.3, 0.7])
    assert np.array_equal(inside(NeuronRange(1, 2, lo, hi), net, X), (Z[1][:, 2] >= lo) & (Z[1][:, 2] <= hi))
    assert np.array_equal(inside(NeuronRange(-1, 1, hi=0.0), net, X), Y[:, 1] <= 0.0)
    A, b = rng.standard_normal((2, 3)), rng.standard_normal(2)
    assert np.array_equal(inside(InputPolytope(A, b), net, X), np.all(X @ A.T <= b, axis=1))


def test_rows_are_unit_norm_and_infinite_bounds_are_left_out(net):
    (c,) = compile_target([ArgMax(1), NeuronRange(0, 3, lo=-1.0), NeuronRange(1, 0)], net)
    assert np.allclose(np.linalg.norm(c.output_A, axis=1), 1.0)
    assert [r.layer for r in c.layer_rows] == [0]
    rows = c.rows_of(0)
    assert rows.A.shape == (1, 6) and np.all(np.isfinite(rows.b))
    (c,) = compile_target(InputPolytope(np.eye(3), [1.0, np.inf, 2.0]), net)
    assert c.input_A.shape == (2, 3)


def test_lists_intersect_and_any_of_unites(rng, net):
    X = rng.standard_normal((400, 3))
    common = int(np.argmax(np.bincount(np.argmax(net.forward(X), axis=1))))
    a, b, c = ArgMax(common), NeuronRange(0, 1, lo=0.0), InputPolytope([[1.0, 1.0, 0.0]], [0.5])
    A, B, C = (inside(t, net, X) for t in (a, b, c))
    assert 0 < A.sum() < len(X) and 0 < B.sum() < len(X) and 0 < C.sum() < len(X)
    assert np.array_equal(inside([a, b], net, X), A & B)
    assert np.array_equal(inside(AnyOf([a, b]), net, X), A | B)
    assert np.array_equal(inside([AnyOf([a, b]), c], net, X), (A | B) & C)
    assert np.array_equal(inside(AnyOf([[a, c], AnyOf([b])]), net, X), (A & C) | B)
    assert len(compile_target([AnyOf([a, b]), AnyOf([b, c])], net)) == 4
    assert np.all(inside([], net, X))


def test_compiled_conjunctions_pass_through(rng, net):
    X = rng.standard_normal((200, 3))
    conjunctions = compile_target(AnyOf([[Pattern([1, 0, -1, -1, -1, 1], layer=0), ArgMax(2)], NeuronRange(1, 4, 0, 1)]),
                                  net)
    again = compile_target(AnyOf(conjunctions), net)
    assert np.array_equal(satisfies(again, net, X), satisfies(conjunctions, net, X))


@pytest.mark.parametrize("target, message", [
    (Activity(0, np.ones(5)), "5 entries; layer 0"),
    (Activity(3, np.ones(6)), "layer 3 is out of range"),
    (Activity(-4, np.ones(6)), "layer -4 is out of range"),
    (Pattern(np.ones(10)), "10 bits"),
    (Pattern(np.ones(4), layer=1), "4 bits; layer 1"),
    (ArgMax(4), "class 4 is out of range"),
    (OutputPolytope(np.ones((2, 3)), np.zeros(2)), "3 columns"),
    (NeuronRange(1, 5, 0, 1), "unit 5 is out of range"),
    (NeuronRange(7, 0, 0, 1), "layer 7 is out of range"),
    (InputPolytope(np.ones((1, 4)), [0.0]), "4 columns"),
    ("argmax", "not a target"),
])
def test_targets_that_do_not_fit_the_network(net, target, message):
    with pytest.raises(ShapeError, match=message):
        compile_target(target, net)


@pytest.mark.parametrize("make, message", [
    (lambda: Activity(0, [1.0, np.nan]), r"Activity y\[1\] is nan"),
    (lambda: OutputPolytope([[1.0, np.nan]], [0.0]), r"C\[0, 1\] is nan"),
    (lambda: OutputPolytope([[1.0, 0.0]], [np.nan]), r"d\[0\] is NaN"),
    (lambda: InputPolytope(np.ones((2, 3)), [0.0]), "1 entries; InputPolytope A has 2 rows"),
    (lambda: NeuronRange(0, 0, np.nan, 1.0), "NaN"),
    (lambda: NeuronRange(0, 0, 2.0, 1.0), "lo = 2.0 > hi = 1.0"),
    (lambda: Pattern([1, 2, 0]), r"bits\[1\] is 2"),
    (lambda: Pattern([1, np.nan]), r"bits\[1\] is nan"),
    (lambda: AnyOf([]), "at least one target"),
    (lambda: ArgMax(1.5), "must be an integer"),
])
def test_bad_targets_are_refused_on_construction(make, message):
    with pytest.raises(ShapeError, match=message):
        make()


def test_target_arrays_are_read_only_float64_copies():
    y = np.array([1, 2, 3])
    target = Activity(0, y)
    y[0] = 7
    assert target.y.dtype == np.float64 and target.y[0] == 1.0 and not target.y.flags.writeable


def test_conjunction_checks_its_shapes():
    with pytest.raises(ShapeError, match="input_b"):
        Conjunction(np.zeros((2, 3)), np.zeros(1), (), np.zeros((0, 2)), np.zeros(0), np.zeros((0, 2)), np.zeros(0))


def test_public_names(net):
    assert pim.Box is not None
    assert callable(compile_target) and isinstance(compile_target(ArgMax(0), net)[0], Conjunction)


def test_patterns_rows_must_fit(rng, net):
    patterns = net.patterns(rng.standard_normal((2, 3)))
    with pytest.raises(ShapeError, match="holds 2"):
        Pattern(patterns)
    with pytest.raises(ShapeError, match="not among"):
        Pattern(patterns[0], layer=2)
    other = random_mlp(rng, [3, 5, 6, 4])
    with pytest.raises(ShapeError, match=r"covers layers \(0, 1\)"):
        compile_target(Pattern(net.patterns(np.zeros(3))), random_mlp(rng, [3, 4, 4]))
    with pytest.raises(ShapeError, match="11 bits"):
        compile_target(Pattern(net.patterns(np.zeros(3))), random_mlp(rng, [3, 4, 4, 4]))
    assert compile_target(Pattern(other.patterns(np.zeros(3))), other)


def test_satisfies_takes_compiled_conjunctions(net):
    with pytest.raises(TypeError, match="compile_target"):
        satisfies([ArgMax(0)], net, np.zeros(3))
    assert not np.any(satisfies([], net, np.zeros((4, 3))))
