"""The result of :func:`preimage.preimage`: a union of convex pieces with its evidence.

Every piece is a polytope in minimal H-form with a relative-interior witness whose forward pass was checked
against the target. ``contains`` tests the pieces only (never the network), so that ``verify``, which
compares it with the forward pass on samples of the domain, is an independent check of the search.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import settings as _settings
from .._io import write_atomic
from ..errors import Infeasible, PreimageError, ShapeError
from ..geometry import Box, Polytope, Volume, as_generator, solve_lp
from ..network import AffineMap

__all__ = ["Piece", "PreimageSet", "Verification"]

# Entries of the (points x rows) residuals computed at once for a piece without a vertex box.
_MEMBERSHIP_ENTRIES = 4_000_000


@dataclass(frozen=True, eq=False)
class Piece:
    """One convex piece of a preimage.

    polytope : the piece, minimal H-form. witness : a relative-interior point of it. checked : the witness's
    forward pass meets the target (False only for the undecided parts of an ``outer`` bound).
    pattern : (kinked units,) bool, the activation pattern on the piece (bit 1: pre-activation > 0) of every
    layer with a kink, or None when the piece spans several patterns. affine : the map ``x -> output`` on
    the piece when it has one pattern, else None. alternative : which alternative of the target (its
    disjunctive normal form) the piece meets.
    """

    polytope: Polytope
    witness: np.ndarray
    checked: bool = True
    pattern: np.ndarray | None = None
    affine: AffineMap | None = None
    alternative: int = 0

    @property
    def dim(self) -> int:
        return self.polytope.dim

    def is_bounded(self) -> bool:
        return self.polytope.is_bounded()


@dataclass(frozen=True)
class Verification:
    """What :meth:`PreimageSet.verify` found.

    n : points sampled. disagreements : (k, d) the points where ``contains`` and the forward pass differ.
    distances : (k,) the distance of each to the nearest piece boundary (inf-norm). band : the width of the
    boundary band. ok : every disagreement lies within the band.
    """

    n: int
    disagreements: np.ndarray
    distances: np.ndarray
    band: float

    @property
    def ok(self) -> bool:
        return bool(np.all(self.distances <= self.band))

    def __repr__(self) -> str:
        return (f"Verification(n={self.n}, disagreements={len(self.disagreements)}, "
                f"off the band={int(np.sum(self.distances > self.band))}, ok={self.ok})")


@dataclass(eq=False)
class PreimageSet:
    """A union of convex pieces: the inputs of a domain whose activity meets a target.

    pieces : list of :class:`Piece`, meeting only on boundaries. complete : False when a budget stopped the
    search; then ``inner`` (the pieces) and ``outer`` (the pieces and the undecided subdomains) bound the
    true preimage. net, target, domain : what was asked (None after :meth:`load` unless given).
    stats : the search's counters (seconds, subdomains, LPs, ...).
    """

    pieces: list
    net: object = None
    target: object = None
    domain: object = None
    complete: bool = True
    undecided: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    # -- structure ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.pieces)

    def __iter__(self):
        return iter(self.pieces)

    @property
    def dim_ambient(self) -> int:
        if self.pieces:
            return self.pieces[0].polytope.dim_ambient
        if self.net is not None:
            return self.net.input_dim
        if self.undecided:
            return self.undecided[0].dim_ambient
        raise PreimageError("an empty PreimageSet without its network does not know its dimension")

    @property
    def dim(self) -> int:
        """The largest piece dimension; -1 when empty."""
        return max((p.dim for p in self.pieces), default=-1)

    @property
    def kind(self) -> str:
        """"empty", "point", "finite" (finitely many points), "bounded" or "unbounded"."""
        if not self.pieces:
            return "empty"
        if any(not p.is_bounded() for p in self.pieces):
            return "unbounded"
        if self.dim > 0:
            return "bounded"
        points = np.unique(np.round(np.stack([p.witness for p in self.pieces]), 12), axis=0)
        return "point" if len(points) == 1 else "finite"

    @property
    def inner(self) -> "PreimageSet":
        """The pieces proven inside (the set itself when complete)."""
        if self.complete:
            return self
        return PreimageSet(list(self.pieces), self.net, self.target, self.domain, True, [], dict(self.stats))

    @property
    def outer(self) -> "PreimageSet":
        """The pieces and the undecided subdomains (the set itself when complete): holds the true preimage."""
        if self.complete:
            return self
        extra = []
        for polytope in self.undecided:
            try:
                if polytope.is_empty():
                    continue
                minimal = polytope.minimal()
            except Infeasible:
                continue  # a sliver that the redundancy LPs find empty at the feasibility tolerance
            # A polytope read off a search cell carries its vertex mean, an interior point: no Chebyshev LP.
            cell_form = minimal.__dict__.get("_vertex_box") is not None
            witness = minimal._feasible_point if cell_form else minimal.relative_interior_point()
            extra.append(Piece(minimal, witness, checked=False, alternative=-1))
        return PreimageSet(list(self.pieces) + extra, self.net, self.target, self.domain, True, [], dict(self.stats))

    # -- membership -----------------------------------------------------------------------------------
    def _boxes(self):
        """``(index, lo, hi, allowance)`` of the pieces that carry their vertices' bounding box (those read off
        a search cell), and the indices of the others, which membership tests against every point."""
        cached = getattr(self, "_box_cache", None)
        if cached is not None and cached[0] == len(self.pieces):
            return cached[1]
        d = self.dim_ambient
        boxed = [i for i, p in enumerate(self.pieces) if p.polytope.__dict__.get("_vertex_box") is not None]
        lo = np.array([self.pieces[i].polytope.__dict__["_vertex_box"][0] for i in boxed]).reshape(-1, d)
        hi = np.array([self.pieces[i].polytope.__dict__["_vertex_box"][1] for i in boxed]).reshape(-1, d)
        others = np.setdiff1d(np.arange(len(self.pieces)), boxed)
        # The largest ``|b| + |a|.|x|`` of a piece's rows over its box: the tolerance allowance there, per tol.
        reach = np.array([np.abs(self.pieces[i].polytope.A).sum(axis=1).max(initial=0.0) for i in boxed])
        slack = np.array([np.abs(self.pieces[i].polytope.b).max(initial=0.0) for i in boxed])
        allowance = reach * np.maximum(np.abs(lo), np.abs(hi)).sum(axis=1) + slack if boxed else np.zeros(0)
        found = (np.array(boxed, dtype=np.intp), lo, hi, allowance, others)
        self._box_cache = (len(self.pieces), found)
        return found

    def _hits(self, points: np.ndarray, tol: float):
        """``(point index, piece index)`` of every point in every piece that holds it, within ``tol``.

        A row ``a.x <= b`` holds at x within ``tol * (1 + |b| + |a|.|x|)``. Pieces that carry their vertex box
        test only the points of their bounding box, padded by four times the largest such allowance there;
        the others test every point.
        """
        boxed, lo, hi, allowance, others = self._boxes()
        found_points, found_pieces = [], []

        def test(index, piece_index):
            P = self.pieces[piece_index].polytope
            X = points[index]
            ok = np.ones(len(index), dtype=bool)
            for A, b, equality in ((P.A, P.b, False), (P.E, P.f, True)):
                if not A.shape[0]:
                    continue
                residual = X @ A.T - b
                allowed = tol * (1.0 + np.abs(b) + np.abs(X) @ np.abs(A.T))
                ok &= np.all(np.abs(residual) <= allowed if equality else residual <= allowed, axis=1)
            found_points.append(index[ok])
            found_pieces.append(np.full(int(ok.sum()), piece_index, dtype=np.intp))

        if boxed.size and points.shape[0]:
            pad = 4.0 * tol * (1.0 + allowance)
            low, high = lo - pad[:, None], hi + pad[:, None]
            # Points sorted along the axis the boxes are thinnest on: each box's slab is one slice of them.
            spread = np.ptp(points, axis=0)
            thinnest = np.argsort(np.mean(high - low, axis=0) / np.where(spread > 0, spread, 1.0), kind="stable")
            axis = int(thinnest[0])
            order = np.argsort(points[:, axis], kind="stable")
            columns = np.ascontiguousarray(points[order].T)
            first = np.searchsorted(columns[axis], low[:, axis], side="left")
            last = np.searchsorted(columns[axis], high[:, axis], side="right")
            # Then the other axes one at a time, each on the points left by those before.
            for k in np.flatnonzero(last > first):
                index = np.arange(first[k], last[k])
                for j in thinnest[1:]:
                    values = columns[j][index]
                    index = index[(values >= low[k, j]) & (values <= high[k, j])]
                    if not index.size:
                        break
                if index.size:
                    test(order[index], int(boxed[k]))
        if others.size:
            everyone = np.arange(points.shape[0], dtype=np.intp)
            for i in others:
                P = self.pieces[i].polytope
                step = max(1, _MEMBERSHIP_ENTRIES // max(1, P.n_ineq + P.n_eq))
                for start in range(0, everyone.size, step):
                    test(everyone[start:start + step], int(i))
        if not found_points:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
        return np.concatenate(found_points), np.concatenate(found_pieces)

    def _points(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        points = X[None, :] if X.ndim == 1 else X
        d = self.dim_ambient
        if points.ndim != 2 or points.shape[1] != d:
            raise ShapeError(f"points must have shape (n, {d}) or ({d},), got {X.shape}")
        return points

    def membership(self, X, tol: float | None = None) -> np.ndarray:
        """(n, pieces) bool: which piece holds which point, within ``tol`` relative to the data's size."""
        points = self._points(X)
        tol = _settings.current().feasibility_tol if tol is None else float(tol)
        result = np.zeros((points.shape[0], len(self.pieces)), dtype=bool)
        rows, columns = self._hits(points, tol)
        result[rows, columns] = True
        return result

    def contains(self, X, tol: float | None = None):
        """Membership in the union of the pieces (the network is not consulted). (n, d) -> (n,) bool."""
        points = self._points(X)
        tol = _settings.current().feasibility_tol if tol is None else float(tol)
        inside = np.zeros(points.shape[0], dtype=bool)
        inside[self._hits(points, tol)[0]] = True
        return bool(inside[0]) if np.ndim(X) == 1 else inside

    # -- measures -------------------------------------------------------------------------------------
    def volume(self, rng=None) -> Volume:
        """The d-dimensional volume of the union (pieces meet only on boundaries, so volumes add)."""
        rng = as_generator(rng)
        value, variance, exact = 0.0, 0.0, True
        for piece in self.pieces:
            found = piece.polytope.volume(rng=rng)
            value += found.value
            variance += found.stderr ** 2
            exact &= found.exact
        return Volume(float(value), float(np.sqrt(variance)), bool(exact))

    def fraction(self, rng=None) -> Volume:
        """The volume as a fraction of the domain's volume.

        A flat domain (a box with ``lo == hi`` on some coordinates) is measured within its affine hull:
        the k-dimensional volumes of the k-dimensional pieces over the domain's k-dimensional volume.
        """
        total = _domain_volume(self.domain)
        if total > 0.0:
            found = self.volume(rng)
            return Volume(found.value / total, found.stderr / total, found.exact)
        k, total = _domain_relative(self.domain)
        rng = as_generator(rng)
        value, variance, exact = 0.0, 0.0, True
        for piece in self.pieces:
            if piece.polytope.dim == k:
                found = piece.polytope.volume(relative=True, rng=rng)
                value += found.value
                variance += found.stderr ** 2
                exact &= found.exact
        return Volume(value / total, float(np.sqrt(variance)) / total, bool(exact))

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` of the union, by two LPs per coordinate and piece; infinite sides where unbounded."""
        from .problem import _bounding_box

        d = self.dim_ambient
        lo, hi = np.full(d, np.inf), np.full(d, -np.inf)
        free = np.full(d, np.inf)
        for piece in self.pieces:
            P = piece.polytope
            low, high = _bounding_box(P.A, P.b, P.E, P.f, -free, free)
            if low is not None:
                lo, hi = np.minimum(lo, low), np.maximum(hi, high)
        return lo, hi

    def sample(self, n: int, rng=None) -> np.ndarray:
        """``n`` points uniform over the union: pieces of the largest dimension, weighted by their volume."""
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise ValueError(f"n must be a nonnegative integer, got {n!r}")
        n = int(n)
        generator = as_generator(rng)
        d = self.dim_ambient
        if not self.pieces or n == 0:
            if n and not self.pieces:
                raise PreimageError("cannot sample an empty preimage")
            return np.zeros((0, d))
        top = [p for p in self.pieces if p.dim == self.dim]
        weights = np.array([p.polytope.volume(relative=True, rng=generator).value for p in top])
        if not np.all(np.isfinite(weights)):
            raise PreimageError("cannot sample an unbounded preimage uniformly")
        weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(top), 1.0 / len(top))
        counts = generator.multinomial(n, weights)
        out = [p.polytope.sample(int(c), rng=generator) for p, c in zip(top, counts) if c]
        points = np.vstack(out)
        return points[generator.permutation(n)]

    # -- checks ---------------------------------------------------------------------------------------
    def verify(self, n: int = 10_000, rng=None, *, net=None, band: float | None = None) -> Verification:
        """Compare ``contains`` with the network's forward pass on ``n`` points sampled from the domain.

        Every disagreement must lie within ``band`` (default ``1e3 * feasibility_tol`` times the size of the
        coordinates) of a piece boundary; see :class:`Verification`.
        """
        from .targets import compile_target, satisfies

        net = net if net is not None else self.net
        if net is None or self.target is None:
            raise PreimageError("verify needs the network and the target (a loaded set: pass net= and keep target)")
        generator = as_generator(rng)
        X = _sample_domain(self.domain, n, generator, self)
        truth = satisfies(compile_target(self.target, net), net, X)
        claimed = self.contains(X)
        wrong = X[truth != claimed]
        scale = max(1.0, float(np.abs(X).max()) if X.size else 1.0)
        band = 1e3 * _settings.current().feasibility_tol * scale if band is None else float(band)
        distances = np.array([self._boundary_distance(x) for x in wrong])
        return Verification(int(n), wrong, distances.reshape(-1), band)

    def _boundary_distance(self, x: np.ndarray) -> float:
        """The inf-norm distance from x to the nearest piece boundary (inside: its smallest slack)."""
        best = np.inf
        for piece in self.pieces:
            P = piece.polytope
            if P.contains(x):
                slack = np.min(P.b - P.A @ x) if P.n_ineq else np.inf
                best = min(best, max(0.0, float(slack)) if P.n_eq == 0 else 0.0)
                continue
            best = min(best, _distance_inf(P, x))
        return best

    # -- files ----------------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the pieces to ``path`` (an ``.npz``, atomically); :meth:`load` reads it back."""
        arrays = {"complete": np.array(self.complete), "stats": np.array(json.dumps(self.stats, default=float)),
                  "d": np.array(self.dim_ambient), "count": np.array(len(self.pieces)),
                  "undecided": np.array(len(self.undecided))}
        for i, piece in enumerate(self.pieces):
            P = piece.polytope
            arrays.update({f"p{i}_A": P.A, f"p{i}_b": P.b, f"p{i}_E": P.E, f"p{i}_f": P.f,
                           f"p{i}_witness": piece.witness, f"p{i}_meta": np.array([piece.checked, piece.alternative])})
            if piece.pattern is not None:
                arrays[f"p{i}_pattern"] = piece.pattern
            if piece.affine is not None:
                arrays[f"p{i}_W"] = piece.affine.dense()
                arrays[f"p{i}_c"] = piece.affine.bias
        for i, P in enumerate(self.undecided):
            arrays.update({f"u{i}_A": P.A, f"u{i}_b": P.b, f"u{i}_E": P.E, f"u{i}_f": P.f})
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return write_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path, *, net=None, target=None, domain=None) -> "PreimageSet":
        """Read a set written by :meth:`save` (no pickles: the file holds arrays only)."""
        with np.load(Path(path), allow_pickle=False) as data:
            pieces = []
            for i in range(int(data["count"])):
                P = Polytope(data[f"p{i}_A"], data[f"p{i}_b"], data[f"p{i}_E"], data[f"p{i}_f"])
                checked, alternative = data[f"p{i}_meta"]
                pattern = data[f"p{i}_pattern"] if f"p{i}_pattern" in data else None
                affine = AffineMap(data[f"p{i}_W"], data[f"p{i}_c"]) if f"p{i}_W" in data else None
                pieces.append(Piece(P, data[f"p{i}_witness"], bool(checked), pattern, affine, int(alternative)))
            undecided = [Polytope(data[f"u{i}_A"], data[f"u{i}_b"], data[f"u{i}_E"], data[f"u{i}_f"])
                         for i in range(int(data["undecided"]))]
            return cls(pieces, net, target, domain, bool(data["complete"]), undecided, json.loads(str(data["stats"])))

    # -- display --------------------------------------------------------------------------------------
    def plot(self, ax=None, *, plane=None, bounds=None, color="C0", alpha=0.5, edgecolor="k", **kwargs):
        """Draw the set in the input plane (2-D inputs) or its slice by ``plane = (origin, u, v)``.

        bounds : ``(s0, s1, t0, t1)`` clipping window in the plane's coordinates (default: the domain box or
        the pieces' bounding box). Returns the matplotlib axes.
        """
        import matplotlib.pyplot as plt
        from matplotlib.patches import Polygon as PolygonPatch

        d = self.dim_ambient
        if plane is None:
            if d != 2:
                raise ShapeError(f"the inputs have {d} dimensions: give plane=(origin, u, v) to plot a slice")
            origin, u, v = np.zeros(2), np.array([1.0, 0.0]), np.array([0.0, 1.0])
        else:
            origin, u, v = (np.asarray(a, dtype=np.float64).reshape(d) for a in plane)
        if bounds is None:
            bounds = self._plot_window(origin, u, v)
        s0, s1, t0, t1 = bounds
        window = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]), np.array([s1, -s0, t1, -t0])
        if ax is None:
            ax = plt.gca()
        basis = np.stack([u, v], axis=1)
        for piece in self.pieces:
            P = piece.polytope
            A2 = np.vstack([P.A @ basis, window[0]]) if P.n_ineq else window[0]
            b2 = np.concatenate([P.b - P.A @ origin, window[1]]) if P.n_ineq else window[1]
            E2, f2 = (P.E @ basis, P.f - P.E @ origin) if P.n_eq else (None, None)
            section = Polytope(A2, b2, E2, f2)
            if section.is_empty():
                continue
            if section.dim == 2:
                corners = section.vertices()
                centre = corners.mean(axis=0)
                corners = corners[np.argsort(np.arctan2(*(corners - centre).T[::-1]))]
                ax.add_patch(PolygonPatch(corners, closed=True, facecolor=color, alpha=alpha, edgecolor=edgecolor,
                                          **kwargs))
            elif section.dim == 1:
                ax.plot(*section.vertices().T, color=color, lw=2.5)
            else:
                ax.plot(*section.relative_interior_point(), marker="o", color=color)
        ax.set_xlim(s0, s1)
        ax.set_ylim(t0, t1)
        return ax

    def _plot_window(self, origin, u, v):
        if isinstance(self.domain, Box) and self.dim_ambient == 2:
            return self.domain.lo[0], self.domain.hi[0], self.domain.lo[1], self.domain.hi[1]
        lo, hi = self.bounding_box() if self.pieces else (np.full(2, -1.0), np.full(2, 1.0))
        if self.dim_ambient == 2 and np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
            pad = 0.05 * np.maximum(hi - lo, 1e-9)
            return lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1]
        return -1.0, 1.0, -1.0, 1.0

    def summary(self) -> str:
        lines = [f"PreimageSet: {len(self.pieces)} pieces, kind {self.kind}, dim {self.dim}, "
                 f"{'complete' if self.complete else 'INCOMPLETE (budget)'}"]
        if self.stats:
            lines.append("  " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in self.stats.items()))
        if not self.complete:
            lines.append(f"  {len(self.undecided)} undecided subdomains (outer = pieces + undecided)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"PreimageSet(pieces={len(self.pieces)}, kind={self.kind!r}, dim={self.dim}, "
                f"complete={self.complete})")


# ----------------------------------------------------------------------------------------------- helpers

def _domain_volume(domain) -> float:
    if domain is None:
        raise PreimageError("fraction() needs a bounded domain; this preimage was computed on the whole space")
    if isinstance(domain, Box):
        return float(domain.volume())
    if isinstance(domain, Polytope):
        return float(domain.volume().value)
    return float(sum(_domain_volume(part) for part in domain))


def _domain_relative(domain) -> tuple[int, float]:
    """The dimension of a flat domain and its volume in that dimension (parts of lower dimension add 0)."""
    parts = [domain] if isinstance(domain, (Box, Polytope)) else list(domain)
    found = []
    for part in parts:
        if isinstance(part, Box):
            sides = np.asarray(part.hi) - np.asarray(part.lo)
            found.append((int(np.sum(sides > 0)), float(np.prod(sides[sides > 0]))))
        else:
            found.append((part.dim, float(part.volume(relative=True).value)))
    k = max(dim for dim, _ in found)
    return k, sum(v for dim, v in found if dim == k)


def _sample_domain(domain, n: int, generator, preimage_set) -> np.ndarray:
    """``n`` points uniform over the domain (for ``domain=None``: a box around the pieces, twice their size)."""
    if domain is None:
        d = preimage_set.dim_ambient
        if preimage_set.pieces:
            lo, hi = preimage_set.bounding_box()
            centre = np.where(np.isfinite(lo + hi), 0.5 * (lo + hi), 0.0)
            half = np.where(np.isfinite(hi - lo), np.maximum(hi - lo, 1.0), 2.0 * (1.0 + np.abs(centre)))
            return Box(centre - half, centre + half).sample(n, rng=generator)
        return Box(np.full(d, -1.0), np.full(d, 1.0)).sample(n, rng=generator)
    if isinstance(domain, (Box, Polytope)):
        return domain.sample(n, rng=generator)
    parts = list(domain)
    weights = np.array([_domain_volume(part) for part in parts])
    counts = generator.multinomial(n, weights / weights.sum())
    points = np.vstack([part.sample(int(c), rng=generator) for part, c in zip(parts, counts)])
    return points[generator.permutation(n)]


def _distance_inf(P: Polytope, x: np.ndarray) -> float:
    """``min ||y - x||_inf`` over y in P, by one LP in (y, t)."""
    d = x.size
    c = np.zeros(d + 1)
    c[-1] = 1.0
    eye = np.eye(d)
    rows = [np.hstack([eye, -np.ones((d, 1))]), np.hstack([-eye, -np.ones((d, 1))])]
    rhs = [x, -x]
    if P.n_ineq:
        rows.append(np.hstack([P.A, np.zeros((P.n_ineq, 1))]))
        rhs.append(P.b)
    E = np.hstack([P.E, np.zeros((P.n_eq, 1))]) if P.n_eq else None
    try:
        return float(solve_lp(c, np.vstack(rows), np.concatenate(rhs), E, P.f if P.n_eq else None).value)
    except Infeasible:
        return np.inf
