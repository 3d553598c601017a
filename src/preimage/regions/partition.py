"""Exact partitions of a segment and of a 2-D affine slice of the input space into linear regions.

Both follow the pre-activations of the current layer at every vertex (affine inside each piece, so vertex
values decide the signs), cut every piece by the zero set of every unit of the layer, then apply the
activation to the vertex values and move on to the next layer. Along a segment this is a few array
operations per layer; in the plane the cutting runs compiled (``_kernels.cut_layer``) over polygons that
share their vertices with their neighbours. Everything is float64 and works for any network the importers
give (sparse convolutional layers included): vertex values are carried through ``layer.affine``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from .. import settings as _settings
from ..errors import ShapeError
from ..network import AffineMap, Network
from ..patterns.packed import Patterns
from . import _kernels
from .local import Region, _as_network

__all__ = ["Slice2D", "SliceRegion", "LinePartition", "LineSegment", "slice2d", "line", "plane_network"]


def _vector(net: Network, value, name: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size != net.input_dim:
        raise ShapeError(f"{name} has {array.size} values; the network takes {net.input_dim} inputs")
    if not np.all(np.isfinite(array)):
        raise ShapeError(f"{name} contains NaN or infinite values")
    return array


def _tolerance(Z: np.ndarray) -> np.ndarray:
    """Per unit: values within this of 0 lie on the unit's zero set (relative to the unit's scale)."""
    tol = _settings.current().feasibility_tol
    scale = np.maximum(Z.max(axis=0), -Z.min(axis=0)) if Z.shape[0] else np.zeros(Z.shape[1])
    return tol * (1.0 + scale)


def _activate(activation, Z: np.ndarray) -> np.ndarray:
    """The activation applied to vertex values, in place for ReLU (the values are the partition's own)."""
    if activation.kind == "relu":
        return np.maximum(Z, 0.0, out=Z)
    return activation(Z)


def _words(byte_bits: np.ndarray) -> np.ndarray:
    """(n, nbytes) uint8 little-endian bits -> (n, words) uint64 as ``pack_bits`` lays them out."""
    n, nbytes = byte_bits.shape
    words = -(-nbytes // 8)
    padded = np.zeros((n, words * 8), dtype=np.uint8)
    padded[:, :nbytes] = byte_bits
    return padded.view("<u8").reshape(n, words)


# ----------------------------------------------------------------------------------------------- 2-D slice

@dataclass(eq=False)
class SliceRegion:
    """One region of a 2-D slice.

    polygon : (k, 2) vertices in slice coordinates (s, t), counter-clockwise. pattern : (kinked units,)
    bool. witness : (d,) an input inside (the vertex mean). affine : the network's map on the region in
    input space (x -> output). slice_affine : the same map in slice coordinates ((s, t) -> output).
    """

    polygon: np.ndarray
    pattern: np.ndarray
    witness: np.ndarray
    region: Region
    slice_affine: AffineMap

    @property
    def affine(self) -> AffineMap:
        return self.region.affine

    @property
    def area(self) -> float:
        s, t = self.polygon[:, 0], self.polygon[:, 1]
        return 0.5 * float(np.sum(s * np.roll(t, -1) - np.roll(s, -1) * t))


class Slice2D:
    """The exact partition of the slice ``{origin + s u + t v : (s, t) in bounds}`` into linear regions.

    Attributes
    ----------
    net, origin (d,), u (d,), v (d,), bounds ((s0, s1), (t0, t1)).
    vertices : (nv, 2) every vertex in (s, t), shared by the faces that meet there.
    face_ptr : (n + 1,), face_vtx : (total,) the faces' vertex cycles (CSR layout).
    patterns : ``Patterns`` of the n faces (their activation pattern over ``net.hidden``).
    outputs : (nv, outputs) the network's output at every vertex.
    """

    def __init__(self, net, origin, u, v, bounds, vertices, face_ptr, face_vtx, patterns, outputs):
        self.net, self.origin, self.u, self.v, self.bounds = net, origin, u, v, bounds
        self.vertices, self.face_ptr, self.face_vtx = vertices, face_ptr, face_vtx
        self.patterns, self.outputs = patterns, outputs

    def __len__(self) -> int:
        return self.face_ptr.size - 1

    def __iter__(self):
        return (self.region(i) for i in range(len(self)))

    def __repr__(self) -> str:
        return f"Slice2D({len(self)} regions, {len(self.vertices)} vertices)"

    @property
    def nbytes(self) -> int:
        """Bytes held by the partition's arrays."""
        return int(self.vertices.nbytes + self.face_ptr.nbytes + self.face_vtx.nbytes + self.outputs.nbytes
                   + sum(w.nbytes for w in self.patterns.words))

    def to_input(self, st) -> np.ndarray:
        """Slice coordinates (n, 2) -> inputs (n, d)."""
        st = np.atleast_2d(np.asarray(st, dtype=np.float64))
        return self.origin + st[:, :1] * self.u + st[:, 1:2] * self.v

    def polygon(self, i: int) -> np.ndarray:
        """The vertices (k, 2) of face i in (s, t)."""
        return self.vertices[self.face_vtx[self.face_ptr[i]: self.face_ptr[i + 1]]]

    def polygons(self) -> list[np.ndarray]:
        """Every face's vertices, a list of (k_i, 2) arrays."""
        return np.split(self.vertices[self.face_vtx], self.face_ptr[1:-1])

    def areas(self) -> np.ndarray:
        """(n,) the faces' areas in (s, t) (shoelace formula, vectorised)."""
        P = self.vertices[self.face_vtx]
        nxt = np.arange(self.face_vtx.size) + 1
        ends = self.face_ptr[1:] - 1
        nxt[ends] = self.face_ptr[:-1]
        Q = P[nxt]
        cross = P[:, 0] * Q[:, 1] - Q[:, 0] * P[:, 1]
        return 0.5 * np.add.reduceat(cross, self.face_ptr[:-1])

    def centres(self) -> np.ndarray:
        """(n, 2) the vertex mean of every face: a point strictly inside it."""
        counts = np.diff(self.face_ptr)
        return np.add.reduceat(self.vertices[self.face_vtx], self.face_ptr[:-1], axis=0) / counts[:, None]

    def witnesses(self) -> np.ndarray:
        """(n, d) an input inside every face (the vertex mean, mapped to input space)."""
        return self.to_input(self.centres())

    @cached_property
    def _fits(self):
        return _kernels.face_fits(self.vertices, self._scores_at_vertices, self.face_ptr, self.face_vtx)

    @property
    def _scores_at_vertices(self) -> np.ndarray:
        Y = self.outputs
        return np.hstack([np.zeros((Y.shape[0], 1)), Y]) if Y.shape[1] == 1 else Y

    def classes(self) -> np.ndarray:
        """(n,) the class of every face: argmax of the outputs (one output: 1 where it is > 0)."""
        return np.argmax(self._fits[1], axis=1)

    def slice_jacobians(self) -> np.ndarray:
        """(n, outputs, 2) the Jacobian of the output in (s, t) on every face."""
        G = self._fits[0]
        return G[:, 1:, :] if self.outputs.shape[1] == 1 else G

    def lipschitz(self) -> np.ndarray:
        """(n,) the local Lipschitz constant along the slice: the 2-norm of each face's (s, t) Jacobian."""
        return np.linalg.norm(self.slice_jacobians(), ord=2, axis=(1, 2))

    def decision_boundary(self) -> np.ndarray:
        """(r, 2, 2) segments in (s, t) where the decision changes (argmax ties; one output: y = 0).

        A class's winning set in a face is convex, so faces whose vertices all have one class lie in it;
        only the others are clipped by the classes' tie lines.
        """
        vertex_class = np.argmax(self._scores_at_vertices, axis=1)
        per = vertex_class[self.face_vtx]
        mixed = np.minimum.reduceat(per, self.face_ptr[:-1]) != np.maximum.reduceat(per, self.face_ptr[:-1])
        G, c, centre = self._fits
        tol = _settings.current().feasibility_tol * (1.0 + float(np.max(np.abs(self.outputs), initial=0.0)))
        return _kernels.decision_segments(self.vertices, self.face_ptr, self.face_vtx,
                                          np.flatnonzero(mixed).astype(np.int64), G, c, centre, tol)

    def region(self, i: int) -> SliceRegion:
        """Face i as a :class:`SliceRegion` (its affine maps are made on demand)."""
        if not 0 <= i < len(self):
            raise IndexError(f"the slice has {len(self)} regions; no region {i}")
        pattern = self.patterns[i].bits()[0]
        witness = self.to_input(self.polygon(i).mean(axis=0))[0]
        reg = Region(self.net, pattern, point=witness)
        full = reg.affine
        W = full.dense()
        basis = np.stack([self.u, self.v], axis=1)
        return SliceRegion(self.polygon(i), pattern, witness, reg, AffineMap(W @ basis, full(self.origin[None])[0]))

    @property
    def regions(self) -> list[SliceRegion]:
        """Every face as a :class:`SliceRegion` (builds an affine map per region: for small slices)."""
        return [self.region(i) for i in range(len(self))]

    def planar_network(self) -> Network:
        """The network on the slice's plane: a 2-input network of (s, t) (see :func:`plane_network`)."""
        return plane_network(self.net, self.origin, self.u, self.v)

    def plot(self, ax=None, color: str = "pattern", boundary: bool = True, **kwargs):
        """Draw the faces coloured by "pattern", "class" or "lipschitz", the decision boundary on top."""
        from ..viz.regions_plot import plot_slice

        return plot_slice(self, ax=ax, color=color, boundary=boundary, **kwargs)


def _slice_basis(net: Network, origin, u, v, bounds):
    origin = _vector(net, origin, "origin")
    u = _vector(net, u, "u")
    v = _vector(net, v, "v")
    if np.linalg.matrix_rank(np.stack([u, v]), tol=_settings.current().rank_rtol * max(
            np.linalg.norm(u), np.linalg.norm(v), np.finfo(np.float64).tiny)) < 2:
        raise ShapeError("u and v must be linearly independent directions to span a plane")
    try:
        (s0, s1), (t0, t1) = bounds
        s0, s1, t0, t1 = (float(value) for value in (s0, s1, t0, t1))
    except (TypeError, ValueError):
        raise ShapeError(f"bounds must be ((s0, s1), (t0, t1)), got {bounds!r}") from None
    if not (np.isfinite([s0, s1, t0, t1]).all() and s0 < s1 and t0 < t1):
        raise ShapeError(f"bounds must be finite with s0 < s1 and t0 < t1, got {bounds!r}")
    return origin, u, v, ((s0, s1), (t0, t1))


def slice2d(net, origin, u, v, bounds=((-1.0, 1.0), (-1.0, 1.0))) -> Slice2D:
    """The exact partition of the plane ``origin + s u + t v``, (s, t) in ``bounds``, into linear regions.

    net : a Network (or anything ``pim.load`` takes). origin, u, v : (d,) or input_shape arrays; u and v
    linearly independent. bounds : ((s0, s1), (t0, t1)). Returns a :class:`Slice2D`.
    For the plane through three inputs x1, x2, x3: origin x1, u = x2 - x1, v = x3 - x1, bounds ((0, 1), (0, 1))
    covers the parallelogram they span.
    """
    net = _as_network(net)
    origin, u, v, bounds = _slice_basis(net, origin, u, v, bounds)
    (s0, s1), (t0, t1) = bounds
    P = np.array([[s0, t0], [s1, t0], [s1, t1], [s0, t1]], dtype=np.float64)
    face_ptr = np.array([0, 4], dtype=np.int64)
    face_vtx = np.arange(4, dtype=np.int64)
    Z = net.layers[0].preactivation(origin + P[:, :1] * u + P[:, 1:2] * v)
    layer_bits: list[np.ndarray] = []
    for i, layer in enumerate(net.layers):
        if i:
            Z = layer.preactivation(_activate(net.layers[i - 1].activation, Z))
        if not layer.activation.has_kink:
            continue
        Z = np.ascontiguousarray(Z)
        nv = P.shape[0]
        P, Z, nv, face_ptr, face_vtx, parent, bits = _kernels.cut_layer(
            np.ascontiguousarray(P), Z, nv, face_ptr, face_vtx, _tolerance(Z))
        P, Z = P[:nv], Z[:nv]
        layer_bits = [b[parent] for b in layer_bits] + [bits]
    outputs = net.layers[-1].activation(Z)
    units = [net.layers[i].out_features for i in net.hidden]
    patterns = Patterns([_words(b) for b in layer_bits], units, net.hidden)
    return Slice2D(net, origin, u, v, bounds, np.ascontiguousarray(P), face_ptr, face_vtx, patterns, outputs)


def plane_network(net, origin, u, v) -> Network:
    """The network composed with the plane's affine map ``(s, t) -> origin + s u + t v``: a 2-input network.

    net : a Network (or anything ``pim.load`` takes). origin, u, v : (d,) or input_shape arrays; u and v
    linearly independent. The first layer's map becomes ``W (origin + [u v] (s, t)) + b`` (m, 2); the other
    layers are the network's own, so every exact question about the plane (``pim.preimage`` of any
    target, regions) is asked of the returned network with inputs (s, t).
    """
    net = _as_network(net)
    origin, u, v, _ = _slice_basis(net, origin, u, v, ((0.0, 1.0), (0.0, 1.0)))
    plane = AffineMap(np.stack([u, v], axis=1), origin)
    first = net.layers[0]
    layer = replace(first, affine=first.affine.compose(plane), input_shape=(2,), params=None,
                    name=f"{first.name} on a plane" if first.name else "on a plane")
    return Network((layer, *net.layers[1:]), name=f"{net.name} on a plane" if net.name else "on a plane")


def plane_through(net, x1, x2, x3, margin: float = 0.0) -> Slice2D:
    """The slice through three inputs: origin x1, u = x2 - x1, v = x3 - x1, (s, t) in [-margin, 1 + margin]^2."""
    net = _as_network(net)
    x1, x2, x3 = (_vector(net, x, name) for x, name in ((x1, "x1"), (x2, "x2"), (x3, "x3")))
    lo, hi = -float(margin), 1.0 + float(margin)
    return slice2d(net, x1, x2 - x1, x3 - x1, ((lo, hi), (lo, hi)))


# ----------------------------------------------------------------------------------------------- segment

@dataclass(eq=False)
class LineSegment:
    """One linear piece of a segment: ``t`` in [t0, t1] of ``x0 + t (x1 - x0)``, with its pattern."""

    t0: float
    t1: float
    pattern: np.ndarray
    region: Region

    @property
    def affine(self) -> AffineMap:
        return self.region.affine


class LinePartition:
    """The exact partition of the segment ``x0 -> x1`` into linear pieces.

    t : (n + 1,) breakpoints in [0, 1], increasing. patterns : ``Patterns`` of the n pieces.
    outputs : (n + 1, outputs) the network's output at the breakpoints.
    """

    def __init__(self, net, x0, x1, t, patterns, outputs):
        self.net, self.x0, self.x1, self.t, self.patterns, self.outputs = net, x0, x1, t, patterns, outputs

    def __len__(self) -> int:
        return self.t.size - 1

    def __iter__(self):
        return iter(self.segments)

    def __repr__(self) -> str:
        return f"LinePartition({len(self)} segments)"

    def points(self, t) -> np.ndarray:
        """Inputs (n, d) at parameters t (n,)."""
        t = np.asarray(t, dtype=np.float64).reshape(-1, 1)
        return self.x0 + t * (self.x1 - self.x0)

    def midpoints(self) -> np.ndarray:
        """(n,) the parameter of each piece's midpoint."""
        return 0.5 * (self.t[:-1] + self.t[1:])

    def locate(self, t) -> np.ndarray:
        """The piece holding each parameter t (n,) -> (n,) int."""
        return np.clip(np.searchsorted(self.t, np.asarray(t, dtype=np.float64), side="right") - 1, 0, len(self) - 1)

    @property
    def segments(self) -> list[LineSegment]:
        bits = self.patterns.bits()
        mids = self.points(self.midpoints())
        return [LineSegment(float(self.t[i]), float(self.t[i + 1]), bits[i], Region(self.net, bits[i], point=mids[i]))
                for i in range(len(self))]


def line(net, x0, x1) -> LinePartition:
    """The exact partition of the segment from ``x0`` to ``x1`` ((d,) or input_shape) into linear pieces."""
    net = _as_network(net)
    x0 = _vector(net, x0, "x0")
    x1 = _vector(net, x1, "x1")
    if np.array_equal(x0, x1):
        raise ShapeError("x0 and x1 are the same point: a segment needs two distinct end points")
    t = np.array([0.0, 1.0])
    Z = net.layers[0].preactivation(np.stack([x0, x1]))
    for i, layer in enumerate(net.layers):
        if i:
            Z = layer.preactivation(net.layers[i - 1].activation(Z))
        if not layer.activation.has_kink:
            continue
        tol = _tolerance(Z)
        sign = np.where(Z > tol, 1, np.where(Z < -tol, -1, 0))
        seg, unit = np.nonzero(sign[:-1] * sign[1:] < 0)
        if seg.size == 0:
            continue
        za, zb = Z[seg, unit], Z[seg + 1, unit]
        lam = za / (za - zb)
        new_t = t[seg] + lam * (t[seg + 1] - t[seg])
        new_Z = Z[seg] + lam[:, None] * (Z[seg + 1] - Z[seg])
        new_Z[np.arange(seg.size), unit] = 0.0
        t_all = np.concatenate([t, new_t])
        Z_all = np.vstack([Z, new_Z])
        order = np.argsort(t_all, kind="stable")
        t_all, Z_all = t_all[order], Z_all[order]
        keep = np.concatenate([[True], np.diff(t_all) > 0])
        keep[-1] = True
        keep[-2] &= t_all[-2] < t_all[-1]
        t, Z = t_all[keep], Z_all[keep]
    outputs = net.layers[-1].activation(Z)
    mids = x0 + (0.5 * (t[:-1] + t[1:]))[:, None] * (x1 - x0)
    patterns = net.patterns(mids)
    return LinePartition(net, x0, x1, t, patterns, outputs)
