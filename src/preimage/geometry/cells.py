"""Bounded polytopes in low dimension held by both descriptions: rows and vertices with their incidence.

A ``Cell`` is ``{x : A x <= b}`` (unit-norm rows) together with its vertices ``V`` and the incidence
``Z[i, r]`` (vertex i lies on row r). Cutting a cell by a hyperplane is one step of the double
description method: vertices are sorted to the two sides, and each edge that crosses the hyperplane gives
a new vertex. Two vertices span an edge iff no third vertex lies on every row the two share (the
combinatorial adjacency test, exact for any polytope, degenerate ones included). With the vertices at hand,
the range of any affine function over the cell is a matrix product, emptiness and dimension are read off,
the facets are the rows whose vertices span a hyperplane, and the mean of the vertices is a
relative-interior point: no LP is needed.

A vertex counts as on a hyperplane when its distance is within ``feasibility_tol`` times the cell's
extent, plus the rounding of the product at the coordinates' magnitude: the test means the same after
translating or scaling the cell.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..errors import ShapeError
from ..settings import current

__all__ = ["Cell"]

_ROUNDING = 64.0 * np.finfo(np.float64).eps


@dataclass(frozen=True, eq=False)
class Cell:
    """A bounded polytope with rows, vertices and incidence.

    A : (m, d) unit-norm rows; b : (m,). V : (v, d) vertices (v >= 1). Z : (v, m) bool, vertex on row.
    full : known to be full-dimensional (a box, and both parts of a cut that has vertices on both sides).
    """

    A: np.ndarray
    b: np.ndarray
    V: np.ndarray
    Z: np.ndarray
    full: bool = False

    @classmethod
    def box(cls, lo, hi) -> "Cell":
        """The box ``lo <= x <= hi`` (finite, ``lo < hi`` everywhere): 2d rows, 2^d vertices."""
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        if lo.ndim != 1 or lo.shape != hi.shape:
            raise ShapeError(f"Cell.box needs lo and hi of one shape (d,), got {lo.shape} and {hi.shape}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
            raise ValueError("Cell.box needs finite bounds with lo < hi on every coordinate")
        d = lo.size
        eye = np.eye(d)
        A = np.vstack([-eye, eye])
        b = np.concatenate([-lo, hi])
        upper = ((np.arange(2 ** d)[:, None] >> np.arange(d)[None, :]) & 1).astype(bool)
        V = np.where(upper, hi, lo)
        Z = np.hstack([~upper, upper])
        return cls(A, b, V, Z, True)

    @property
    def dim_ambient(self) -> int:
        return self.A.shape[1]

    @property
    def n_vertices(self) -> int:
        return self.V.shape[0]

    def tolerance(self) -> float:
        """Distance within which a vertex counts as on a unit-norm hyperplane."""
        return self._tolerance

    @cached_property
    def _tolerance(self) -> float:
        lo, hi = self._box
        extent = float(np.max(hi - lo))
        magnitude = float(max(np.max(np.abs(lo)), np.max(np.abs(hi))))
        return current().feasibility_tol * extent + _ROUNDING * magnitude

    @cached_property
    def _box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.V.min(axis=0), self.V.max(axis=0)

    def lo(self) -> np.ndarray:
        return self._box[0].copy()

    def hi(self) -> np.ndarray:
        return self._box[1].copy()

    def range(self, M: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact minimum and maximum of ``M x + c`` over the cell: two (k,) arrays (M (k, d), c (k,))."""
        values = self.V @ M.T + c
        return values.min(axis=0), values.max(axis=0)

    def centroid(self) -> np.ndarray:
        """The mean of the vertices: a point of the relative interior."""
        return self._centroid.copy()

    @cached_property
    def _centroid(self) -> np.ndarray:
        return self.V.mean(axis=0)

    def dim(self) -> int:
        """The affine dimension (rank of the vertices' differences, relative to the cell's extent)."""
        return self._dim

    @cached_property
    def _dim(self) -> int:
        if self.full:
            return self.dim_ambient
        if self.V.shape[0] == 1:
            return 0
        D = self.V[1:] - self.V[0]
        s = np.linalg.svd(D, compute_uv=False)
        if s[0] == 0.0:
            return 0
        rank = int(np.sum(s > max(current().rank_rtol * s[0], self.tolerance())))
        # Every vertex on one hyperplane (within the tolerance) is a sliver of that hyperplane, however wide
        # its vertices spread along it: the incidence and the rank must say the same.
        if self.Z.shape[1] and np.any(self.Z.all(axis=0)):
            rank = min(rank, self.dim_ambient - 1)
        return rank

    @cached_property
    def _rows_on(self) -> np.ndarray:
        """(v,) the number of rows each vertex lies on."""
        return self.Z.sum(axis=1)

    # ------------------------------------------------------------------------------------------------ cuts

    def _sides(self, a: np.ndarray, beta: float):
        norm = float(np.linalg.norm(a))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError("a cut needs a finite nonzero normal")
        a = a / norm
        beta = beta / norm
        s = self.V @ a - beta
        tol = self.tolerance() + _ROUNDING * abs(beta)
        return a, beta, s, s > tol, s < -tol

    def _edges(self, plus: np.ndarray, minus: np.ndarray):
        """Index pairs (i in plus, j in minus) of the vertices that span an edge."""
        ip = np.flatnonzero(plus)
        im = np.flatnonzero(minus)
        d = self.dim_ambient
        # The incidence as floats counts shared rows by matrix products: made at most once per cut, not kept.
        Zf = functools.cache(lambda: self.Z.astype(np.float64))
        if self.dim() < d:
            return self._edges_by_incidence(ip, im, 0, Zf)
        on = self._rows_on
        simple_p, simple_m = ip[on[ip] == d], im[on[im] == d]
        found = self._simple_edges(simple_p, simple_m)
        if found is None:
            found = self._edges_by_incidence(simple_p, simple_m, d - 1, Zf)
        # Pairs with an end on more (or, by rounding, fewer) than d rows: the incidence test.
        others = [found, self._edges_by_incidence(ip[on[ip] != d], im, d - 1, Zf),
                  self._edges_by_incidence(simple_p, im[on[im] != d], d - 1, Zf)]
        return np.concatenate([o[0] for o in others]), np.concatenate([o[1] for o in others])

    def _edges_by_incidence(self, ip: np.ndarray, im: np.ndarray, need: int, incidence):
        """Edges between the vertices ``ip`` and ``im`` by the combinatorial test: the two share ``need`` rows
        or more, and no third vertex lies on every row they share. ``incidence()`` gives ``Z`` as floats."""
        empty = np.zeros(0, dtype=np.intp)
        if ip.size == 0 or im.size == 0:
            return empty, empty
        Zf = incidence()
        shared = Zf[ip] @ Zf[im].T
        cand_p, cand_m = np.nonzero(shared >= need)
        if cand_p.size == 0:
            return empty, empty
        pi, mj = ip[cand_p], im[cand_m]
        adjacent = np.zeros(pi.size, dtype=bool)
        if need == self.dim_ambient - 1:
            # A simple vertex (on exactly d rows, independent as it is a vertex) shares a line with each
            # vertex on d - 1 of its rows: the polytope meets that line in a segment whose ends are the two
            # vertices (no vertex lies between two others), so the pair is an edge with no further test.
            on = self._rows_on
            adjacent = (on[pi] == self.dim_ambient) | (on[mj] == self.dim_ambient)
        rest = np.flatnonzero(~adjacent)
        if rest.size:
            common = self.Z[pi[rest]] & self.Z[mj[rest]]
            size = common.sum(axis=1)
            holders = (common.astype(np.float64) @ Zf.T) == size[:, None]
            adjacent[rest] = holders.sum(axis=1) == 2
        return pi[adjacent], mj[adjacent]

    def _simple_edges(self, ip: np.ndarray, im: np.ndarray):
        """Edges between simple vertices (each on exactly d rows) of a full-dimensional cell, by matching the
        (d - 1)-row sets of their edge lines; None where the sets do not fit one integer key, or a line holds
        more than two vertices (rounding), for the incidence test to decide."""
        d = self.dim_ambient
        m = self.Z.shape[1]
        bits = max(1, int(m - 1).bit_length())
        empty = np.zeros(0, dtype=np.intp)
        if ip.size == 0 or im.size == 0:
            return empty, empty
        if m <= 63:
            # The key of a line is the bit mask of its rows: a vertex's mask less one of its bits.
            bit = np.left_shift(np.int64(1), np.arange(m, dtype=np.int64))

            def keys(index):
                rows = np.nonzero(self.Z[index])[1].reshape(index.size, d)
                masks = bit[rows]
                lines = masks.sum(axis=1)[:, None] - masks
                return lines.ravel(), np.repeat(index, d)
        elif d >= 2 and bits * (d - 1) <= 62:
            # Else the rows' indices in base 2^bits, in increasing order.
            weights = np.left_shift(np.int64(1), bits * np.arange(d - 1, dtype=np.int64))

            def keys(index):
                rows = np.nonzero(self.Z[index])[1].reshape(index.size, d)
                lines = np.stack([np.delete(rows, j, axis=1) @ weights for j in range(d)], axis=1)
                return lines.ravel(), np.repeat(index, d)
        else:
            return None

        kp, op = keys(ip)
        km, om = keys(im)
        key = np.concatenate([kp, km])
        owner = np.concatenate([op, om])
        minus_side = np.concatenate([np.zeros(kp.size, bool), np.ones(km.size, bool)])
        order = np.argsort(key, kind="stable")
        key, owner, minus_side = key[order], owner[order], minus_side[order]
        same = key[1:] == key[:-1]
        if np.any(same[1:] & same[:-1]):
            return None
        hit = np.flatnonzero(same & (minus_side[1:] != minus_side[:-1]))
        first_minus = minus_side[hit]
        return (np.where(first_minus, owner[hit + 1], owner[hit]),
                np.where(first_minus, owner[hit], owner[hit + 1]))

    def split(self, a, beta) -> tuple["Cell | None", "Cell | None"]:
        """The parts ``a.x <= beta`` and ``a.x >= beta``; None for an empty part.

        A part touching the hyperplane only (every vertex on it, none beyond) is returned as that face.
        """
        a = np.asarray(a, dtype=np.float64)
        a, beta, s, plus, minus = self._sides(a, float(beta))
        on = ~(plus | minus)
        if not plus.any():
            below = self._with_row(a, beta, on)
            above = self._face(on, -a, -beta) if on.any() else None
            return below, above
        if not minus.any():
            above = self._with_row(-a, -beta, on)
            below = self._face(on, a, beta) if on.any() else None
            return below, above
        i, j = self._edges(plus, minus)
        t = s[i] / (s[i] - s[j])
        new_V = self.V[i] + t[:, None] * (self.V[j] - self.V[i])
        new_Z = self.Z[i] & self.Z[j]
        parts = []
        for keep, sign in ((minus, 1.0), (plus, -1.0)):
            sel = keep | on
            V = np.vstack([self.V[sel], new_V])
            flag = np.concatenate([on[sel], np.ones(new_V.shape[0], dtype=bool)])
            Z = np.hstack([np.vstack([self.Z[sel], new_Z]), flag[:, None]])
            A, b = np.vstack([self.A, sign * a[None, :]]), np.append(self.b, sign * beta)
            if self.full:
                # A row of a full-dimensional cell on fewer than d vertices is no facet: it is dropped, so
                # that the rows (and the incidence) stay as few as the facets.
                facet = Z.sum(axis=0) >= self.dim_ambient
                if not facet.all():
                    A, b, Z = A[facet], b[facet], Z[:, facet]
            parts.append(Cell(A, b, V, Z, self.full))
        return parts[0], parts[1]

    def clip(self, a, beta) -> "Cell | None":
        """The part ``a.x <= beta``; None when empty."""
        return self.split(a, beta)[0]

    def clip_rows(self, A, b) -> "Cell | None":
        """The part ``A x <= b`` (rows one by one); None when empty."""
        cell = self
        for a, beta in zip(np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64)):
            cell = cell.clip(a, beta)
            if cell is None:
                return None
        return cell

    def _with_row(self, a, beta, on) -> "Cell":
        return Cell(np.vstack([self.A, a[None, :]]), np.append(self.b, beta), self.V,
                    np.hstack([self.Z, on[:, None]]), self.full)

    def _face(self, on, a, beta) -> "Cell":
        V = self.V[on]
        Z = np.hstack([self.Z[on], np.ones((V.shape[0], 1), dtype=bool)])
        return Cell(np.vstack([self.A, a[None, :]]), np.append(self.b, beta), V, Z)

    # ------------------------------------------------------------------------------------------------ H-form

    def facets(self) -> np.ndarray:
        """Indices of one row per facet of a full-dimensional cell.

        Every proper face lies in a facet, whose vertex set is then strictly larger; every facet is some
        row's face. So the facet rows are those whose sets of vertices are maximal among the rows' (and
        hold at least d vertices); of rows with one and the same set the first is kept.
        """
        d = self.dim_ambient
        S = self.Z.T.astype(np.float64)
        counts = S.sum(axis=1)
        shared = S @ S.T
        contained = shared == counts[:, None]            # [r, s]: the vertices of r all lie on s
        larger = counts[None, :] > counts[:, None]
        dominated = np.any(contained & larger, axis=1)
        same = contained & contained.T
        earlier = np.tril(same, k=-1).any(axis=1)
        keep = (counts >= d) & ~dominated & ~earlier
        return np.flatnonzero(keep)
