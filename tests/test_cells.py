"""Cells (rows + vertices + incidence): every cut checked against an independent H-form oracle."""

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from preimage.geometry import Polytope
from preimage.geometry.cells import Cell


def _key(V, scale=1.0):
    return sorted(map(tuple, np.round(np.asarray(V) / scale, 6)))


def _random_cuts(rng, cell, count, degenerate=0.3):
    rows = []
    for _ in range(count):
        d = cell.dim_ambient
        a = rng.normal(size=d)
        centre = cell.centroid()
        beta = a @ centre + rng.normal() * 0.3 * float(np.ptp(cell.V, axis=0).max())
        if rng.random() < degenerate:   # through a vertex, or along a coordinate through the centre
            if rng.random() < 0.5:
                beta = a @ cell.V[rng.integers(cell.n_vertices)]
            else:
                a = np.eye(d)[rng.integers(d)]
                beta = centre @ a
        rows.append((a, beta))
    return rows


@pytest.mark.parametrize("seed", range(4))
def test_cuts_match_qhull_vertices_and_lp_facets(seed):
    rng = np.random.default_rng(seed)
    for _ in range(20):
        d = int(rng.integers(2, 6))
        lo = rng.uniform(-2, 0, size=d)
        hi = lo + rng.uniform(0.1, 2, size=d)
        cell = Cell.box(lo, hi)
        A = [np.vstack([-np.eye(d), np.eye(d)])]
        b = [np.concatenate([-lo, hi])]
        for a, beta in _random_cuts(rng, cell, int(rng.integers(1, 12))):
            below, above = cell.split(a, beta)
            P = Polytope(np.vstack(A + [a[None, :]]), np.concatenate(b + [[beta]]))
            Q = Polytope(np.vstack(A + [-a[None, :]]), np.concatenate(b + [[-beta]]))
            for part, oracle in ((below, P), (above, Q)):
                if part is None:
                    assert oracle.is_empty() or oracle.dim < d
                    continue
                if part.dim() == d:
                    assert oracle.dim == d
                    assert _key(part.V) == _key(oracle.vertices())
                    assert part.facets().size == oracle.minimal().n_ineq
                    assert oracle.contains(part.centroid())
            if below is None or below.dim() < d:
                break
            cell = below
            A.append(a[None, :])
            b.append([beta])


def test_incidence_is_what_it_says():
    rng = np.random.default_rng(7)
    cell = Cell.box(-np.ones(4), np.ones(4))
    for a, beta in _random_cuts(rng, cell, 10):
        nxt = cell.clip(a, beta)
        if nxt is None or nxt.dim() < 4:
            break
        cell = nxt
    slack = cell.V @ cell.A.T - cell.b
    assert np.all(slack <= 1e-9)
    assert np.all(np.abs(slack[cell.Z]) <= 1e-9)
    assert np.all(slack[~cell.Z] < -1e-12)


def test_volume_of_pieces_adds_up():
    rng = np.random.default_rng(3)
    cells = [Cell.box(np.zeros(3), np.ones(3))]
    for _ in range(25):
        i = int(rng.integers(len(cells)))
        cell = cells.pop(i)
        a = rng.normal(size=3)
        below, above = cell.split(a, a @ cell.centroid())
        cells += [c for c in (below, above) if c is not None and c.dim() == 3]
    total = sum(ConvexHull(c.V).volume for c in cells)
    assert total == pytest.approx(1.0, rel=1e-10)


@pytest.mark.parametrize("shift, scale", [(1e7, 1.0), (0.0, 1e-6), (-3e5, 1e3)])
def test_translation_and_scaling_keep_the_combinatorics(shift, scale):
    rng = np.random.default_rng(11)
    cuts = [(rng.normal(size=3), 0.2 + 0.3 * abs(rng.normal())) for _ in range(8)]   # the origin stays inside
    cuts.append((np.array([1.0, 0.0, 0.0]), 0.0))                 # through vertices of the box below
    base = Cell.box(-np.ones(3), np.ones(3))
    moved = Cell.box(shift + scale * -np.ones(3), shift + scale * np.ones(3))
    for a, beta in cuts:
        base = base.clip(a, beta)
        moved = moved.clip(a, a @ np.full(3, shift) + scale * beta)
    assert base.n_vertices == moved.n_vertices
    assert base.facets().size == moved.facets().size
    assert _key(base.V) == _key((moved.V - shift) / scale)


def test_faces_empty_parts_and_ranges():
    cell = Cell.box(np.zeros(2), np.ones(2))
    below, above = cell.split(np.array([1.0, 1.0]), 2.0)         # touches the corner (1, 1) only
    assert below.n_vertices == 4 and above.n_vertices == 1 and above.dim() == 0
    assert cell.clip(np.array([1.0, 0.0]), -0.5) is None
    low, high = cell.range(np.array([[1.0, -2.0]]), np.array([0.5]))
    assert low[0] == -1.5 and high[0] == 1.5
    with pytest.raises(ValueError):
        Cell.box(np.zeros(2), np.array([1.0, 0.0]))
    with pytest.raises(ValueError):
        cell.clip(np.zeros(2), 1.0)


def _combinatorial_edges(cell, ip, im):
    """Edges by the plain combinatorial test: shared rows, and no third vertex on all of them."""
    Z = cell.Z
    Zf = Z.astype(float)
    need = cell.dim_ambient - 1 if cell.dim() == cell.dim_ambient else 0
    cp, cm = np.nonzero(Zf[ip] @ Zf[im].T >= need)
    pi, mj = ip[cp], im[cm]
    common = Z[pi] & Z[mj]
    holders = (common.astype(float) @ Zf.T) == common.sum(axis=1)[:, None]
    adjacent = holders.sum(axis=1) == 2
    return set(zip(pi[adjacent].tolist(), mj[adjacent].tolist()))


@pytest.mark.parametrize("seed", range(3))
def test_edges_by_line_keys_equal_the_combinatorial_test(seed):
    """Edges between simple vertices are matched by their lines' row sets; the set of edges crossing every
    cut equals the plain combinatorial test's, with cuts through vertices (degenerate) among them."""
    rng = np.random.default_rng(seed)
    checked = 0
    for _ in range(60):
        d = int(rng.integers(2, 9))
        cell = Cell.box(-np.ones(d), np.ones(d))
        for _ in range(int(rng.integers(1, 20))):
            a = rng.normal(size=d)
            if rng.random() < 0.3:
                beta = float(cell.V[rng.integers(cell.n_vertices)] @ a)
            else:
                beta = float(0.3 * rng.normal())
            _, _, _, plus, minus = cell._sides(a, beta)
            if plus.any() and minus.any():
                i, j = cell._edges(plus, minus)
                pairs = list(zip(i.tolist(), j.tolist()))
                assert len(pairs) == len(set(pairs))
                assert set(pairs) == _combinatorial_edges(cell, np.flatnonzero(plus), np.flatnonzero(minus))
                checked += 1
            cell = cell.clip(a, beta)
            if cell is None or cell.dim() < d:
                break
    assert checked > 100
