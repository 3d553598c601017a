"""Approximate geodesics in activation-pattern space between two inputs (Swiniarski, Bruna & Cho, sec. 5).

A path x_0 = x, x_1, ..., x_T = x' is scored by the Hamming distances of consecutive patterns.

* ``conditional_geodesic`` (the paper's Algorithm 1, conditioned on a dataset): the path through
  dataset inputs that minimises the summed Hamming distance, found by Dijkstra on the symmetrised
  k-nearest-neighbour graph of the patterns of {x, x', data} (``hamming_knn``); each hop also costs
  ``1 / (2 (n + 1))``, less than one bit over any path, so among paths of least Hamming length the one
  of fewest hops wins and equal patterns are still joined. k doubles until x and x' are connected.
* ``midpoint_geodesic``: recursive midpoints. ``variant="linear"`` bisects the straight segment until
  consecutive patterns differ in at most ``max_step`` bits (or ``depth`` halvings); ``variant="data"``
  takes as midpoint of a and b the dataset input m minimising ``max(H(a, m), H(m, b))`` (ties: the
  smaller ``|a - m| + |m - b|``), and recurses while that beats ``H(a, b)``.
* ``exact_geodesic``: exact paths through the linear regions (the regions package). ``method="segment"``
  is every region the straight segment crosses (``regions.line``), one point per region;
  ``method="graph"`` is the shortest path, in Hamming steps, in the region adjacency graph between the
  regions of x and x' (``regions.regions`` and ``RegionGraph.shortest_path``), in the input space for
  low-dimensional inputs or a given domain, otherwise in the plane through x, x' and a third point.
  The result carries the conditional and midpoint geodesics' paths beside it for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from .._rng import as_generator
from ..errors import PreimageError, ShapeError
from .hamming import as_words, hamming, hamming_knn

__all__ = ["GeodesicPath", "ExactGeodesic", "path_hamming", "conditional_geodesic", "midpoint_geodesic",
           "exact_geodesic"]


@dataclass(frozen=True)
class GeodesicPath:
    """points (T + 1, d), first and last the given inputs; steps (T,) int64 Hamming distances of consecutive
    patterns; data_index (T + 1,) the dataset row of each point (-1 for the ends and new midpoints)."""

    points: np.ndarray
    steps: np.ndarray
    data_index: np.ndarray

    @property
    def length(self) -> int:
        """Summed Hamming distance along the path."""
        return int(self.steps.sum())

    @property
    def euclidean_steps(self) -> np.ndarray:
        return np.linalg.norm(np.diff(self.points, axis=0), axis=1)


def _words(net, X, layer) -> np.ndarray:
    patterns = net.patterns(X)
    if layer is None:
        return as_words(patterns)
    if layer not in patterns.layers:
        raise ShapeError(f"layer {layer} has no pattern; layers with patterns: {patterns.layers}")
    return as_words(patterns, patterns.layers.index(layer))


def path_hamming(net, points, layer: int | None = None) -> np.ndarray:
    """Hamming distances between the patterns of consecutive points (T + 1, d) -> (T,) int64.

    layer : an index into ``net.layers`` (one layer's pattern) or None (all kinked layers).
    """
    words = _words(net, points, layer)
    return hamming(words[:-1], words[1:])


def _ends(net, x0, x1) -> np.ndarray:
    x0, _ = net.as_batch(x0)
    x1, _ = net.as_batch(x1)
    if len(x0) != 1 or len(x1) != 1:
        raise ShapeError("a geodesic joins two single inputs")
    return np.vstack([x0, x1])


def conditional_geodesic(net, x0, x1, data, *, k: int = 10, layer: int | None = None) -> GeodesicPath:
    """The least-Hamming path from x0 to x1 through inputs of ``data`` (m, d) (see the module docstring)."""
    ends = _ends(net, x0, x1)
    data, _ = net.as_batch(data)
    X = np.vstack([ends, data])
    words = _words(net, X, layer)
    n = len(X)
    hop = 1.0 / (2.0 * (n + 1))
    k = max(1, min(int(k), n - 1))
    while True:
        idx, dist = hamming_knn(words, k)
        rows = np.repeat(np.arange(n), k)
        graph = coo_matrix((dist.ravel() + hop, (rows, idx.ravel())), shape=(n, n)).tocsr()
        graph = graph.maximum(graph.T)
        lengths, previous = dijkstra(graph, directed=False, indices=0, return_predecessors=True)
        if np.isfinite(lengths[1]) or k == n - 1:
            break
        k = min(2 * k, n - 1)
    order = [1]
    while order[-1] != 0:
        order.append(int(previous[order[-1]]))
    order = np.array(order[::-1])
    data_index = np.where(order >= 2, order - 2, -1)
    return GeodesicPath(X[order], hamming(words[order[:-1]], words[order[1:]]), data_index)


def midpoint_geodesic(net, x0, x1, *, variant: str = "linear", data=None, depth: int = 8, max_step: int = 1,
                      layer: int | None = None) -> GeodesicPath:
    """A path from x0 to x1 by recursive midpoints (see the module docstring); ``data`` (m, d) for "data"."""
    if variant not in ("linear", "data"):
        raise ShapeError(f"variant must be 'linear' or 'data', got {variant!r}")
    ends = _ends(net, x0, x1)
    if variant == "data":
        if data is None:
            raise ShapeError("the 'data' variant needs data= (the inputs midpoints are chosen from)")
        data, _ = net.as_batch(data)
        data_words = _words(net, data, layer)
    points = [ends[0], ends[1]]
    sources = [-1, -1]
    words = list(_words(net, ends, layer))
    for _ in range(depth):
        new_points, new_sources, new_words = [points[0]], [sources[0]], [words[0]]
        changed = False
        for a in range(len(points) - 1):
            pa, pb, wa, wb = points[a], points[a + 1], words[a], words[a + 1]
            gap = int(hamming(wa[None], wb[None])[0])
            if gap > max_step:
                if variant == "linear":
                    mid = 0.5 * (pa + pb)
                    new_points.append(mid)
                    new_sources.append(-1)
                    new_words.append(_words(net, mid[None], layer)[0])
                    changed = True
                else:
                    to_a = hamming(data_words, np.broadcast_to(wa, data_words.shape))
                    to_b = hamming(data_words, np.broadcast_to(wb, data_words.shape))
                    worst = np.maximum(to_a, to_b)
                    spread = np.linalg.norm(data - pa, axis=1) + np.linalg.norm(data - pb, axis=1)
                    best = int(np.lexsort((spread, worst))[0])
                    if worst[best] < gap:
                        new_points.append(data[best])
                        new_sources.append(best)
                        new_words.append(data_words[best])
                        changed = True
            new_points.append(pb)
            new_sources.append(sources[a + 1])
            new_words.append(wb)
        points, sources, words = new_points, new_sources, new_words
        if not changed:
            break
    words = np.array(words)
    return GeodesicPath(np.array(points), hamming(words[:-1], words[1:]), np.array(sources, dtype=np.int64))


@dataclass(frozen=True)
class ExactGeodesic(GeodesicPath):
    """An exact path through linear regions (a :class:`GeodesicPath`: points, steps, data_index all -1).

    method : "segment" or "graph". patterns : (T + 1, kinked units) bool, the pattern of each point's
    region (over ``net.hidden``; an end on a region boundary has its own pattern). regions : (T + 1,)
    int64, each point's piece of ``source`` (segment) or node of ``source.graph`` (graph); -1 for an end
    on a boundary. t : (T + 1,) each point's parameter along the segment x0 -> x1 (segment), else None.
    source : the ``LinePartition`` (segment) or ``RegionGraph`` (graph) the path comes from. plane : for a
    graph in a plane, the ``AffineMap`` (s, t) -> x0 + s (x1 - x0) + t (x2 - x0) whose region graph it is
    (x0 at (0, 0), x1 at (1, 0)); else None. complete : False when a budget cut the enumeration short.
    compared : {name: GeodesicPath} the other paths between the same inputs ("segment" for a graph path,
    "midpoint", and "conditional" when data was given).
    """

    method: str
    patterns: np.ndarray
    regions: np.ndarray
    t: np.ndarray | None
    source: object
    plane: object
    complete: bool
    compared: dict

    @property
    def paths(self) -> dict:
        """{name: GeodesicPath}: this path (under its method's name) and the compared ones."""
        return {self.method: self, **self.compared}

    @property
    def lengths(self) -> dict:
        """{name: total Hamming length} of :attr:`paths`."""
        return {name: path.length for name, path in self.paths.items()}


def _segment(net, ends):
    """Points, patterns, piece indices and parameters of the regions the segment crosses."""
    from ..regions import line

    partition = line(net, ends[0], ends[1])
    n = len(partition)
    bits = partition.patterns.bits()
    end_bits = net.patterns(ends).bits()
    keep = np.ones(n, dtype=bool)
    keep[0] = not np.array_equal(end_bits[0], bits[0])
    if n > 1 or keep[0]:
        keep[-1] &= not np.array_equal(end_bits[1], bits[-1])
    mids = partition.midpoints()
    pieces = np.arange(n)
    first = 0 if np.array_equal(end_bits[0], bits[0]) else -1
    last = n - 1 if np.array_equal(end_bits[1], bits[-1]) else -1
    points = np.vstack([ends[:1], partition.points(mids[keep]), ends[1:]])
    patterns = np.vstack([end_bits[:1], bits[keep], end_bits[1:]])
    regions = np.concatenate([[first], pieces[keep], [last]]).astype(np.int64)
    t = np.concatenate([[0.0], mids[keep], [1.0]])
    return points, patterns, regions, t, partition


def _plane_network(net, ends, through, rng):
    """The network restricted to the plane x0 + s (x1 - x0) + t (x2 - x0): (Network, AffineMap)."""
    from ..network import AffineMap, Layer, Network

    u = ends[1] - ends[0]
    if through is None:
        w = as_generator(rng).standard_normal(u.size)
        w -= (w @ u) / (u @ u) * u
        v = w * (np.linalg.norm(u) / np.linalg.norm(w))
    else:
        third, _ = net.as_batch(through)
        if len(third) != 1:
            raise ShapeError("through= is one input, the third point of the plane")
        v = third[0] - ends[0]
    plane = AffineMap(np.stack([u, v], axis=1), ends[0])
    first = net.layers[0]
    layers = [Layer(first.affine.compose(plane), first.activation, name=first.name, sources=first.sources),
              *net.layers[1:]]
    return Network(layers, name=net.name), plane


def _graph(net, ends, layer, domain, through, margin, budget, rng):
    """Points, patterns, node indices, graph, plane map and completeness of the shortest region path."""
    from ..geometry import Box, Polytope
    from ..regions import regions as enumerate_regions

    if domain is not None and not isinstance(domain, (Box, Polytope)):
        raise TypeError(f"domain must be a Box, a Polytope or None, got {type(domain).__name__}")
    ambient = None if domain is None else domain.dim if isinstance(domain, Box) else domain.dim_ambient
    in_plane = through is not None or (net.input_dim > 2 and ambient in (None, 2))
    if ambient is not None and ambient != (2 if in_plane else net.input_dim):
        raise ShapeError(f"domain lives in R^{ambient}; the region graph is of "
                         + ("the plane (s, t), R^2" if in_plane else f"the input space, R^{net.input_dim}"))
    if in_plane:
        graph_net, plane = _plane_network(net, ends, through, rng)
        if domain is None:
            domain = Box(np.full(2, -float(margin)), np.full(2, 1.0 + float(margin)))
        a, b = np.zeros(2), np.array([1.0, 0.0])
    else:
        graph_net, plane, (a, b) = net, None, ends
    if domain is not None:
        outside = ~np.asarray(domain.contains(np.vstack([a, b])))
        if outside.any():
            where = "in the plane's (s, t) coordinates " if in_plane else ""
            raise PreimageError(f"x{int(np.argmax(outside))} lies outside the domain {where}of the region graph")
    graph = enumerate_regions(graph_net, domain, budget=budget)
    found = graph.shortest_path(a, b, layer=layer)
    nodes = np.asarray(found.regions, dtype=np.int64)
    inputs = found.inputs if len(nodes) > 1 else np.vstack([a, b])
    if len(nodes) == 1:
        nodes = np.repeat(nodes, 2)
    points = plane(inputs) if plane is not None else inputs
    points[0], points[-1] = ends[0], ends[1]
    patterns = np.stack([graph.regions[i].pattern for i in nodes])
    return points, patterns, nodes, graph, plane, graph.complete


def exact_geodesic(net, x0, x1, *, method: str = "segment", layer: int | None = None, domain=None,
                   through=None, margin: float = 0.5, data=None, k: int = 10, budget=None,
                   rng=None) -> ExactGeodesic:
    """The exact path in pattern space from x0 to x1 through linear regions (see the module docstring).

    method : "segment" (the regions the straight segment crosses, exact) or "graph" (the shortest path
        in the region adjacency graph, in Hamming steps of ``layer``; the domain is convex and holds both
        ends, so the segment's regions are a path of that graph and, when the segment crosses no region
        vertex, the graph path is never longer).
    layer : an index into ``net.layers`` (Hamming of that layer's pattern) or None (all kinked layers).
    domain : for "graph", a Box or Polytope to enumerate. The graph is of the input space (domain in R^d;
        None: all of R^d) for inputs of dimension <= 2, or a domain of dimension d, when ``through`` is
        None. Otherwise it is of the plane x0 + s (x1 - x0) + t (x2 - x0) through x0, x1 and
        x2 = ``through`` (None: x2 - x0 a seeded random direction orthogonal to x1 - x0 of the same
        length), and ``domain`` is in (s, t) coordinates (x0 at (0, 0), x1 at (1, 0)), default
        ``[-margin, 1 + margin]^2``: the path is the shortest within that part of the plane, exact there,
        an upper bound on the shortest in the whole input space. Both ends must lie in the domain.
    data : (m, d) inputs for the conditional geodesic compared beside (k its neighbours); budget : a
        ``pim.Budget`` for the enumeration; rng : the plane's random direction.
    Returns an :class:`ExactGeodesic`; points (T + 1, d) start at x0 and end at x1.
    """
    if method not in ("segment", "graph"):
        raise ShapeError(f"method must be 'segment' or 'graph', got {method!r}")
    ends = _ends(net, x0, x1)
    if layer is not None and layer not in net.hidden:
        raise ShapeError(f"layer {layer} has no pattern; layers with patterns: {net.hidden}")
    source = plane = None
    complete, t = True, None
    if np.array_equal(ends[0], ends[1]):
        points, patterns = ends, net.patterns(ends).bits()
        regions = np.full(2, -1, dtype=np.int64)
    elif method == "segment":
        points, patterns, regions, t, source = _segment(net, ends)
    else:
        points, patterns, regions, source, plane, complete = _graph(net, ends, layer, domain, through, margin,
                                                                    budget, rng)
    compared = {}
    if method == "graph" and not np.array_equal(ends[0], ends[1]):
        along = _segment(net, ends)[0]
        compared["segment"] = GeodesicPath(along, path_hamming(net, along, layer),
                                           np.full(len(along), -1, dtype=np.int64))
    compared["midpoint"] = midpoint_geodesic(net, ends[0], ends[1], layer=layer)
    if data is not None:
        compared["conditional"] = conditional_geodesic(net, ends[0], ends[1], data, k=k, layer=layer)
    return ExactGeodesic(points, path_hamming(net, points, layer), np.full(len(points), -1, dtype=np.int64),
                         method, patterns, regions, t, source, plane, complete, compared)
