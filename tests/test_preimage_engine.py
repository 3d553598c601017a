"""The exact preimage engine against brute force, the forward pass and its own certificates.

Invariants: ``verify`` (contains against the forward pass) finds no disagreement off the boundary band; piece
volumes add up to the sampled fraction; on tiny networks the volume and the patterns equal brute-force
enumeration of every activation pattern by LP; an input lies in the preimage of its own activity at every
layer; budget-stopped results bound the truth (inner within, outer around); resuming gives the same set.
"""

import itertools

import numpy as np
import pytest

import preimage as pim
from preimage.errors import EmptyDomainError, PreimageError, ShapeError
from preimage.geometry import Box, Polytope
from preimage.network import IDENTITY, RELU, AffineMap, Layer, Network
from preimage.preimages.engine import Budget, preimage
from preimage.settings import current
from preimage.preimages.preimage_set import PreimageSet
from preimage.preimages.targets import (
    Activity, AnyOf, ArgMax, NeuronRange, OutputPolytope, Pattern, compile_target, satisfies,
)


def random_net(seed, sizes, bias=0.5):
    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        activation = RELU if i < len(sizes) - 2 else IDENTITY
        layers.append(Layer(AffineMap(rng.standard_normal((b, a)), bias * rng.standard_normal(b)), activation))
    return Network(layers)


def cube(d, r=2.0):
    return Box(-r * np.ones(d), r * np.ones(d))


def sampled_fraction(net, target, domain, n, seed):
    X = domain.sample(n, rng=seed)
    p = satisfies(compile_target(target, net), net, X).mean()
    return p, np.sqrt(max(p * (1 - p), 1e-12) / n)


CASES = [(0, [2, 5, 3]), (1, [2, 6, 6, 3]), (2, [3, 5, 4, 2]), (3, [2, 4, 4, 4, 2]), (4, [4, 6, 2]), (5, [6, 4, 3, 2])]


@pytest.mark.parametrize("seed, sizes", CASES)
@pytest.mark.parametrize("target", [ArgMax(0), NeuronRange(1, 0, -0.5, 0.5)], ids=["argmax", "neuron_range"])
def test_verify_and_fraction_agree_with_the_forward_pass(seed, sizes, target):
    net = random_net(seed, sizes)
    box = cube(sizes[0])
    result = preimage(net, target, box)
    assert result.complete
    check = result.verify(3000, rng=seed)
    assert check.ok, check
    fraction = result.fraction()
    p, stderr = sampled_fraction(net, target, box, 20_000, seed + 1)
    assert abs(fraction.value - p) <= 4 * stderr + 4 * fraction.stderr + 1e-9
    for piece in result.pieces:
        assert piece.checked and piece.polytope.contains(piece.witness)
        assert satisfies(compile_target(target, net), net, piece.witness[None])[0]


def _brute_force(net, target, box):
    """(volume, set of full-dimensional patterns) by one polytope per activation pattern of the network."""
    conjunction = compile_target(target, net)[0]
    d = net.input_dim
    widths = [layer.affine.out_features for layer in net.layers[:-1]]
    volume, patterns = 0.0, set()
    base = box.to_polytope()
    for bits in itertools.product([0, 1], repeat=sum(widths)):
        A, b = [base.A], [base.b]
        M, c = np.eye(d), np.zeros(d)
        start = 0
        for layer, width in zip(net.layers[:-1], widths):
            W = layer.affine.dense()
            Z, z = W @ M, W @ c + layer.affine.bias
            on = np.array(bits[start:start + width], dtype=bool)
            start += width
            # on: z >= 0 (-Z x <= z); off: z <= 0.
            A.append(np.where(on[:, None], -Z, Z))
            b.append(np.where(on, z, -z))
            M, c = np.where(on[:, None], Z, 0.0), np.where(on, z, 0.0)
        W = net.layers[-1].affine.dense()
        Y, y = W @ M, W @ c + net.layers[-1].affine.bias
        A.append(conjunction.output_A @ Y)
        b.append(conjunction.output_b - conjunction.output_A @ y)
        P = Polytope(np.vstack(A), np.concatenate(b))
        if P.is_empty() or P.dim < d:
            continue
        volume += P.volume().value
        patterns.add(bits)
    return volume, patterns


@pytest.mark.parametrize("seed", range(4))
def test_volume_and_patterns_equal_brute_force_on_tiny_networks(seed):
    net = random_net(10 + seed, [2, 3, 3, 2])
    box = cube(2)
    target = ArgMax(1)
    volume, patterns = _brute_force(net, target, box)
    result = preimage(net, target, box)
    assert result.volume().exact
    assert result.volume().value == pytest.approx(volume, rel=1e-9, abs=1e-12)
    regions = preimage(net, target, box, one_pattern_per_piece=True)
    found = {tuple(int(v) for v in piece.pattern) for piece in regions.pieces if piece.dim == 2}
    assert found == patterns
    assert regions.volume().value == pytest.approx(volume, rel=1e-9, abs=1e-12)
    for piece in regions.pieces:
        # The piece's affine map is the network's on the piece.
        assert np.allclose(piece.affine(piece.witness[None]), net.forward(piece.witness[None]), atol=1e-9)


@pytest.mark.parametrize("seed, sizes", [(20, [2, 4, 4, 2]), (21, [3, 5, 5, 3]), (22, [2, 3, 2])])
@pytest.mark.parametrize("bounded", [True, False], ids=["box", "whole_space"])
def test_an_input_lies_in_the_preimage_of_its_own_activity_at_every_layer(seed, sizes, bounded):
    net = random_net(seed, sizes)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, sizes[0])
    for layer in range(len(net.layers)):
        y = net.activations(x[None])[layer][0]
        result = preimage(net, Activity(layer, y), cube(sizes[0]) if bounded else None)
        assert result.contains(x), (layer, result)
        assert result.complete and result.kind != "empty"
        if result.dim > 0 and result.kind == "bounded":
            Z = result.sample(40, rng=seed)
            assert np.allclose(net.activations(Z)[layer], y, atol=1e-7)


def test_whole_space_preimage_of_a_dead_activity_is_unbounded():
    net = random_net(30, [2, 3, 2])
    result = preimage(net, Activity(0, np.zeros(3)), None)
    # {x : W x + b <= 0}: nonempty cones of three random halfplanes through different points, or empty.
    X = np.random.default_rng(0).uniform(-50, 50, (20_000, 2))
    truth = np.all(net.preactivations(X)[0] <= 0, axis=1)
    assert np.array_equal(result.contains(X[truth]), np.ones(truth.sum(), bool))
    if truth.any():
        assert result.kind == "unbounded"


def test_a_list_is_the_intersection_and_anyof_the_union():
    net = random_net(40, [2, 6, 6, 3])
    box = cube(2)
    a, b = ArgMax(0), NeuronRange(1, 2, -0.3, np.inf)
    X = box.sample(5000, rng=1)
    both = preimage(net, [a, b], box)
    either = preimage(net, AnyOf([a, b]), box)
    ta = satisfies(compile_target(a, net), net, X)
    tb = satisfies(compile_target(b, net), net, X)
    assert both.verify(3000, rng=2).ok and either.verify(3000, rng=3).ok
    inside_both, inside_either = both.contains(X), either.contains(X)
    assert np.mean(inside_both != (ta & tb)) < 0.002
    assert np.mean(inside_either != (ta | tb)) < 0.002
    # Union pieces never overlap in volume, so the volumes add.
    pa, pb = preimage(net, a, box).volume().value, preimage(net, b, box).volume().value
    assert either.volume().value == pytest.approx(pa + pb - both.volume().value, rel=1e-7)


def test_pieces_never_overlap():
    net = random_net(50, [2, 5, 5, 2])
    label = int(net.forward(np.zeros((1, 2)))[0].argmax())
    result = preimage(net, ArgMax(label), cube(2), one_pattern_per_piece=True)
    pieces = [p.polytope for p in result.pieces if p.dim == 2]
    assert len(pieces) > 3
    for P, Q in itertools.combinations(pieces, 2):
        both = P.intersect(Q)
        assert both.is_empty() or both.dim < 2


def test_budget_stopped_result_bounds_the_truth():
    net = random_net(60, [3, 8, 8, 3])
    box = cube(3)
    target = ArgMax(2)
    partial = preimage(net, target, box, budget=Budget(subdomains=15))
    assert not partial.complete and partial.undecided
    inner, outer = partial.inner, partial.outer
    X = box.sample(6000, rng=4)
    truth = satisfies(compile_target(target, net), net, X)
    assert not np.any(inner.contains(X) & ~truth & ~_near(inner, X))
    assert np.all(outer.contains(X) | ~truth)
    assert inner.volume().value <= outer.volume().value
    full = preimage(net, target, box)
    assert inner.volume().value - 1e-9 <= full.volume().value <= outer.volume().value + 1e-9


def _near(result, X, band=1e-7):
    return np.array([result._boundary_distance(x) <= band for x in X]) if len(X) else np.zeros(0, bool)


def test_resume_gives_the_same_set(tmp_path):
    net = random_net(70, [2, 6, 6, 2])
    box = cube(2)
    target = ArgMax(0)
    path = tmp_path / "search.ckpt"
    first = preimage(net, target, box, budget=Budget(subdomains=10), checkpoint=path)
    assert not first.complete and path.exists()
    resumed = preimage(net, target, box, checkpoint=path, resume=True)
    straight = preimage(net, target, box)
    assert resumed.complete
    assert len(resumed) == len(straight)
    assert resumed.volume().value == pytest.approx(straight.volume().value, rel=1e-12)
    with pytest.raises(PreimageError, match="another network"):
        preimage(net, ArgMax(1), box, checkpoint=path, resume=True)


def test_a_memory_bound_on_the_queue_searches_depth_first_and_gives_the_same_set(tmp_path, monkeypatch):
    import preimage.preimages.budget as budget

    net = random_net(71, [3, 8, 8, 3])
    box = cube(3)
    straight = preimage(net, ArgMax(0), box)
    monkeypatch.setattr(budget, "_QUEUE_BYTES", 1)
    path = tmp_path / "bounded.ckpt"
    first = preimage(net, ArgMax(0), box, budget=Budget(subdomains=40), checkpoint=path)
    assert not first.complete
    state = __import__("pickle").loads(path.read_bytes())
    assert state.stack and state.held == sum(node.nbytes for node in state.nodes())
    resumed = preimage(net, ArgMax(0), box, checkpoint=path, resume=True)
    bounded = preimage(net, ArgMax(0), box)
    for result in (resumed, bounded):
        assert result.complete and result.verify(2000, rng=7).ok
        assert result.volume().value == pytest.approx(straight.volume().value, rel=1e-9)
    assert len(resumed) == len(bounded)


def test_subdomains_likely_inside_come_first_and_leave_the_complete_set_unchanged(monkeypatch):
    """The queue weighs down subdomains whose centroid misses the target: the same complete set whatever the
    weight, and a budget-stopped inner bound larger than by volume alone."""
    from preimage.preimages import subdomain

    net = random_net(74, [3, 20, 20, 3])
    box = cube(3)
    target = ArgMax(1)
    ordered = preimage(net, target, box)
    monkeypatch.setattr(subdomain, "_OUTSIDE_WEIGHT", 1.0)
    plain = preimage(net, target, box)
    assert ordered.complete and plain.complete and len(ordered) == len(plain)
    assert ordered.volume().value == pytest.approx(plain.volume().value, rel=1e-12)
    budget = Budget(subdomains=300)
    by_volume = preimage(net, target, box, budget=budget).inner.volume().value
    monkeypatch.setattr(subdomain, "_OUTSIDE_WEIGHT", 0.05)
    partial = preimage(net, target, box, budget=budget)
    assert partial.inner.volume().value > by_volume
    X = box.sample(4000, rng=10)
    truth = satisfies(compile_target(target, net), net, X)
    assert np.all(partial.outer.contains(X) | ~truth)


def test_subdomains_shed_to_their_facets_in_a_full_queue_give_the_same_set(monkeypatch):
    """Over the queue's memory cap, waiting cells keep only their facets and are rebuilt when taken: the same
    set, and a rebuilt cell has the vertices it had."""
    import preimage.preimages.budget as budget
    from preimage.preimages.subdomain import _Node
    from preimage.geometry.cells import Cell

    net = random_net(76, [3, 8, 8, 3])
    box = cube(3)
    straight = preimage(net, ArgMax(0), box)
    restored = []
    original = _Node.restore

    def counted(node):
        restored.append(not isinstance(node.cell, Cell) and node.cell is not None)
        original(node)

    monkeypatch.setattr(_Node, "restore", counted)
    monkeypatch.setattr(budget, "_QUEUE_BYTES", 10 ** 12)
    monkeypatch.setattr(budget, "_SHED_SHARE", 0.0)
    shed = preimage(net, ArgMax(0), box)
    assert sum(restored) > 10
    assert shed.complete and len(shed) == len(straight) and shed.verify(2000, rng=11).ok
    assert shed.volume().value == pytest.approx(straight.volume().value, rel=1e-9)

    rng = np.random.default_rng(12)
    cell = Cell.box(-np.ones(3), np.ones(3)).clip_rows(rng.standard_normal((6, 3)), 0.5 + rng.random(6))
    node = _Node(0, -np.ones(3), np.ones(3), np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)), np.zeros(0), 0,
                 None, None, np.zeros(0, np.int8))
    node.set_cell(cell)
    before = node.nbytes
    node.shed()
    assert not isinstance(node.cell, Cell) and node.nbytes < before
    node.restore()
    key = lambda V: V[np.lexsort(V.T[::-1])]
    assert node.cell.V.shape == cell.V.shape and np.allclose(key(node.cell.V), key(cell.V), atol=1e-12)


def test_pieces_kept_without_their_vertices_give_the_same_set(monkeypatch):
    """Beyond a memory budget, pieces keep their facets, vertex mean and box only: the same set, volume and
    membership."""
    net = random_net(72, [4, 8, 8, 3])
    box = cube(4)
    full = preimage(net, ArgMax(2), box)
    monkeypatch.setattr("preimage.preimages.search._PIECE_VERTEX_BYTES", 0)
    small = preimage(net, ArgMax(2), box)
    assert len(small) == len(full) and small.complete
    assert all("_vertex_set" not in p.polytope.__dict__ and "_vertex_box" in p.polytope.__dict__
               for p in small.pieces)
    assert small.volume().value == pytest.approx(full.volume().value, rel=1e-9)
    X = box.sample(3000, rng=8)
    assert np.array_equal(small.membership(X), full.membership(X))
    assert small.verify(2000, rng=9).ok


def test_save_and_load_keep_the_pieces(tmp_path):
    net = random_net(80, [2, 4, 3])
    box = cube(2)
    result = preimage(net, ArgMax(1), box, one_pattern_per_piece=True)
    path = result.save(tmp_path / "set.npz")
    loaded = PreimageSet.load(path, net=net, target=ArgMax(1), domain=box)
    X = box.sample(2000, rng=5)
    assert np.array_equal(loaded.contains(X), result.contains(X))
    assert len(loaded) == len(result) and loaded.complete
    for a, b in zip(loaded.pieces, result.pieces):
        assert np.array_equal(a.pattern, b.pattern)
        assert np.allclose(a.affine.dense(), b.affine.dense())
    assert loaded.verify(1000, rng=6).ok


@pytest.mark.parametrize("seed, sizes", [(81, [2, 6, 6, 3]), (82, [4, 8, 8, 3]), (83, [6, 8, 3])])
def test_membership_by_vertex_boxes_equals_the_plain_row_test(seed, sizes):
    """Pieces read off cells test only the points of their boxes; the same pieces as plain polytopes (as
    after ``load``) test every point: both agree, on random points and on the pieces' vertices and
    points a rounding away from them."""
    net = random_net(seed, sizes)
    box = cube(sizes[0])
    result = preimage(net, ArgMax(1), box)
    assert result.pieces and all("_vertex_box" in p.polytope.__dict__ for p in result.pieces)
    plain = PreimageSet([type(p)(Polytope(p.polytope.A, p.polytope.b), p.witness, p.checked) for p in result.pieces],
                        net, ArgMax(1), box, True, [], {})
    rng = np.random.default_rng(seed)
    vertices = np.vstack([p.polytope.__dict__["_vertex_set"] for p in result.pieces[:40]])
    X = np.vstack([box.sample(3000, rng=seed), vertices,
                   vertices + 1e-9 * rng.standard_normal(vertices.shape),
                   vertices + 1e-5 * rng.standard_normal(vertices.shape)])
    assert np.array_equal(result.membership(X), plain.membership(X))
    assert np.array_equal(result.contains(X), plain.contains(X))
    assert result.contains(X[0]) == bool(plain.contains(X[0]))


def test_output_polytope_and_pattern_targets():
    net = random_net(90, [2, 4, 4, 2])
    box = cube(2)
    x = np.array([0.2, 0.1])
    bits = np.concatenate([z[0] > 0 for z in net.preactivations(x[None])[:2]])
    result = preimage(net, Pattern(bits), box)
    assert result.contains(x) and len(result) == 1 and result.verify(2000, rng=7).ok
    y = net.forward(x[None])[0]
    target = OutputPolytope(np.eye(2), y + 0.5)
    found = preimage(net, target, box)
    assert found.contains(x) and found.verify(2000, rng=8).ok


def test_bad_requests_are_refused_clearly():
    net = random_net(100, [2, 3, 2])
    with pytest.raises(ShapeError, match="3 coordinates"):
        preimage(net, ArgMax(0), cube(3))
    with pytest.raises(EmptyDomainError, match="empty"):
        preimage(net, ArgMax(0), Polytope(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([-1.0, -1.0])))
    with pytest.raises(ShapeError):
        preimage(net, Activity(0, np.zeros(5)), cube(2))
    with pytest.raises(ShapeError):
        preimage(net, NeuronRange(7, 0, 0.0, 1.0), cube(2))
    with pytest.raises(TypeError, match="Budget"):
        preimage(net, ArgMax(0), cube(2), budget=10)


def test_plot_draws_every_piece(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    net = random_net(110, [2, 5, 2])
    result = preimage(net, ArgMax(0), cube(2), one_pattern_per_piece=True)
    fig, ax = plt.subplots()
    result.plot(ax)
    assert len(ax.patches) == sum(p.dim == 2 for p in result.pieces)
    plt.close(fig)


@pytest.mark.parametrize("seed, sizes", [(0, [2, 8, 6, 3]), (1, [3, 10, 4]), (2, [4, 7, 5, 3])])
def test_vertex_search_and_lp_search_give_the_same_set(seed, sizes, monkeypatch):
    """Subdomains with vertices (low-dimensional boxes) and the LP route agree on volume and on patterns."""
    import preimage.preimages.search as search

    net = random_net(seed, sizes)
    d = sizes[0]
    box = Box(np.full(d, -1.0), np.full(d, 1.5))
    for target in (ArgMax(0), NeuronRange(1, 0, -0.2, 0.4)):
        with_cells = preimage(net, target, box, one_pattern_per_piece=True)
        monkeypatch.setattr(search, "_CELL_DIM", 0)
        with_lps = preimage(net, target, box, one_pattern_per_piece=True)
        monkeypatch.undo()
        assert with_cells.complete and with_lps.complete
        assert with_cells.stats["lps"] == 0 and with_lps.stats["lps"] > 0
        assert with_cells.volume().value == pytest.approx(with_lps.volume().value, rel=1e-9, abs=1e-12)
        full = [{p.pattern.tobytes() for p in s.pieces if p.polytope.dim == d} for s in (with_cells, with_lps)]
        assert full[0] == full[1]
        assert all(p.checked for p in with_cells.pieces)


@pytest.mark.parametrize("seed, sizes", [(2, [3, 5, 4, 2]), (4, [4, 6, 2])])
def test_pieces_of_the_vertex_search_know_their_facts_without_lps(seed, sizes):
    """Cell pieces carry hull, boundedness and vertices; each equals what LPs find on the bare rows."""
    net = random_net(seed, sizes)
    result = preimage(net, ArgMax(0), cube(sizes[0]))
    assert result.complete and result.pieces
    for piece in result.pieces[:40]:
        P = piece.polytope
        bare = Polytope(P.A, P.b)
        assert P.dim == bare.dim == sizes[0] and P.is_bounded() and not P.is_empty()
        assert bare.minimal().n_ineq == P.n_ineq
        # A vertex within feasibility_tol (relative to the cell's extent) of a row counts as on it, so the
        # hull of the cell's vertices and the polytope of its rows agree to a few multiples of that tolerance.
        np.testing.assert_allclose(P.volume().value, bare.volume().value, rtol=1e3 * current().feasibility_tol)


@pytest.mark.parametrize("seed, sizes", [(90, [3, 12, 10, 3]), (91, [4, 10, 8, 4]), (92, [5, 8, 6, 3])])
@pytest.mark.parametrize("pays", [0.0, 0.25], ids=["every_cut", "cuts_that_pay"])
def test_relaxation_cuts_keep_the_set_exact_and_disjoint(seed, sizes, pays, monkeypatch):
    """Cells cut by the relaxation's affine bounds (a proven-inside piece, a dropped part, the rest in convex
    parts) give the same set as the search that splits down to single patterns, which makes no cut."""
    from preimage.preimages.search import _Search

    cuts = []
    original = _Search._cut

    def counted(self, node, bounds, i):
        out = original(self, node, bounds, i)
        cuts.append(out is not None)
        return out

    monkeypatch.setattr(_Search, "_cut", counted)
    monkeypatch.setattr("preimage.preimages.search._CUT_PAYS", pays)
    monkeypatch.setattr("preimage.preimages.search._CUT_UNSTABLE", 0)
    net = random_net(seed, sizes)
    d = sizes[0]
    box = Box(np.full(d, -1.0), np.full(d, 1.5))
    target = ArgMax(0)
    cut = preimage(net, target, box)
    assert any(cuts)
    cuts.clear()
    regions = preimage(net, target, box, one_pattern_per_piece=True)
    assert not cuts
    assert cut.complete and regions.complete
    assert cut.volume().value == pytest.approx(regions.volume().value, rel=1e-7, abs=1e-12)
    assert cut.verify(3000, rng=seed).ok
    assert all(p.checked for p in cut.pieces)
    # Pieces meet only on boundaries: no two share an interior point.
    full = [p.polytope for p in cut.pieces if p.dim == d][:25]
    for P, Q in itertools.combinations(full, 2):
        both = P.intersect(Q)
        assert both.is_empty() or both.dim < d
