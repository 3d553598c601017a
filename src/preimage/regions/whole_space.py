"""Every linear region of all of R^d through bounded searches: the box and the charts at infinity.

Homogenise the network: ``F(x, t) = t f(R x / t)`` for ``t > 0``, whose first pre-activation is
``R W_0 x + b_0 t`` and every later one ``W_l a_{l-1} + b_l t``. Its pre-activations are positively
homogeneous, so along each ray of the half-space ``t > 0`` the activation pattern is constant, and the
linear regions of f are the cones of F cut by ``t = 1``. Every such cone meets the boundary of the cube
``max(|x|_inf, t) = 1`` in a set of full dimension on at least one of its faces:

- the top face ``t = 1``, ``|x|_inf <= 1``: f itself on the box ``[-R, R]^d``;
- the side faces ``x_k = s`` (``s = +-1``), the other coordinates y in ``[-1, 1]``, ``t`` in ``[0, 1]``:
  there F is a ReLU network of ``(y, t)`` (the ``t`` column is carried through every hidden layer by one
  extra unit, ``t >= 0`` so the ReLU keeps it), and its point ``(y, t)`` with ``t > 0`` is f's input
  ``R (y with s at k) / t``. The face is the truncated pyramid ``x_k s >= R``, ``|x_j| <= |x_k|`` of f's
  inputs, seen through the projective map that brings infinity to ``t = 0``.

Each face is a bounded box, partitioned exactly by ``slice2d`` in the plane and by the engine's vertex
search up to 8 inputs; the regions are the distinct patterns over the 1 + 2d faces, unbounded regions are
the ones whose cones reach ``t = 0``, and each region's facets are read off its pieces (``region_facets``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..geometry import Box
from ..geometry.polytope import _restore
from ..geometry.polytope_rows import _unit_rows as unit_rows
from ..network import AffineMap, Layer, Network

# A polygon's vertex within this of a row (unit norm, face coordinates of size 1) lies on it: a row taken
# too eagerly is still a row of the region, so the set stays exact and only its form could be less minimal.
_VERTEX_TOL = 1e-8

__all__ = ["FacePiece", "PlanePiece", "box_pieces", "chart_network", "default_scale", "plane_pieces",
           "region_facets", "whole_space_pieces"]


def default_scale(net: Network) -> float:
    """A box half-width holding the first layer's hyperplanes near the origin: 4 x their largest distance, >= 1.

    Any positive value gives the same regions; a box holding most of them leaves little to the side faces.
    """
    W = net.layers[0].affine.dense()
    b = np.asarray(net.layers[0].affine.bias, dtype=np.float64)
    norms = np.linalg.norm(W, axis=1)
    distances = np.abs(b[norms > 0]) / norms[norms > 0]
    return float(max(1.0, 4.0 * (distances.max() if distances.size else 0.0)))


def chart_network(net: Network, k: int, s: float, R: float) -> Network:
    """F on the side face ``x_k = s`` as a network of ``(y, t)`` (d inputs: the other coordinates, then t)."""
    d = net.input_dim
    others = [j for j in range(d) if j != k]
    layers = []
    last = len(net.layers) - 1
    for i, layer in enumerate(net.layers):
        W = layer.affine.dense().astype(np.float64)
        b = np.asarray(layer.affine.bias, dtype=np.float64)
        if i == 0:
            M = np.hstack([R * W[:, others], b[:, None]])
            c = R * s * W[:, k]
        else:
            M = np.hstack([W, b[:, None]])
            c = np.zeros(W.shape[0])
        if i < last:
            carrier = np.zeros((1, M.shape[1]))
            carrier[0, -1] = 1.0  # t >= 0 passes every activation unchanged
            M = np.vstack([M, carrier])
            c = np.concatenate([c, [0.0]])
        layers.append(Layer(AffineMap(M, c), layer.activation, f"chart:{layer.name}"))
    return Network(layers, (d,), name=f"{net.name} chart x{k}={'+' if s > 0 else '-'}")


def _lift(k: int, s: float, R: float, V: np.ndarray) -> np.ndarray:
    """Chart points ``(y, t)`` (n, d) with t > 0 -> f's inputs ``R (y with s at k) / t`` (n, d)."""
    t = V[:, -1:]
    X = np.insert(V[:, :-1], k, s, axis=1)
    return R * X / t


@dataclass(frozen=True)
class FacePiece:
    """One piece of a search on a face, in f's input space.

    witness : (d,) an input strictly inside the piece. A, b : the piece's facet rows mapped to f's inputs
    (unit norm). side : (m,) bool, the rows that are sides of the face's box rather than units' hyperplanes.
    """

    witness: np.ndarray
    A: np.ndarray
    b: np.ndarray
    side: np.ndarray


def _axis_sides(A: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(m,) bool, the unit rows ``x_k <= hi_k`` or ``-x_k <= -lo_k`` of a box among ``A x <= b``."""
    k = np.argmax(np.abs(A), axis=1)
    top = np.abs(A[np.arange(len(A)), k])
    axis = top >= 1.0 - 1e-12
    sign = np.sign(A[np.arange(len(A)), k])
    bound = np.where(sign > 0, hi[k], -lo[k])
    return axis & (np.abs(b - bound) <= 1e-12 * np.maximum(1.0, np.abs(bound)))


def _unit_rows(A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit norm (zero rows kept as they are), as the Polytope normalises them."""
    A, b, _ = unit_rows(np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64), "A", "b")
    return A, b


def _chart_rows(k: int, s: float, R: float, A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chart rows ``alpha . y + beta t <= gamma`` -> f's rows ``alpha . x_other - gamma s x_k <= -beta R``.

    On the face ``s x_k > 0`` and ``y = s x_other / x_k``, ``t = s R / x_k``; multiplying by ``s x_k``
    gives the row in x.
    """
    X = np.insert(A[:, :-1], k, -s * b, axis=1)
    return _unit_rows(X, -R * A[:, -1])


def whole_space_pieces(net: Network, *, scale: float | None = None, budget=None, progress=False):
    """The one-pattern pieces of the box ``[-R, R]^d`` and of the 2d side faces, all in f's inputs.

    Returns ``(box_set, face_pieces, complete)``: the engine's result on the box, the full-dimensional
    pieces of the box and of the side faces as :class:`FacePiece`, and whether every search finished.
    """
    from ..preimages.engine import Budget, preimage

    d = net.input_dim
    R = default_scale(net) if scale is None else float(scale)
    start = time.perf_counter()

    def remaining():
        if budget is None or budget.seconds is None:
            return budget
        return Budget(max(0.0, budget.seconds - (time.perf_counter() - start)), budget.pieces, budget.subdomains)

    box = Box(-R * np.ones(d), R * np.ones(d))
    box_set = preimage(net, [], box, budget=remaining(), one_pattern_per_piece=True, progress=progress)
    complete = box_set.complete
    pieces = []
    for p in box_set.pieces:
        if p.polytope.dim == d:
            A, b = _unit_rows(p.polytope.A, p.polytope.b)
            pieces.append(FacePiece(p.witness, A, b, _axis_sides(A, b, box.lo, box.hi)))
    face = Box(np.concatenate([-np.ones(d - 1), [0.0]]), np.ones(d))
    for k in range(d):
        for s in (1.0, -1.0):
            found = preimage(chart_network(net, k, s, R), [], face, budget=remaining(),
                             one_pattern_per_piece=True, progress=progress)
            complete &= found.complete
            for p in found.pieces:
                if p.polytope.dim < d or p.witness[-1] <= 0.0:
                    continue
                side = _axis_sides(*_unit_rows(p.polytope.A, p.polytope.b), face.lo, face.hi)
                A, b = _chart_rows(k, s, R, p.polytope.A, p.polytope.b)
                pieces.append(FacePiece(_lift(k, s, R, p.witness[None])[0], A, b, side))
    return box_set, pieces, bool(complete)


@dataclass(frozen=True)
class PlanePiece:
    """One polygon of a 2-D face: its witness in f's inputs, its vertices in the face's coordinates.

    chart : None for the box (coordinates x / R), else ``(k, s)`` of the side face (coordinates (y, t)).
    """

    witness: np.ndarray
    vertices: np.ndarray
    chart: tuple | None


def plane_pieces(net: Network, *, scale: float | None = None):
    """The polygons of the square ``[-R, R]^2`` and of the four side faces of a 2-input network.

    Each face is a 2-input network on a rectangle, partitioned exactly by :func:`.partition.slice2d`
    (no budget: the partition is a few array passes per layer). Returns a list of :class:`PlanePiece`.
    """
    from .partition import slice2d

    R = default_scale(net) if scale is None else float(scale)
    e = np.eye(2)
    pieces, _, _ = box_pieces(net, Box(-R * np.ones(2), R * np.ones(2)))
    for k in range(2):
        for s in (1.0, -1.0):
            part = slice2d(chart_network(net, k, s, R), np.zeros(2), e[0], e[1], ((-1.0, 1.0), (0.0, 1.0)))
            lifted = _lift(k, s, R, part.witnesses())
            for witness, polygon in zip(lifted, part.polygons()):
                pieces.append(PlanePiece(witness, polygon, (k, s)))
    return pieces


def box_pieces(net: Network, box: Box):
    """The polygons of a 2-input network on a rectangle (``slice2d``), in coordinates ``(x - c) / R``.

    c is the box's centre and R its largest half-width. Returns ``(pieces, c, R)``.
    """
    from .partition import slice2d

    c = (box.lo + box.hi) / 2.0
    R = float(np.max(box.hi - box.lo)) / 2.0
    e = np.eye(2)
    part = slice2d(net, np.zeros(2), e[0], e[1], tuple(zip(box.lo, box.hi)))
    pieces = [PlanePiece(w, (polygon - c) / R, None) for w, polygon in zip(part.witnesses(), part.polygons())]
    return pieces, c, R


def _rows_on_face(A: np.ndarray, b: np.ndarray, chart, R: float, centre) -> tuple[np.ndarray, np.ndarray]:
    """f's rows ``A x <= b`` in a face's coordinates (unit norm; zero rows where constant on the face)."""
    if chart is None:
        return _unit_rows(R * A, b - A @ centre)
    k, s = chart
    # x = R (y with s at k) / t, t > 0: R a_other . y - b t <= -R a_k s.
    M = np.hstack([R * np.delete(A, k, axis=1), -b[:, None]])
    return _unit_rows(M, -R * s * A[:, k])


def _facets_from_vertices(pieces, A: np.ndarray, b: np.ndarray, R: float, centre) -> np.ndarray:
    """Rows holding an edge (two distinct vertices) of some polygon of the region: its facets."""
    facet = np.zeros(len(A), dtype=bool)
    constant = ~A.any(axis=1)  # a unit constant on the region bounds nothing (in a chart it would read t >= 0)
    for piece in pieces:
        M, m = _rows_on_face(A, b, piece.chart, R, centre)
        V = piece.vertices
        on = np.abs(M @ V.T - m[:, None]) <= _VERTEX_TOL
        on &= ~constant[:, None]
        count = on.sum(axis=1)
        for i in np.flatnonzero((count >= 2) & ~facet):
            W = V[on[i]]
            facet[i] = np.ptp(W, axis=0).max() > 2.0 * _VERTEX_TOL
    return np.flatnonzero(facet)


def region_facets(pieces, A: np.ndarray, b: np.ndarray, scale: float | None = None, centre=None):
    """The region with sign conditions ``A x <= b``, in minimal H-form, read off its pieces on the faces.

    Every row of a piece that is not a side of its face lies on a facet of the region, and every facet of
    the region is such a row of some piece, since the faces cover R^d. :class:`FacePiece` rows are matched
    to the sign condition they come from (a side of a face is kept where a sign condition lies on it);
    for :class:`PlanePiece` polygons (``scale`` R given, and the ``centre`` c of the box's coordinates
    ``(x - c) / R``, default 0), the facets are the sign conditions that hold an edge. Returns a Polytope whose rows are those sign conditions (unit norm, one per facet), or None when
    a piece's row matches no sign condition.
    """
    U, u = _unit_rows(A, b)
    if pieces and isinstance(pieces[0], PlanePiece):
        centre = np.zeros(A.shape[1]) if centre is None else centre
        rows = _distinct(U, u, _facets_from_vertices(pieces, A, b, scale, centre))
    else:
        chosen = set()
        for piece in pieces:
            for row, beta, side in zip(piece.A, piece.b, piece.side):
                tol = 1e-7 * max(1.0, abs(beta))
                match = np.flatnonzero((np.abs(U - row).max(axis=1) <= 1e-7) & (np.abs(u - beta) <= tol))
                if match.size:
                    chosen.add(int(match[0]))
                elif not side:
                    return None
        rows = np.array(sorted(chosen), dtype=int)
    d = A.shape[1]
    polytope = _restore(U[rows], u[rows], np.zeros((0, d)), np.zeros(0), False)
    polytope.__dict__["_minimal_form"] = polytope
    return polytope


def _distinct(U: np.ndarray, u: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Of rows that are one and the same halfspace (units with one hyperplane), the first."""
    kept: list[int] = []
    for i in rows:
        scale = max(1.0, abs(u[i]))
        if not any(np.abs(U[j] - U[i]).max() <= 1e-9 and abs(u[j] - u[i]) <= 1e-9 * scale for j in kept):
            kept.append(int(i))
    return np.array(kept, dtype=int)
