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
        extent = float(np.max(np.ptp(self.V, axis=0))) if self.V.shape[0] > 1 else 0.0
        magnitude = float(np.max(np.abs(self.V)))
        return current().feasibility_tol * extent + _ROUNDING * magnitude

    def lo(self) -> np.ndarray:
        return self.V.min(axis=0)

    def hi(self) -> np.ndarray:
        return self.V.max(axis=0)

    def range(self, M: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact minimum and maximum of ``M x + c`` over the cell: two (k,) arrays (M (k, d), c (k,))."""
        values = self.V @ M.T + c
        return values.min(axis=0), values.max(axis=0)

    def centroid(self) -> np.ndarray:
        """The mean of the vertices: a point of the relative interior."""
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
        Zf = self.Z.astype(np.float64)
        shared = Zf[ip] @ Zf[im].T
        full = self.dim() == self.dim_ambient
        need = self.dim_ambient - 1 if full else 0
        cand_p, cand_m = np.nonzero(shared >= need)
        if cand_p.size == 0:
            return cand_p, cand_m
        pi, mj = ip[cand_p], im[cand_m]
        common = self.Z[pi] & self.Z[mj]
        size = common.sum(axis=1)
        holders = (common.astype(np.float64) @ Zf.T) == size[:, None]
        adjacent = holders.sum(axis=1) == 2
        return pi[adjacent], mj[adjacent]

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
            Z = np.vstack([self.Z[sel], new_Z])
            flag = np.concatenate([on[sel], np.ones(new_V.shape[0], dtype=bool)])
            parts.append(Cell(np.vstack([self.A, sign * a[None, :]]), np.append(self.b, sign * beta), V,
                              np.hstack([Z, flag[:, None]]), self.full))
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
