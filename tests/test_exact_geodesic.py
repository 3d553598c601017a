"""Exact geodesics through linear regions: the segment's regions and the shortest region-graph path."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy.sparse import coo_matrix  # noqa: E402
from scipy.sparse.csgraph import dijkstra  # noqa: E402
from torch import nn  # noqa: E402

import preimage as pim  # noqa: E402
from preimage import patterns as pat  # noqa: E402
from preimage import viz  # noqa: E402
from preimage.errors import PreimageError, ShapeError  # noqa: E402


def _relu(W, b):
    return pim.Layer(pim.AffineMap(np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64)),
                     pim.Activation("relu"))


@pytest.fixture(scope="module")
def vee():
    """Layer 0: relu(x), relu(-x), relu(y + 5); layer 1: relu(|x| - y - 1), a V with its apex at (0, -1).

    The segment (-2, 0) -> (2, 0) crosses the V twice and x = 0 once (4 bits); going below the apex
    crosses x = 0 only (2 bits).
    """
    net = pim.Network([_relu([[1, 0], [-1, 0], [0, 1]], [0, 0, 5]), _relu([[1, 1, -1]], [4]),
                       pim.Layer(pim.AffineMap(np.ones((1, 1))), pim.Activation("identity", 1.0))])
    return net, pim.Box(-3 * np.ones(2), 3 * np.ones(2))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    return pim.load(model), pim.Box(-2 * np.ones(2), 2 * np.ones(2))


@pytest.fixture(scope="module")
def wide():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    return pim.load(model)


def _check_path(net, path, x0, x1, layer=None):
    assert np.array_equal(path.points[0], x0) and np.array_equal(path.points[-1], x1)
    bits = net.patterns(np.vstack([x0, x1])).bits()
    assert np.array_equal(path.patterns[0], bits[0]) and np.array_equal(path.patterns[-1], bits[1])
    assert np.array_equal(net.patterns(path.points).bits(), path.patterns)
    full = (path.patterns[1:] != path.patterns[:-1]).sum(1)
    assert np.array_equal(path.steps, pat.path_hamming(net, path.points, layer))
    return full


def test_segment_path_is_the_regions_the_line_crosses(tiny):
    net, _ = tiny
    x0, x1 = np.array([-1.9, -1.7]), np.array([1.8, 1.9])
    path = pat.exact_geodesic(net, x0, x1)
    full = _check_path(net, path, x0, x1)
    assert path.method == "segment" and np.all(full >= 1) and np.all(np.diff(path.t) > 0)
    partition = path.source
    assert len(path.points) == len(partition) and np.array_equal(path.regions, np.arange(len(partition)))
    for j, crossing in enumerate(partition.t[1:-1]):
        # the pattern changes at every breakpoint, and some unit is at zero there
        z = np.concatenate([net.preactivations(partition.points([crossing]))[i][0] for i in net.hidden])
        assert np.min(np.abs(z)) <= 1e-9 * (1 + np.abs(z).max())
        assert path.patterns[j + 1][np.argmin(np.abs(z))] != path.patterns[j][np.argmin(np.abs(z))]
    # brute force: the distinct consecutive patterns of a dense sampling of the segment
    t = np.linspace(0, 1, 40001)
    dense = net.patterns(x0 + t[:, None] * (x1 - x0)).bits()
    change = np.concatenate([[True], np.any(dense[1:] != dense[:-1], axis=1)])
    assert np.array_equal(dense[change], path.patterns)
    assert path.lengths["midpoint"] == path.length


def test_segment_with_an_end_on_a_boundary_keeps_its_pattern():
    net = pim.Network([_relu([[1.0]], [0.0]), pim.Layer(pim.AffineMap(np.ones((1, 1))),
                                                        pim.Activation("identity", 1.0))])
    path = pat.exact_geodesic(net, [0.0], [2.0])
    assert path.patterns.tolist() == [[False], [True]] and path.regions.tolist() == [-1, 0]
    assert path.steps.tolist() == [1] and path.length == 1
    both = pat.exact_geodesic(net, [0.0], [-1.0])          # x0 on the boundary shares the piece's pattern
    assert both.patterns.tolist() == [[False], [False]] and both.length == 0
    same = pat.exact_geodesic(net, [1.0], [1.0])
    assert same.length == 0 and len(same.points) == 2


def test_graph_path_goes_around_the_vee(vee):
    net, box = vee
    x0, x1 = np.array([-2.0, 0.0]), np.array([2.0, 0.0])
    segment = pat.exact_geodesic(net, x0, x1)
    graph = pat.exact_geodesic(net, x0, x1, method="graph", domain=box)
    assert segment.length == 4 and graph.length == 2
    assert graph.lengths == {"graph": 2, "segment": 4, "midpoint": 4}
    full = _check_path(net, graph, x0, x1)
    assert np.all(full >= 1) and graph.complete and graph.plane is None
    assert np.all(graph.points[1:-1, 1] < -1)           # the path passes below the apex
    for a, b in zip(graph.regions[:-1], graph.regions[1:]):
        assert graph.source.graph.has_edge(int(a), int(b))
    # per layer: the V's unit need not flip at all; the first layer's x-units must flip
    assert pat.exact_geodesic(net, x0, x1, method="graph", domain=box, layer=1).length == 0
    assert pat.exact_geodesic(net, x0, x1, method="graph", domain=box, layer=0).length == 2
    assert pat.exact_geodesic(net, x0, x1, layer=1).length == 2


def test_graph_path_equals_brute_force_on_a_grid(tiny):
    net, box = tiny
    x0, x1 = np.array([-1.9, -1.7]), np.array([1.8, 1.9])
    data = box.sample(200, rng=0)
    graph = pat.exact_geodesic(net, x0, x1, method="graph", domain=box, data=data, k=5)
    _check_path(net, graph, x0, x1)
    assert graph.length <= graph.lengths["segment"] and graph.length <= graph.lengths["conditional"]
    # oracle: a fine grid, cells joined to their 4 neighbours, Dijkstra with Hamming weights
    n = 801
    s = np.linspace(-2, 2, n)
    grid = np.stack(np.meshgrid(s, s, indexing="ij"), -1).reshape(-1, 2)
    bits = net.patterns(grid).bits()
    keys, label = np.unique(np.packbits(bits, axis=1), axis=0, return_inverse=True)
    label = label.reshape(n, n)
    assert len(keys) == len(graph.source)
    pairs = np.vstack([np.stack([label[1:].ravel(), label[:-1].ravel()], 1),
                       np.stack([label[:, 1:].ravel(), label[:, :-1].ravel()], 1)])
    pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
    unpacked = np.unpackbits(keys, axis=1)
    weight = (unpacked[pairs[:, 0]] != unpacked[pairs[:, 1]]).sum(1).astype(np.float64)
    adjacency = coo_matrix((weight, (pairs[:, 0], pairs[:, 1])), shape=(len(keys),) * 2).tocsr()
    index = {bytes(k): i for i, k in enumerate(keys)}
    start, stop = (index[bytes(np.packbits(b))] for b in net.patterns(np.vstack([x0, x1])).bits())
    assert start != stop
    assert dijkstra(adjacency, directed=False, indices=start)[stop] == graph.length


def test_graph_in_the_plane_of_high_dimensional_inputs(wide):
    net = wide
    rng = np.random.default_rng(6)
    x0, x1, x2 = rng.standard_normal((3, 12))
    path = pat.exact_geodesic(net, x0, x1, method="graph", through=x2, margin=0.25)
    _check_path(net, path, x0, x1)
    assert path.plane is not None and path.complete
    assert path.length <= path.lengths["segment"] == pat.exact_geodesic(net, x0, x1).length
    # the plane's regions are those of the independent 2-D slice
    plane = pim.slice2d(net, x0, x1 - x0, x2 - x0, ((-0.25, 1.25), (-0.25, 1.25)))
    assert len(path.source) == len(plane)
    # the points lie in the plane: x0 + s (x1 - x0) + t (x2 - x0)
    st = np.linalg.lstsq(np.stack([x1 - x0, x2 - x0], 1), (path.points - x0).T, rcond=None)[0].T
    np.testing.assert_allclose(path.plane(st), path.points, atol=1e-10)
    strip = pat.exact_geodesic(net, x0, x1, method="graph", through=x2, domain=pim.Box([0.0, -0.1], [1.0, 0.1]))
    _check_path(net, strip, x0, x1)
    assert path.length <= strip.length <= path.lengths["segment"]
    default = pat.exact_geodesic(net, x0, x1, method="graph", margin=0.1, layer=1)
    _check_path(net, default, x0, x1, layer=1)
    assert default.length <= pat.exact_geodesic(net, x0, x1, layer=1).length


def test_bad_input_and_plot(vee):
    net, box = vee
    with pytest.raises(ShapeError, match="method"):
        pat.exact_geodesic(net, [0.0, 0.0], [1.0, 0.0], method="straight")
    with pytest.raises(ShapeError, match="layer 2"):
        pat.exact_geodesic(net, [0.0, 0.0], [1.0, 0.0], layer=2)
    with pytest.raises(PreimageError, match="x1 lies outside the domain"):
        pat.exact_geodesic(net, [-2.0, 0.0], [5.0, 0.0], method="graph", domain=box)
    with pytest.raises(ShapeError, match="R\\^3"):
        pat.exact_geodesic(net, [0.0, 0.0], [1.0, 0.0], method="graph", domain=pim.Box(-np.ones(3), np.ones(3)))
    path = pat.exact_geodesic(net, [-2.0, 0.0], [2.0, 0.0], method="graph", domain=box)
    ax = viz.plot_geodesic(path)
    assert ax.has_data() and len(ax.get_lines()) == 3
    assert [line.get_label().split()[0] for line in ax.get_lines()] == ["graph", "segment", "midpoint"]
    plt.close("all")
