"""Batched bounds of a network's pre-activations: sound on sampled points, and the factored product of shared
rows with the first map equals the plain one."""

import numpy as np
import pytest

import preimage.preimages.bounds as bounds
from preimage.network import IDENTITY, RELU, AffineMap, Layer, Network
from preimage.preimages.problem import _stages


def _net(seed, sizes):
    rng = np.random.default_rng(seed)
    layers = [Layer(AffineMap(rng.standard_normal((b, a)), rng.standard_normal(b)),
                    RELU if i < len(sizes) - 2 else IDENTITY) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    return Network(layers)


def _inputs(seed, d, n):
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-1.0, 0.0, (n, d))
    hi = lo + rng.uniform(0.1, 1.0, (n, d))
    vertices = [np.vstack([lo[i], hi[i], rng.uniform(lo[i], hi[i], (10, d))]) for i in range(n)]
    return lo, hi, vertices


@pytest.mark.parametrize("seed, sizes", [(0, [6, 30, 20, 25, 4]), (1, [3, 12, 3]), (2, [8, 40, 40, 5])])
@pytest.mark.parametrize("with_vertices", [False, True])
def test_bounds_hold_on_samples_and_the_factored_product_changes_nothing(seed, sizes, with_vertices, monkeypatch):
    net = _net(seed, sizes)
    stages = _stages(net)
    lo, hi, vertices = _inputs(seed, sizes[0], 6)
    rows = {len(stages) - 1: np.random.default_rng(seed).standard_normal((3, sizes[-1]))}
    kw = {"vertices": vertices} if with_vertices else {}
    found = bounds.stack_bounds(stages, lo, hi, rows=rows, **kw)
    rng = np.random.default_rng(seed + 10)
    for i in range(lo.shape[0]):
        if with_vertices:
            weights = rng.dirichlet(np.ones(len(vertices[i])), 500)
            X = weights @ vertices[i]
        else:
            X = rng.uniform(lo[i], hi[i], (500, sizes[0]))
        z = X
        for k, layer in enumerate(net.layers):
            pre = layer.affine(z)
            assert np.all(pre >= found.lower[k][i] - 1e-9) and np.all(pre <= found.upper[k][i] + 1e-9)
            z = layer.activation(pre)
        values = z @ rows[len(stages) - 1].T
        assert np.all(values <= found.rows_upper[-1][i] + 1e-9)
        assert np.all(values >= found.rows_lower[-1][i] - 1e-9)
    monkeypatch.setattr(bounds, "_first_dense", lambda first, stage0: None)
    plain = bounds.stack_bounds(stages, lo, hi, rows=rows, **kw)
    for a, b in zip(found.lower + found.upper + found.rows_upper, plain.lower + plain.upper + plain.rows_upper):
        if a is not None:
            assert np.allclose(a, b, rtol=1e-12, atol=1e-10)
    assert np.allclose(found.input_weights[-1], plain.input_weights[-1], rtol=1e-12, atol=1e-10)
