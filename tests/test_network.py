"""The network IR: affine maps (dense and sparse), assembly, batched evaluation, patterns, bounds."""

import numpy as np
import pytest
import scipy.sparse as sp

import preimage as pim
from preimage.errors import ModelError, ShapeError
from preimage.network import (
    RELU, ActivationOp, AffineMap, AffineOp, Layer, Network, ReshapeOp, assemble, leaky_relu,
)
from preimage.network.conv import conv2d_matrix


def random_mlp(rng, sizes, activation=RELU, sparse=False):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = rng.standard_normal((b, a))
        if sparse:
            W = sp.random(b, a, density=0.4, random_state=int(rng.integers(1 << 31)), format="csr") + sp.eye(b, a)
        last = i == len(sizes) - 2
        act = pim.network.IDENTITY if last else activation
        layers.append(Layer(AffineMap(W, rng.standard_normal(b)), act, f"fc{i}"))
    return Network(layers)


def reference_forward(net, X):
    for layer in net.layers:
        Z = X @ layer.affine.dense().T + layer.b
        X = np.where(Z > 0, Z, layer.activation.slope * Z)
    return X


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("activation", [RELU, leaky_relu(0.1)])
def test_forward_matches_dense_reference(rng, sparse, activation):
    net = random_mlp(rng, [6, 9, 7, 3], activation, sparse)
    X = rng.standard_normal((25, 6))
    assert np.allclose(net.forward(X), reference_forward(net, X), rtol=1e-12, atol=1e-12)
    pre = net.preactivations(X)
    assert [z.shape for z in pre] == [(25, 9), (25, 7), (25, 3)]
    assert np.array_equal(pre[-1], net.forward(X))


def test_single_input_and_input_shape(rng):
    W, _ = conv2d_matrix(rng.standard_normal((2, 1, 3, 3)), (1, 5, 5), padding=1)
    net = assemble([AffineOp(AffineMap(W), (2, 5, 5), "conv", "Conv2d"), ActivationOp(RELU, "relu"),
                    ReshapeOp((50,), "flatten"), AffineOp(AffineMap(rng.standard_normal((3, 50))), (3,), "fc", "Linear")],
                   (1, 5, 5))
    X = rng.standard_normal((4, 1, 5, 5))
    batch = net.forward(X)
    assert batch.shape == (4, 3)
    assert np.allclose(net.forward(X[0]), batch[0])
    assert np.allclose(net.forward(X.reshape(4, -1)), batch)
    assert net.layers[0].affine.is_sparse


@pytest.mark.parametrize("bad", [(4, 7), (4, 2, 3), (8,), (4, 1, 5, 4)])
def test_wrong_input_size_is_refused(rng, bad):
    net = random_mlp(rng, [6, 4, 2])
    with pytest.raises(ShapeError, match="does not fit"):
        net.forward(np.zeros(bad))


def test_nan_input_and_weights_refused(rng):
    net = random_mlp(rng, [3, 4, 2])
    with pytest.raises(ShapeError, match="NaN"):
        net.forward(np.array([[0.0, np.nan, 1.0]]))
    W = rng.standard_normal((4, 3))
    W[1, 2] = np.inf
    with pytest.raises(ModelError, match=r"layer 'bad': W contains .*W\[1, 2\] = inf"):
        Network([Layer(AffineMap(W), RELU, "bad")])


def test_assembly_folds_affine_chains(rng):
    A1, A2, A3 = (AffineMap(rng.standard_normal((n, m)), rng.standard_normal(n)) for n, m in [(5, 4), (5, 5), (3, 5)])
    ops = [AffineOp(A1, (5,), "fc1", "Linear"), AffineOp(A2, (5,), "bn", "BatchNorm1d"), ActivationOp(RELU, "r"),
           AffineOp(A3, (3,), "fc2", "Linear")]
    net = assemble(ops, (4,))
    assert len(net) == 2
    assert net.layers[0].name == "fc1+bn"
    X = rng.standard_normal((10, 4))
    expected = A3(np.maximum(A2(A1(X)), 0))
    assert np.allclose(net.forward(X), expected, rtol=1e-12)


def test_assembly_refuses_mismatched_shapes(rng):
    ops = [AffineOp(AffineMap(rng.standard_normal((5, 4))), (5,), "fc1", "Linear"),
           AffineOp(AffineMap(rng.standard_normal((3, 6))), (3,), "fc2", "Linear")]
    with pytest.raises(ShapeError, match="fc2"):
        assemble(ops, (4,))


def test_sparse_composition_stays_sparse(rng):
    W1, _ = conv2d_matrix(rng.standard_normal((3, 2, 3, 3)), (2, 6, 6), padding=1)
    scale = AffineMap(sp.diags(np.repeat(rng.uniform(0.5, 2, 3), 36)).tocsr(), rng.standard_normal(108))
    composed = scale.compose(AffineMap(W1))
    assert composed.is_sparse
    x = rng.standard_normal((2, 72))
    assert np.allclose(composed(x), scale(AffineMap(W1)(x)), rtol=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
def test_transpose_apply_is_the_adjoint(rng, sparse):
    W = sp.random(7, 5, density=0.5, random_state=1, format="csr") if sparse else rng.standard_normal((7, 5))
    f = AffineMap(W)
    L = rng.standard_normal((3, 4, 7))
    x = rng.standard_normal(5)
    lhs = np.einsum("abm,m->ab", L, f.linear(x[None])[0])
    rhs = np.einsum("abd,d->ab", f.transpose_apply(L), x)
    assert np.allclose(lhs, rhs, rtol=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
def test_interval_bounds_contain_every_sample(rng, sparse):
    net = random_mlp(rng, [4, 12, 8, 3], sparse=sparse)
    centres = rng.standard_normal((5, 4))
    lo, hi = centres - 0.3, centres + 0.3
    bounds = net.interval_bounds(lo, hi)
    for i in range(5):
        samples = rng.uniform(lo[i], hi[i], size=(400, 4))
        for (zl, zu), z in zip(bounds, net.preactivations(samples)):
            assert np.all(z >= zl[i] - 1e-12) and np.all(z <= zu[i] + 1e-12)
    points = net.interval_bounds(centres, centres)
    for (zl, zu), z in zip(points, net.preactivations(centres)):
        assert np.allclose(zl, z) and np.allclose(zu, z)


def test_interval_bounds_refuse_empty_box(rng):
    net = random_mlp(rng, [2, 3, 1])
    with pytest.raises(ShapeError, match="empty box"):
        net.interval_bounds(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]]))


def test_patterns_bits_and_chunking(rng):
    net = random_mlp(rng, [5, 70, 9, 2])
    X = rng.standard_normal((1000, 5))
    whole = net.patterns(X, chunk_size=10_000)
    chunked = net.patterns(X, chunk_size=97)
    batches = net.patterns(iter([X[:300], X[300:]]))
    assert whole == chunked == batches
    assert whole.units == (70, 9) and whole.layers == (0, 1) and len(whole) == 1000
    pre = net.preactivations(X)
    assert np.array_equal(whole.layer(0), pre[0] > 0)
    assert np.array_equal(whole.layer(1), pre[1] > 0)
    assert np.array_equal(whole.active_counts(), np.stack([(pre[0] > 0).sum(1), (pre[1] > 0).sum(1)], 1))


def test_patterns_of_memory_map(rng, tmp_path):
    net = random_mlp(rng, [3, 8, 2])
    X = rng.standard_normal((257, 3))
    path = tmp_path / "inputs.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")
    assert net.patterns(mapped, chunk_size=50) == net.patterns(X)


def test_zero_preactivation_is_off():
    layer = Layer(AffineMap(np.array([[1.0, -1.0], [1.0, 0.0]]), np.zeros(2)), RELU, "tie")
    net = Network([layer, Layer(AffineMap(np.ones((1, 2))), pim.network.IDENTITY, "out")])
    bits = net.patterns(np.array([[1.0, 1.0], [0.0, 0.0], [2.0, 1.0]])).layer(0)
    assert bits.tolist() == [[False, True], [False, False], [True, True]]


def test_summary_and_slicing(rng):
    net = random_mlp(rng, [4, 6, 2])
    text = net.summary()
    assert "fc0" in text and "relu" in text and f"{net.n_params:,}" in text
    assert net[0:1].output_dim == 6
    assert repr(net) == "Network(4 -> 6 -> 2)"


def test_patterns_progress_bar(rng, capsys):
    net = random_mlp(rng, [3, 8, 2])
    X = rng.standard_normal((100, 3))
    assert net.patterns(X, chunk_size=10, progress=True) == net.patterns(X)
    assert "patterns" in capsys.readouterr().err
