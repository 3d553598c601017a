"""Every linear region of all of R^d (`regions(net, None)`): against an LP oracle over every pattern."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import preimage as pim
from preimage.errors import Infeasible
from preimage.geometry import solve_lp
from preimage.regions import regions
from preimage.regions.local import Region, region_rows
from preimage.regions.whole_space import chart_network, default_scale


def mlp(widths, seed, inputs):
    torch.manual_seed(seed)
    modules, d = [], inputs
    for w in widths:
        modules += [nn.Linear(d, w), nn.ReLU()]
        d = w
    modules.append(nn.Linear(d, 1))
    return pim.load(nn.Sequential(*modules).double().eval())


def full_dimensional_patterns(net):
    """Oracle: every pattern whose sign conditions hold on a ball of positive radius (one LP each)."""
    d = net.input_dim
    units = sum(net.layers[i].out_features for i in net.hidden)
    found = {}
    for bits in itertools.product([False, True], repeat=units):
        reg = Region(net, np.array(bits), domain=None)
        A, b, _ = region_rows(net, reg.maps, reg.slopes)
        norms = np.linalg.norm(A, axis=1)
        keep = norms > 0
        if np.any(~keep & (b < 0)):
            continue
        A, b, norms = A[keep], b[keep], norms[keep]
        # max r s.t. A x + r |a| <= b, r <= 1: the Chebyshev radius, capped.
        c = np.zeros(d + 1)
        c[-1] = -1.0
        lb = np.concatenate([np.full(d, -np.inf), [0.0]])
        ub = np.concatenate([np.full(d, np.inf), [1.0]])
        try:
            result = solve_lp(c, np.hstack([A, norms[:, None]]), b, lb=lb, ub=ub)
        except Infeasible:
            continue
        if result.x[-1] > 1e-7:
            found[bytes(np.packbits(bits))] = reg
    return found


def keys(graph):
    return {bytes(np.packbits(r.pattern)) for r in graph.regions}


@pytest.mark.parametrize("widths,seed,inputs", [((4, 4), 0, 2), ((3, 3, 2), 1, 2), ((4, 3), 2, 3), ((3, 3), 3, 3)])
def test_whole_space_regions_equal_the_lp_oracle(widths, seed, inputs):
    net = mlp(widths, seed, inputs)
    graph = regions(net, None)
    oracle = full_dimensional_patterns(net)
    assert graph.complete
    assert keys(graph) == set(oracle)
    for r in graph.regions:
        assert np.array_equal(net.patterns(r.witness[None]).bits()[0], r.pattern)
        assert r.polytope.contains(r.witness[None])[0]
        # The facets read off the faces are those of the LP minimal form of the sign conditions.
        minimal = Region(net, r.pattern, domain=None).polytope
        assert minimal.n_eq == 0 and r.polytope.n_ineq == minimal.n_ineq
        for a, beta in zip(r.polytope.A, r.polytope.b):
            assert np.min(np.abs(minimal.A - a).max(axis=1) + np.abs(minimal.b - beta)) < 1e-9
        assert r.polytope.is_bounded() == minimal.is_bounded()
    assert any(not r.polytope.is_bounded() for r in graph.regions)


def test_regions_far_from_the_origin_and_coincident_hyperplanes():
    # Units on the diagonals x1 = +-x2 (the sides of the side faces' pyramids), duplicated units, and a
    # second layer whose kinks lie far outside the box of the first layer's hyperplanes.
    W1 = np.array([[1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [0.0, 1.0]])
    b1 = np.array([0.0, 0.0, 0.0, -0.5])
    W2 = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
    b2 = np.array([-40.0, -30.0])
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        for layer, W, b in zip((model[0], model[2]), (W1, W2), (b1, b2)):
            layer.weight.copy_(torch.tensor(W))
            layer.bias.copy_(torch.tensor(b))
    net = pim.load(model)
    graph = regions(net, None)
    assert keys(graph) == set(full_dimensional_patterns(net))
    R = default_scale(net)
    far = [r for r in graph.regions if np.abs(r.polytope.relative_interior_point()).max() > R]
    assert far, "the second layer's kinks make regions outside the first layer's box"


def test_chart_network_is_the_homogenised_network():
    net = mlp((5, 4), 4, 3)
    R = default_scale(net)
    rng = np.random.default_rng(0)
    for k, s in itertools.product(range(3), (1.0, -1.0)):
        chart = chart_network(net, k, s, R)
        Y = np.hstack([rng.uniform(-1, 1, (20, 2)), rng.uniform(0.1, 1, (20, 1))])
        X = R * np.insert(Y[:, :-1], k, s, axis=1) / Y[:, -1:]
        np.testing.assert_allclose(chart.forward(Y), Y[:, -1:] * net.forward(X), rtol=1e-10, atol=1e-10)
        carriers = np.cumsum([net.layers[i].out_features + 1 for i in net.hidden]) - 1
        np.testing.assert_array_equal(np.delete(chart.patterns(Y).bits(), carriers, axis=1), net.patterns(X).bits())


@pytest.mark.parametrize("widths,seed,box", [((8, 8), 5, ([-1.0, -2.0], [1.5, 0.5])), ((6, 6, 4), 6, ([3.0, 3.0], [3.5, 3.2]))])
def test_rectangle_regions_equal_the_engines(widths, seed, box):
    """In the plane a rectangle is partitioned by slice2d; its regions and graph equal the engine's."""
    net = mlp(widths, seed, 2)
    domain = pim.Box(*box)
    graph = regions(net, domain)
    engine = pim.preimage(net, [], domain, one_pattern_per_piece=True)
    engine_keys = {bytes(np.packbits(net.patterns(p.witness[None]).bits()[0])) for p in engine.pieces
                   if p.polytope.dim == 2}
    assert keys(graph) == engine_keys
    total = 0.0
    for r in graph.regions:
        minimal = Region(net, r.pattern, domain=domain).polytope
        assert r.polytope.n_ineq == minimal.n_ineq
        assert np.all(domain.contains(r.polytope.vertices()))
        total += r.polytope.volume().value
    assert total == pytest.approx(domain.volume(), rel=1e-9)
    through_engine = regions(net, domain.to_polytope())  # a Polytope domain goes through the engine
    assert keys(through_engine) == keys(graph)
    assert through_engine.graph.number_of_edges() == graph.graph.number_of_edges()
