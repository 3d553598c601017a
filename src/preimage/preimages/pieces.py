"""Pieces of a search before they become a PreimageSet: raw pieces, the search's fingerprint, the minimal
form read off a cell, and the cutting of overlapping pieces of different conjunctions into disjoint ones."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..geometry import Polytope
from ..geometry.cells import Cell
from ..geometry.polytope import _restore
from ..geometry.polytope_hull import AffineHull
from ..network import Network

@dataclass(eq=False)
class _RawPiece:
    conj: int
    A: np.ndarray
    b: np.ndarray
    E: np.ndarray
    f: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    pattern: tuple | None
    affine: tuple | None          # (M, c): output = M x + c on the piece
    cell: "Cell | _Facets | None" = None


# The layout of a checkpoint's search state (2: the queue is a heap of prioritised entries; 3: strict rows are
# kept as rows, cells drop the rows that are no facets; 4: subdomains carry their units' ranges; 5: subdomains
# carry whether their centroid meets the target, and wait in a full queue with their facets only).
_STATE_FORMAT = b"search state 5"


def _fingerprint(net: Network, conjunctions, parts, one_pattern: bool) -> str:
    digest = hashlib.sha256(_STATE_FORMAT)
    for layer in net.layers:
        for factor in layer.affine.factors:
            if hasattr(factor, "indptr"):
                for array in (factor.data, factor.indices, factor.indptr):
                    digest.update(np.ascontiguousarray(array).tobytes())
            else:
                digest.update(np.ascontiguousarray(factor).tobytes())
        digest.update(layer.affine.bias.tobytes())
        digest.update(str(layer.activation).encode())
    for conj in conjunctions:
        for array in (conj.input_A, conj.input_b, conj.output_A, conj.output_b, conj.output_E, conj.output_f):
            digest.update(np.ascontiguousarray(array).tobytes())
        for rows in conj.layer_rows:
            for array in (rows.A, rows.b, rows.E, rows.f):
                digest.update(np.ascontiguousarray(array).tobytes())
    for lo, hi, A, b in parts:
        for array in (lo, hi, A, b):
            digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(str(one_pattern).encode())
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class _Facets:
    """A full-dimensional cell kept small: its facet rows, vertex mean and bounding box, not its vertices."""

    A: np.ndarray
    b: np.ndarray
    centre: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def _compact(cell: Cell, d: int) -> "Cell | _Facets":
    """A full-dimensional cell as its ``_Facets``; a lower-dimensional one as it is."""
    if cell.dim() < d:
        return cell
    rows = cell.facets()
    return _Facets(cell.A[rows], cell.b[rows], cell.centroid(), cell.lo(), cell.hi())


def _from_cell(cell: "Cell | _Facets | None", d: int):
    """The minimal H-form and the vertex mean of a full-dimensional cell (or its ``_Facets``); (None, None)
    otherwise. The polytope carries its vertex bounding box, and a cell's polytope its vertices."""
    if cell is None:
        return None, None
    if isinstance(cell, Cell):
        if cell.dim() < d:
            return None, None
        vertices = cell.V
        cell = _compact(cell, d)
    else:
        vertices = None
    # A cell's rows are unit-norm and finite already: the polytope takes them as they are.
    polytope = _restore(cell.A, cell.b, np.zeros((0, d)), np.zeros(0), False)
    centre = cell.centre
    # The cell's vertices already decided what LPs would: nonempty, bounded, full-dimensional, minimal.
    arrays = (centre, np.eye(d), polytope.A, polytope.b - polytope.A @ centre,
              np.arange(cell.A.shape[0]), np.zeros(0, dtype=int))
    for array in arrays:
        array.setflags(write=False)
    polytope.__dict__.update(_minimal_form=polytope, _feasible_point=centre, _bounded=True,
                             _hull=AffineHull(*arrays), _vertex_box=(cell.lo, cell.hi))
    if vertices is not None:
        polytope.__dict__["_vertex_set"] = vertices
    return polytope, centre


def _subtract(P: Polytope, Q: Polytope, d: int) -> list[Polytope]:
    """Closed convex pieces covering ``P`` minus the interior of ``Q`` (overlapping only on boundaries)."""
    Qm = Q.minimal()
    if Qm.n_eq:
        return [P]
    out = []
    A_acc = np.zeros((0, d))
    b_acc = np.zeros(0)
    for a, beta in zip(Qm.A, Qm.b):
        piece = P.with_constraints(np.vstack([A_acc, -a[None, :]]), np.concatenate([b_acc, [-beta]]))
        if not piece.is_empty() and piece.dim == d:
            out.append(piece)
        A_acc = np.vstack([A_acc, a[None, :]])
        b_acc = np.concatenate([b_acc, [beta]])
    return out


def _overlap(P: Polytope, Q: Polytope, d: int) -> bool:
    both = P.intersect(Q)
    return (not both.is_empty()) and both.dim == d


def _disjoint_pieces(kept, d: int):
    """Pieces of different conjunctions overlap where the conjunctions do: cut later ones by earlier ones."""
    out = []
    for conj, polytope, raw in kept:
        fragments = [polytope]
        if polytope.dim == d:
            for other_conj, other, _ in out:
                if other_conj == conj or other.dim != d:
                    continue
                next_fragments = []
                for fragment in fragments:
                    if _overlap(fragment, other, d):
                        next_fragments.extend(_subtract(fragment, other, d))
                    else:
                        next_fragments.append(fragment)
                fragments = next_fragments
        for fragment in fragments:
            keep = raw if fragment is polytope else _RawPiece(raw.conj, fragment.A, fragment.b, fragment.E,
                                                               fragment.f, np.full(d, -np.inf), np.full(d, np.inf),
                                                               raw.pattern, raw.affine)
            out.append((conj, fragment, keep))
    return out
