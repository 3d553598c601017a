"""Linear regions: slices against regioncam and brute force, tiling, local maps against autograd, paths."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import preimage as pim
from preimage.cli import main
from preimage.regions import (
    count_regions, line, one_layer_recursion, one_layer_regions, point_with_pattern, region, region_statistics,
    regions, row_removal_bounds, serra_bound, slice2d,
)


def mlp(widths, seed, inputs=2, outputs=None, final_relu=True):
    torch.manual_seed(seed)
    modules, d = [], inputs
    for w in widths:
        modules += [nn.Linear(d, w), nn.ReLU()]
        d = w
    if not final_relu:
        modules.pop()
    if outputs:
        modules.append(nn.Linear(d, outputs))
    return nn.Sequential(*modules).double().eval()


def square(r):
    return ((-r, r), (-r, r))


def keys(bits):
    return {bytes(row) for row in np.packbits(np.asarray(bits, dtype=bool), axis=1)}


@pytest.mark.parametrize("widths,seed,r", [((16, 16, 16), 0, 1.0), ((32, 32), 1, 2.0), ((24, 24, 24), 2, 1.5)])
def test_slice_counts_equal_regioncam(widths, seed, r):
    regioncam = pytest.importorskip("regioncam")
    model = mlp(widths, seed)
    cam = regioncam.Regioncam(size=r)
    cam.add(model.float())
    partition = slice2d(pim.load(model.double()), np.zeros(2), [1, 0], [0, 1], square(r))
    assert len(partition) == cam.num_faces


def brute_force_patterns(net, r):
    """Every pattern whose region meets the open square: all 2^units tried by LP."""
    units = sum(net.layers[i].out_features for i in net.hidden)
    box = pim.Box(-r * np.ones(2), r * np.ones(2))
    found = []
    for bits in itertools.product([False, True], repeat=units):
        answer = point_with_pattern(net, np.array(bits), domain=box)
        if answer.found:
            found.append(bits)
        else:
            assert answer.check_certificate()
    return found


def test_slice_equals_brute_force_pattern_enumeration():
    net = pim.load(mlp((4, 3), seed=3, outputs=2))
    r = 2.0
    partition = slice2d(net, np.zeros(2), [1, 0], [0, 1], square(r))
    found = brute_force_patterns(net, r)
    assert keys(partition.patterns.bits()) == keys(found)
    assert len(partition) == len(found)


@pytest.fixture(scope="module")
def planar():
    net = pim.load(mlp((12, 10), seed=5, outputs=3))
    return net, slice2d(net, np.zeros(2), [1, 0], [0, 1], square(2.0))


def test_witnesses_have_their_pattern_and_polygons_tile(planar):
    net, partition = planar
    assert np.array_equal(net.patterns(partition.witnesses()).bits(), partition.patterns.bits())
    areas = partition.areas()
    assert np.all(areas > 0)
    assert areas.sum() == pytest.approx(16.0, rel=1e-12)
    points = np.random.default_rng(0).uniform(-2, 2, size=(400, 2))
    inside = np.zeros((len(points), len(partition)), dtype=bool)
    for i, polygon in enumerate(partition.polygons()):
        edge = np.roll(polygon, -1, axis=0) - polygon
        rel = points[:, None, :] - polygon[None, :, :]
        inside[:, i] = np.all(edge[None, :, 0] * rel[:, :, 1] - edge[None, :, 1] * rel[:, :, 0] >= -1e-12, axis=1)
    assert np.all(inside.sum(axis=1) == 1)
    owner = inside.argmax(axis=1)
    assert np.array_equal(net.patterns(points).bits(), partition.patterns.bits()[owner])


def test_region_affine_maps_reproduce_the_forward_pass(planar):
    net, partition = planar
    rng = np.random.default_rng(1)
    for i in rng.choice(len(partition), 10, replace=False):
        piece = partition.region(int(i))
        polygon = piece.polygon
        weights = rng.dirichlet(np.ones(len(polygon)), size=5)
        X = partition.to_input(weights @ polygon)
        np.testing.assert_allclose(piece.affine(X), net.forward(X), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(piece.slice_affine(weights @ polygon), net.forward(X), rtol=1e-10, atol=1e-12)
        assert np.array_equal(net.patterns(piece.witness).bits()[0], piece.pattern)


def test_singular_values_match_the_autograd_jacobian():
    model = mlp((9, 7), seed=6, inputs=5, outputs=4)
    net = pim.load(model)
    rng = np.random.default_rng(2)
    for x in rng.standard_normal((5, 5)):
        jac = torch.autograd.functional.jacobian(model, torch.tensor(x)).numpy()
        reg = region(net, x)
        np.testing.assert_allclose(reg.affine.dense(), jac, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(reg.singular_values(), np.linalg.svd(jac, compute_uv=False), rtol=1e-9, atol=1e-12)
        prefix = torch.autograd.functional.jacobian(lambda v: model[:2](v), torch.tensor(x)).numpy()
        np.testing.assert_allclose(reg.singular_values(0), np.linalg.svd(prefix, compute_uv=False), rtol=1e-9,
                                   atol=1e-12)
        profile = reg.stability()
        assert profile.sigma_max[-1] == pytest.approx(np.linalg.norm(jac, 2), rel=1e-9)
        assert np.all(profile.condition >= 1.0)
        assert reg.polytope.contains(x) and reg.halfspaces.contains(x)
        w, c = reg.hyperplane(1, 3)
        assert w @ x + c == pytest.approx(net.preactivations(x)[1][3], rel=1e-10, abs=1e-12)


def test_row_removal_bounds_hold():
    rng = np.random.default_rng(3)
    for _ in range(20):
        A = rng.standard_normal((12, 4))
        removed = rng.choice(12, size=rng.integers(1, 8), replace=False)
        bounds = row_removal_bounds(A, removed)
        assert bounds.holds
        assert bounds.min_lower <= bounds.min_upper + 1e-12
    reg = region(pim.load(mlp((8, 8), seed=7, inputs=3, outputs=2)), [0.1, -0.2, 0.3])
    assert reg.removal_bounds(1).holds


def test_line_agrees_with_dense_sampling():
    net = pim.load(mlp((20, 20), seed=8, inputs=3, outputs=2))
    x0, x1 = np.array([-2.0, 1.0, 0.5]), np.array([2.0, -1.5, -0.5])
    partition = line(net, x0, x1)
    t = np.linspace(0, 1, 20001)
    bits = net.patterns(partition.points(t)).bits()
    piece = partition.locate(t)
    gap = np.min(np.abs(t[:, None] - partition.t[None, :]), axis=1)
    clear = gap > 1e-9
    assert np.array_equal(bits[clear], partition.patterns.bits()[piece[clear]])
    for segment in partition:
        mid = partition.points([0.5 * (segment.t0 + segment.t1)])
        assert np.array_equal(net.patterns(mid).bits()[0], segment.pattern)
        np.testing.assert_allclose(segment.affine(mid), net.forward(mid), rtol=1e-10, atol=1e-12)
    changes = np.flatnonzero(np.any(bits[1:] != bits[:-1], axis=1))
    assert len(partition) >= len(changes) + 1
    np.testing.assert_allclose(partition.outputs, net.forward(partition.points(partition.t)), rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def enumerated():
    net = pim.load(mlp((5, 4), seed=9, outputs=2))
    box = pim.Box(-2 * np.ones(2), 2 * np.ones(2))
    return net, box, regions(net, box)


def test_enumeration_equals_slices_and_regioncam(enumerated):
    net, box, graph = enumerated
    assert graph.complete
    partition = slice2d(net, np.zeros(2), [1, 0], [0, 1], square(2.0))
    assert keys([r.pattern for r in graph.regions]) == keys(partition.patterns.bits())
    regioncam = pytest.importorskip("regioncam")
    model = mlp((5, 4), seed=9, outputs=2).float()
    cam = regioncam.Regioncam(size=2.0)
    cam.add(model)
    assert len(graph) == cam.num_faces
    for i, j, data in graph.graph.edges(data=True):
        differ = np.flatnonzero(graph.regions[i].pattern != graph.regions[j].pattern)
        assert data["hamming"] == differ.size >= 1
        layer, unit = data["neuron"]
        flat = [k for k, (lay, u) in enumerate((lay, u) for lay in net.hidden
                                             for u in range(net.layers[lay].out_features)) if (lay, u) == (layer, unit)]
        assert flat[0] in differ
    total = sum(r.polytope.volume().value for r in graph.regions)
    assert total == pytest.approx(16.0, rel=1e-9)


def test_shortest_path_is_no_longer_than_the_segment(enumerated):
    net, box, graph = enumerated
    x0, x1 = np.array([-1.9, -1.7]), np.array([1.8, 1.9])
    path = graph.shortest_path(x0, x1)
    crossed = graph.crossed(x0, x1)
    assert path.length <= crossed.length
    assert path.regions[0] == crossed.regions[0] and path.regions[-1] == crossed.regions[-1]
    for index, x in zip(path.regions[1:-1], path.inputs[1:-1]):
        assert np.array_equal(net.patterns(x).bits()[0], graph.regions[index].pattern)


def test_unreachable_pattern_has_a_certificate():
    layer = pim.Layer(pim.AffineMap(np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]), np.zeros(3)),
                      pim.Activation("relu"))
    net = pim.Network([layer, pim.Layer(pim.AffineMap(np.ones((1, 3))), pim.Activation("identity", 1.0))])
    answer = point_with_pattern(net, [True, True, False])
    assert not answer.found and answer.check_certificate()
    reachable = point_with_pattern(net, [True, False, True])
    assert reachable.found
    assert np.array_equal(net.patterns(reachable.point).bits()[0], [True, False, True])


def test_one_layer_counts_and_bounds():
    for n, r in [(5, 2), (10, 3), (7, 7), (3, 5)]:
        assert one_layer_regions(n, r) == one_layer_recursion(n, r)
        assert serra_bound([n], r) == one_layer_regions(n, r)
    net = pim.load(mlp((5,), seed=10, outputs=1))
    graph = regions(net, None)
    assert len(graph) == one_layer_regions(5, 2) == 16
    assert sum(not r.polytope.is_bounded() for r in graph.regions) == 10
    assert serra_bound([8, 8], 2) >= serra_bound([8], 2) and serra_bound([4, 4], 2) <= one_layer_regions(4, 2) ** 2


def test_counting_estimates_bracket_the_exact_count(planar):
    net, partition = planar
    box = pim.Box(-2 * np.ones(2), 2 * np.ones(2))
    count = count_regions(net, box, samples=400, lines=4, planes=1, rng=0)
    assert count.lower_bound <= len(partition) <= count.upper_bound
    assert abs(count.estimate - len(partition)) <= 4 * count.stderr
    assert count.lines[0] >= 1 and count.planes[0] >= 1
    stats = region_statistics(net, box.sample(30, rng=1), domain=box, directions=4)
    assert np.all(stats.radius > 0) and np.all(stats.volume > 0) and np.all(stats.mean_width >= 2 * stats.radius)


def test_exploration_of_one_region(planar):
    net, partition = planar
    piece = partition.region(int(np.argmax(partition.areas())))
    box = pim.Box(-2 * np.ones(2), 2 * np.ones(2))
    inside = region(net, piece.witness, domain=box)
    centre, radius = inside.inscribed_ball()
    assert radius > 0 and inside.polytope.contains(centre)
    assert inside.volume().value == pytest.approx(piece.area, rel=1e-9)
    X = inside.sample(50, rng=0)
    assert np.all(inside.polytope.contains(X))
    _, widths = inside.widths(6, rng=0)
    assert np.all(widths >= 2 * radius - 1e-9)


def test_conv_net_slice_tiles_and_has_true_patterns():
    torch.manual_seed(12)
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)).double().eval()
    net = pim.load(model, input_shape=(1, 3, 3))
    rng = np.random.default_rng(4)
    x1, x2, x3 = rng.standard_normal((3, 9))
    partition = pim.plane_through(net, x1, x2, x3, margin=0.5)
    assert np.array_equal(net.patterns(partition.witnesses()).bits(), partition.patterns.bits())
    assert partition.areas().sum() == pytest.approx(4.0, rel=1e-12)
    out = model(torch.tensor(partition.to_input(partition.vertices)).reshape(-1, 1, 3, 3)).detach().numpy()
    np.testing.assert_allclose(partition.outputs, out, rtol=1e-9, atol=1e-12)


def test_leaky_relu_slice_has_true_patterns_and_maps():
    torch.manual_seed(16)
    model = nn.Sequential(nn.Linear(2, 10), nn.LeakyReLU(0.1), nn.Linear(10, 8), nn.LeakyReLU(0.2),
                          nn.Linear(8, 2)).double().eval()
    net = pim.load(model)
    partition = slice2d(net, np.zeros(2), [1, 0], [0, 1], square(2.0))
    assert np.array_equal(net.patterns(partition.witnesses()).bits(), partition.patterns.bits())
    assert partition.areas().sum() == pytest.approx(16.0, rel=1e-12)
    piece = partition.region(len(partition) // 2)
    np.testing.assert_allclose(piece.affine(piece.witness[None]), net.forward(piece.witness[None]), rtol=1e-10)


def test_decision_boundary_separates_the_classes():
    net = pim.load(mlp((10,), seed=13, outputs=3))
    partition = slice2d(net, np.zeros(2), [1, 0], [0, 1], square(3.0))
    segments = partition.decision_boundary()
    assert len(segments) > 0
    mids = partition.to_input(segments.mean(axis=1))
    top = np.sort(net.forward(mids), axis=1)
    np.testing.assert_allclose(top[:, -1], top[:, -2], atol=1e-9)
    assert set(np.unique(partition.classes())) <= set(range(3))


def test_plots_and_cli(tmp_path, capsys, planar):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, partition = planar
    fig, axes = plt.subplots(1, 3)
    for ax, colour in zip(axes, ("pattern", "class", "lipschitz")):
        partition.plot(ax=ax, color=colour)
    plt.close(fig)
    assert np.all(partition.lipschitz() >= 0)
    model = mlp((6, 6), seed=14, outputs=3).float()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(model, torch.zeros(1, 2), str(path), dynamo=False)
    points = []
    for k, x in enumerate(([-1.0, -1.0], [1.0, -0.5], [0.0, 1.0])):
        points.append(tmp_path / f"x{k}.npy")
        np.save(points[-1], np.array(x))
    plot = tmp_path / "plane.png"
    assert main(["regions", str(path), "--plane", *map(str, points), "--plot", str(plot)]) == 0
    assert "linear regions" in capsys.readouterr().out and plot.stat().st_size > 0
    assert main(["regions", str(path), "--line", str(points[0]), str(points[1])]) == 0
    assert "linear pieces" in capsys.readouterr().out
    assert main(["regions", str(path), "--count=-1,1,-1,1", "--samples", "64", "--lines", "2"]) == 0
    assert "upper bound" in capsys.readouterr().out
    assert main(["regions", str(path)]) == 2


def test_bad_input_is_refused():
    net = pim.load(mlp((4,), seed=15, outputs=1))
    with pytest.raises(pim.ShapeError):
        slice2d(net, np.zeros(2), [1, 0], [2, 0])
    with pytest.raises(pim.ShapeError):
        slice2d(net, np.zeros(3), [1, 0], [0, 1])
    with pytest.raises(pim.ShapeError):
        slice2d(net, np.zeros(2), [1, 0], [0, 1], ((1, -1), (0, 1)))
    with pytest.raises(pim.ShapeError):
        line(net, np.zeros(2), np.zeros(2))
    with pytest.raises(pim.ShapeError):
        point_with_pattern(net, [True, False])


def test_plane_network_is_the_network_on_the_plane(rng):
    net = pim.load(mlp((12, 8), seed=5, inputs=6, outputs=3, final_relu=False))
    origin, u, v = rng.standard_normal((3, 6))
    planar = pim.plane_network(net, origin, u, v)
    assert planar.input_dim == 2 and len(planar.layers) == len(net.layers)
    st = rng.uniform(-2, 2, (400, 2))
    X = origin + st[:, :1] * u + st[:, 1:] * v
    np.testing.assert_allclose(planar.forward(st), net.forward(X), rtol=0, atol=1e-12)
    # the same slice's regions: one pattern per face, equal on the planar network and on the original
    partition = slice2d(net, origin, u, v, square(1.0))
    np.testing.assert_array_equal(partition.planar_network().patterns(partition.centres()).bits(),
                                  net.patterns(partition.witnesses()).bits())
    with pytest.raises(pim.errors.ShapeError, match="linearly independent"):
        pim.plane_network(net, origin, u, 2 * u)
    with pytest.raises(pim.errors.ShapeError, match="origin"):
        pim.plane_network(net, origin[:5], u, v)
