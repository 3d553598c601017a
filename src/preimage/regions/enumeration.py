"""Every linear region of a domain, the region adjacency graph, and paths through it.

The regions come from the one exact search of the package: :func:`preimage.preimage` with a target every
input meets (the empty conjunction ``[]``) and ``one_pattern_per_piece=True``, so each piece it returns is
one region (a full-dimensional polytope with one activation pattern). Two regions are neighbours across
a facet; each facet lies on the zero set of the neuron whose bit flips there, found by matching the
facet's row against the region's neuron hyperplanes. The graph is a networkx ``Graph`` whose edges carry
that neuron.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from .. import settings as _settings
from ..errors import PreimageError, ShapeError
from ..geometry import Box, Polytope
from ..network import Network
from ..patterns.packed import pack_bits
from .local import Region, _as_network, region_rows
from .partition import line
from .whole_space import box_pieces, default_scale, plane_pieces, region_facets, whole_space_pieces

__all__ = ["RegionGraph", "RegionPath", "regions"]


@dataclass(eq=False)
class FoundRegion:
    """One region of an enumeration: polytope (minimal H-form, within the domain), witness (d,) inside it,
    pattern (kinked units,) bool, and the :class:`Region` with its local maps."""

    polytope: Polytope
    witness: np.ndarray
    pattern: np.ndarray
    region: Region

    @property
    def affine(self):
        return self.region.affine


@dataclass(frozen=True)
class RegionPath:
    """A path of regions: indices into ``RegionGraph.regions``, an input realising each (inside it),
    and ``steps``: the Hamming distance of consecutive patterns (their sum is the path's length)."""

    regions: list
    inputs: np.ndarray
    steps: list

    @property
    def length(self) -> int:
        return int(sum(self.steps))


def _key(pattern: np.ndarray) -> bytes:
    return pack_bits(np.asarray(pattern, dtype=bool)[None, :]).tobytes()


def _unit_names(net: Network) -> list[tuple[int, int]]:
    return [(layer, unit) for layer in net.hidden for unit in range(net.layers[layer].out_features)]


class RegionGraph:
    """The linear regions of a domain and their adjacency graph.

    regions : list of :class:`FoundRegion`. graph : networkx Graph on region indices; node attribute
    ``pattern``, edge attributes ``neuron`` ((layer, unit) that flips across the shared facet) and
    ``hamming`` (bits that differ). complete : False when a budget stopped the search (then some regions
    are missing). preimage_set : the engine's result the regions came from.
    """

    def __init__(self, net: Network, found: list[FoundRegion], graph: nx.Graph, complete: bool, preimage_set,
                 domain):
        self.net, self.regions, self.graph, self.complete = net, found, graph, complete
        self.preimage_set, self.domain = preimage_set, domain
        self._index = {_key(r.pattern): i for i, r in enumerate(found)}

    def __len__(self) -> int:
        return len(self.regions)

    def __repr__(self) -> str:
        return (f"RegionGraph({len(self)} regions, {self.graph.number_of_edges()} adjacencies"
                f"{'' if self.complete else ', incomplete'})")

    def index(self, pattern) -> int | None:
        """The index of the region with this pattern, or None."""
        return self._index.get(_key(pattern))

    def locate(self, X) -> np.ndarray:
        """The region of each input (n, d) -> (n,) int, -1 where no enumerated region has its pattern."""
        X, _ = self.net.as_batch(X)
        bits = self.net.patterns(X).bits()
        return np.array([self._index.get(_key(b), -1) for b in bits], dtype=np.int64)

    def crossed(self, x0, x1) -> RegionPath:
        """The regions the segment x0 -> x1 crosses, in order, with a point of each piece (its midpoint)."""
        L = line(self.net, x0, x1)
        mids = L.points(L.midpoints())
        indices = list(self.locate(mids))
        bits = L.patterns.bits()
        steps = [int(np.sum(bits[i] != bits[i + 1])) for i in range(len(L) - 1)]
        return RegionPath(indices, mids, steps)

    def shortest_path(self, x0, x1, *, layer: int | None = None) -> RegionPath:
        """The shortest path in the region graph from x0's region to x1's, in Hamming steps of the pattern.

        layer : an index into ``net.layers`` (count only that layer's bits) or None (every kinked unit).
        With a layer, a hop across a facet of another layer costs nothing, so each hop also costs
        ``1 / (2 (n + 1))`` for n regions (under one bit over any path): among the paths of least length
        the one of fewest hops wins. The inputs are each region's witness (the end points themselves at
        the ends); ``steps`` counts the bits of ``layer`` (all bits when None).
        """
        ends = self.locate(np.stack([np.asarray(x0, dtype=np.float64).reshape(-1),
                                     np.asarray(x1, dtype=np.float64).reshape(-1)]))
        if np.any(ends < 0):
            raise PreimageError("an end point lies in no enumerated region (outside the domain, or the "
                                "enumeration is incomplete)")
        if layer is None:
            weight = "hamming"
        else:
            if layer not in self.net.hidden:
                raise ShapeError(f"layer {layer} has no pattern; layers with patterns: {self.net.hidden}")
            mask = np.array([lay == layer for lay, _ in _unit_names(self.net)])
            hop = 1.0 / (2.0 * (len(self) + 1))

            def weight(a, b, _data):
                return np.count_nonzero((self.regions[a].pattern != self.regions[b].pattern) & mask) + hop
        try:
            nodes = nx.shortest_path(self.graph, int(ends[0]), int(ends[1]), weight=weight)
        except nx.NetworkXNoPath:
            raise PreimageError("the two regions are not connected in the region graph") from None
        inputs = np.stack([self.regions[i].witness for i in nodes])
        inputs[0] = np.asarray(x0, dtype=np.float64).reshape(-1)
        inputs[-1] = np.asarray(x1, dtype=np.float64).reshape(-1)
        if layer is None:
            steps = [self.graph.edges[a, b]["hamming"] for a, b in zip(nodes[:-1], nodes[1:])]
        else:
            steps = [int(np.count_nonzero((self.regions[a].pattern != self.regions[b].pattern) & mask))
                     for a, b in zip(nodes[:-1], nodes[1:])]
        return RegionPath(nodes, inputs, steps)


def _neuron_rows(net: Network, region: Region) -> tuple[np.ndarray, np.ndarray]:
    """Every kinked unit's hyperplane on the region, normalised: (K, d) normals, (K,) offsets."""
    N = np.vstack([region.maps[i][0] for i in net.hidden])
    c = np.concatenate([region.maps[i][1] for i in net.hidden])
    norms = np.linalg.norm(N, axis=1)
    norms[norms == 0] = np.inf
    return N / norms[:, None], c / norms


def _facet_neurons(polytope: Polytope, normals: np.ndarray, offsets: np.ndarray, tol: float) -> np.ndarray:
    """For each inequality row ``a.x <= beta`` of the polytope, the unit whose zero set it is (-1: none)."""
    A, b = polytope.A, polytope.b
    if A.shape[0] == 0 or normals.shape[0] == 0:
        return np.full(A.shape[0], -1, dtype=np.int64)
    dots = A @ normals.T
    sign = np.sign(dots)
    # a = s n and beta = -s c describe the same line as n.x + c = 0.
    scale = 1.0 + np.abs(b)[:, None] + np.abs(offsets)[None, :]
    mismatch = (1.0 - np.abs(dots)) + np.abs(b[:, None] + sign * offsets[None, :]) / scale
    best = np.argmin(mismatch, axis=1)
    ok = mismatch[np.arange(A.shape[0]), best] <= tol
    return np.where(ok, best, -1)


def _probe_across(net: Network, polytope: Polytope, row: int) -> np.ndarray | None:
    """A point just beyond facet ``row`` of the polytope (from a relative-interior point of the facet)."""
    A, b = polytope.A, polytope.b
    others = np.delete(np.arange(A.shape[0]), row)
    facet = Polytope(A[others], b[others], np.vstack([polytope.E, A[row:row + 1]]),
                     np.concatenate([polytope.f, b[row:row + 1]]))
    if facet.is_empty():
        return None
    point = facet.relative_interior_point()
    _, radius = polytope.chebyshev()
    step = np.sqrt(_settings.current().feasibility_tol) * (1.0 + np.linalg.norm(point))
    if np.isfinite(radius):
        step = min(step, 0.5 * radius)
    return point + step * A[row]


def _assemble(net: Network, pieces, R: float, centre, domain: Box | None):
    """The regions of the pieces' patterns, each polytope read off its pieces (sign rows, and the box's)."""
    d = net.input_dim
    X = np.array([p.witness for p in pieces]).reshape(-1, d)
    bits = net.patterns(X).bits() if len(X) else np.zeros((0, 0), dtype=bool)
    groups: dict[bytes, list[int]] = {}
    for i, pattern in enumerate(bits):
        groups.setdefault(_key(pattern), []).append(i)
    box_A = np.zeros((0, d)) if domain is None else np.vstack([-np.eye(d), np.eye(d)])
    box_b = np.zeros(0) if domain is None else np.concatenate([-domain.lo, domain.hi])
    found = []
    for members in groups.values():
        first = members[0]
        reg = Region(net, bits[first], point=X[first], domain=domain)
        A, b, _ = region_rows(net, reg.maps, reg.slopes)
        polytope = region_facets([pieces[i] for i in members], np.vstack([A, box_A]), np.concatenate([b, box_b]),
                                 R, centre)
        if polytope is None:
            polytope = reg.polytope
        else:
            polytope.__dict__["_feasible_point"] = X[first]
            reg.__dict__["polytope"] = polytope
        found.append(FoundRegion(polytope, X[first], bits[first], reg))
    return found


def _as_set(net: Network, found, domain, complete: bool, stats: dict):
    from ..preimages.preimage_set import Piece, PreimageSet

    out = [Piece(r.polytope, r.witness, True, r.pattern, r.region.affine) for r in found]
    return PreimageSet(out, net=net, target=[], domain=domain, complete=complete, undecided=[], stats=stats)


def _whole_space(net: Network, budget, progress):
    """The regions of all of R^d, each assembled from its pieces on the box and the side faces."""
    d = net.input_dim
    R = default_scale(net)
    if d == 2:
        pieces, complete = plane_pieces(net, scale=R), True
        stats = {"search": "slice2d"}
    else:
        box_set, pieces, complete = whole_space_pieces(net, scale=R, budget=budget, progress=progress)
        stats = dict(box_set.stats, search="engine")
    found = _assemble(net, pieces, R, np.zeros(d), None)
    stats.update(charts=2 * d, box_half_width=R)
    return found, _as_set(net, found, None, complete, stats)


def _plane_box(net: Network, box: Box):
    """The regions of a 2-input network within a rectangle, from its exact partition (``slice2d``)."""
    pieces, centre, R = box_pieces(net, box)
    found = _assemble(net, pieces, R, centre, box)
    return found, _as_set(net, found, box, True, {"search": "slice2d"})


def regions(net, domain=None, *, budget=None, progress: bool | None = False) -> RegionGraph:
    """Every linear region inside ``domain`` (a Box, a Polytope, or None: all of R^d) and their graph.

    For low-dimensional inputs (the search visits every region). All of R^d is covered by 1 + 2d bounded
    faces (a box and the charts at infinity of :mod:`.whole_space`): in the plane each face is partitioned
    exactly by ``slice2d``; up to 8 inputs each is searched by the engine's vertex search; above, the engine
    searches R^d by LPs. A region's facets are read off its pieces on the faces, without LPs. A rectangle
    in the plane is partitioned by ``slice2d`` too; other domains go through the engine.
    budget : a ``pim.Budget`` for the searches (the plane's partition takes none); when it stops a search,
    ``complete`` is False and the graph holds the regions found so far.
    Returns a :class:`RegionGraph`.
    """
    from ..preimages.engine import preimage
    from ..preimages.search import _CELL_DIM

    net = _as_network(net)
    if not net.hidden:
        raise ShapeError("the network has no layer with a kink: it is affine, one region")
    if domain is not None and not isinstance(domain, (Box, Polytope)):
        raise TypeError(f"domain must be a Box, a Polytope or None, got {type(domain).__name__}")
    d = net.input_dim
    if domain is None and d <= _CELL_DIM:
        found, found_set = _whole_space(net, budget, progress)
    elif d == 2 and isinstance(domain, Box) and domain.dim == 2 and np.all(domain.lo < domain.hi):
        found, found_set = _plane_box(net, domain)
    else:
        found_set = preimage(net, [], domain, budget=budget, one_pattern_per_piece=True, progress=progress)
        found = []
        for piece in found_set.pieces:
            if piece.polytope.dim < d:
                continue
            pattern = net.patterns(piece.witness[None]).bits()[0]
            reg = Region(net, pattern, point=piece.witness, domain=domain, polytope=piece.polytope)
            found.append(FoundRegion(piece.polytope, piece.witness, pattern, reg))
    graph = nx.Graph()
    for i, r in enumerate(found):
        graph.add_node(i, pattern=r.pattern)
    names = _unit_names(net)
    index = {_key(r.pattern): i for i, r in enumerate(found)}
    tol = np.sqrt(_settings.current().feasibility_tol)
    for i, r in enumerate(found):
        normals, offsets = _neuron_rows(net, r.region)
        units = _facet_neurons(r.polytope, normals, offsets, tol)
        for row, unit in enumerate(units):
            j = None
            if unit >= 0:
                flipped = r.pattern.copy()
                flipped[unit] = ~flipped[unit]
                j = index.get(_key(flipped))
            if j is None and (unit >= 0 or domain is None):
                probe = _probe_across(net, r.polytope, row)
                if probe is not None:
                    j = index.get(_key(net.patterns(probe[None]).bits()[0]))
            if j is None or j == i or graph.has_edge(i, j):
                continue
            differ = np.flatnonzero(r.pattern != found[j].pattern)
            neuron = names[int(unit)] if unit >= 0 else names[int(differ[0])]
            graph.add_edge(i, j, neuron=neuron, hamming=int(differ.size))
    return RegionGraph(net, found, graph, found_set.complete, found_set, domain)
