"""Subdomains of a search: a polytope of the input space with its box, its stage and the pattern so far.

A subdomain (``_Node``) at stage ``l`` holds the activation pattern of every layer before ``l``; on its polytope
the network up to layer ``l`` is one affine map ``z = M x + c``. Bounded low-dimensional subdomains also hold
their vertices (a ``Cell``), which decide unit signs exactly without LPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import Polytope
from ..geometry.cells import Cell
from .pieces import _compact, _Facets

_CELL_ROUNDING = 64.0 * np.finfo(np.float64).eps
# A relaxation cut leaves no part thinner than this share of the cell's extent (slivers are numerically frail).
_CUT_MARGIN = 1e-6
# The weight in the queue of a subdomain whose centroid misses the target, against 1 for one that meets it. A
# budget-stopped search spends its time where the inner bound grows: on dubinsrejoin at 60 s, 67 % of the
# preimage proven against 58 % by volume alone. The complete result is the same either way.
_OUTSIDE_WEIGHT = 0.05


@dataclass(eq=False)
class _Node:
    """A subdomain: its box, its rows, its stage, the affine map of that stage, phases and the pattern so far."""

    conj: int
    lo: np.ndarray
    hi: np.ndarray
    A: np.ndarray
    b: np.ndarray
    E: np.ndarray
    f: np.ndarray
    stage: int
    M: np.ndarray | None          # (units, d) map of the stage's pre-activation; None: the network's first layer
    c: np.ndarray | None
    phases: np.ndarray            # (units,) int8: +1 on, -1 off, 0 undecided
    pattern: tuple = ()
    weight: float = 1.0           # share of the root's volume (progress only)
    depth: int = 0
    bisect: bool = False
    feasible: bool = False        # known to hold a point
    cell: Cell | _Facets | None = None  # the polytope with its vertices (bounded, low-dimensional inputs), or
                                        # only its facets while it waits in a full queue (``shed``)
    empty: bool = False           # known to be empty
    cut: bool = False             # made by a relaxation cut: the next round splits it instead of cutting again
    strict: tuple = ()            # rows (a, beta) held strictly: a sibling holds the points of a.x = beta
    ranges: tuple | None = None   # exact (low, high) of the stage's units over the cell, while it is processed
    inside: bool = True           # the centroid of its cell meets the target (forward pass): orders the queue

    def set_cell(self, cell: Cell | None) -> None:
        """Hold ``cell`` (None: proven empty) and shrink the box to the cell's bounding box.

        A cell of lower dimension within the hyperplane of a strict row is empty too: its points lie in the
        sibling across that hyperplane, which the search covers.
        """
        if cell is not None and self.strict and cell.dim() < cell.dim_ambient:
            tol = cell.tolerance()
            for a, beta in self.strict:
                if np.all(np.abs(cell.V @ a - beta) <= tol + _CELL_ROUNDING * abs(beta)):
                    cell = None
                    break
        self.ranges = None
        if cell is None:
            self.cell, self.empty = None, True
            return
        self.cell = cell
        pad = cell.tolerance()
        self.lo = np.maximum(self.lo, cell.lo() - pad)
        self.hi = np.minimum(self.hi, cell.hi() + pad)
        self.feasible = True

    def shed(self) -> None:
        """Keep a full-dimensional cell as its facets, vertex mean and box only (a tenth or less of its bytes),
        while the node waits in a queue over its memory cap; ``restore`` rebuilds the vertices."""
        if isinstance(self.cell, Cell) and _solid(self.cell):
            self.cell = _compact(self.cell, self.cell.dim_ambient)

    def restore(self) -> None:
        """Rebuild the vertices of a shed cell: a box around it, clipped by its facets."""
        if not isinstance(self.cell, _Facets):
            return
        facets = self.cell
        pad = 0.125 * (facets.hi - facets.lo) + _CELL_ROUNDING * (1.0 + np.abs(facets.lo) + np.abs(facets.hi))
        self.set_cell(_clip_or_keep(Cell.box(facets.lo - pad, facets.hi + pad), facets.A, facets.b))

    @property
    def priority(self) -> float:
        """The volume of the node's box (its share of the domain where unbounded), times ``_OUTSIDE_WEIGHT``
        where the centroid of its cell misses the target: the search takes larger subdomains first, and of
        those, the ones likely to add to the inner bound. Cells shrink their box to their own extent, so it
        follows cuts and splits."""
        if self.bounded:
            return float(np.prod(self.hi - self.lo)) * (1.0 if self.inside else _OUTSIDE_WEIGHT)
        return self.weight

    @property
    def nbytes(self) -> int:
        """The bytes of the node's arrays (its cell's included)."""
        arrays = [self.lo, self.hi, self.A, self.b, self.E, self.f, self.phases, self.M, self.c]
        if isinstance(self.cell, Cell):
            arrays += [self.cell.A, self.cell.b, self.cell.V, self.cell.Z]
        elif self.cell is not None:
            arrays += [self.cell.A, self.cell.b, self.cell.centre, self.cell.lo, self.cell.hi]
        return sum(array.nbytes for array in arrays if array is not None)

    @property
    def bounded(self) -> bool:
        return bool(np.all(np.isfinite(self.lo)) and np.all(np.isfinite(self.hi)))

    def polytope(self) -> Polytope:
        d = self.lo.size
        finite_lo = np.isfinite(self.lo)
        finite_hi = np.isfinite(self.hi)
        eye = np.eye(d)
        A = np.vstack([self.A, -eye[finite_lo], eye[finite_hi]])
        b = np.concatenate([self.b, -self.lo[finite_lo], self.hi[finite_hi]])
        if self.E.shape[0]:
            return Polytope(A, b, self.E, self.f)
        return Polytope(A, b)


def _cut_row(cell: Cell, a: np.ndarray, beta: float, *, keep_side: bool):
    """The row ``a.x <= beta`` made safe to cut ``cell`` with: unit-norm, and moved so that neither side is a
    sliver thinner than ``_CUT_MARGIN`` of the cell's extent. None: nothing to cut (the cell meets the row,
    or lies too little beyond it); False: the cell is all beyond the row.

    The side ``a.x <= beta`` is the proven one: with ``keep_side`` (a proof of what lies beyond, dropped) the
    row moves out so that less is dropped, else (a proof of what lies within) it moves in so that less is
    proven. Either way the proof stays valid.
    """
    norm = float(np.linalg.norm(a))
    tiny = _CELL_ROUNDING * (1.0 + abs(beta))
    if norm <= tiny:
        return None if beta >= -tiny else False
    a, beta = a / norm, beta / norm
    values = cell.V @ a
    low, high = float(values.min()), float(values.max())
    margin = _CUT_MARGIN * float(np.max(np.ptp(cell.V, axis=0)))
    tol = cell.tolerance() + _CELL_ROUNDING * abs(beta)
    if high - beta <= (margin if keep_side else tol):
        return None
    if keep_side:
        beta = max(beta, low + margin)
        return None if high - beta <= margin else (a, beta)
    beta = min(beta, high - margin)
    return False if beta - low < margin else (a, beta)


def _solid(cell: Cell) -> bool:
    """Full-dimensional beyond doubt: of full rank, and no row holds every vertex (a sliver within the
    tolerance of a hyperplane is a face, whatever its rank)."""
    return cell.dim() == cell.dim_ambient and not np.any(cell.Z.all(axis=0))


def _clip_or_keep(cell: Cell, A: np.ndarray, b: np.ndarray) -> Cell | None:
    """``cell`` cut by ``A x <= b``; a row with a vanishing normal is met or violated by its constant alone."""
    norms = np.linalg.norm(A, axis=1)
    scale = _CELL_ROUNDING * (1.0 + np.abs(b) + norms)
    for a, beta, norm, tiny in zip(A, b, norms, scale):
        if norm <= tiny:
            if beta < -tiny:
                return None
            continue
        cell = cell.clip(a, beta)
        if cell is None:
            return None
    return cell


def _extent(node: _Node) -> float:
    finite = np.concatenate([node.lo[np.isfinite(node.lo)], node.hi[np.isfinite(node.hi)]])
    return float(np.max(np.abs(finite))) if finite.size else 1.0


def _child(node: _Node, a: np.ndarray, b: np.ndarray, unit: int, phase: int) -> _Node:
    phases = node.phases.copy()
    phases[unit] = phase
    return _Node(node.conj, node.lo, node.hi, np.vstack([node.A, a]), np.concatenate([node.b, b]), node.E, node.f,
                 node.stage, node.M, node.c, phases, node.pattern, node.weight / 2.0, node.depth + 1, node.bisect,
                 True, strict=node.strict)


def _raw_polytope(raw) -> Polytope:
    node = _Node(raw.conj, raw.lo, raw.hi, raw.A, raw.b, raw.E, raw.f, 0, None, None, np.zeros(0, np.int8))
    return node.polytope()

