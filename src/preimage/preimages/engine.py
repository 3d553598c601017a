"""Exact preimages of a target through the whole network: branch and prune over subdomains.

A *subdomain* is a polytope P of the input space (the domain's rows, the rows of the splits that made it and
the target's rows on the layers already passed) together with the activation pattern of every layer before
its *stage* ``l``. On P the network up to layer l is one affine map, so layer l's pre-activation is
``z = M x + c`` exactly. Each round takes a stack of subdomains and, with one batched bound computation
(``bounds.stack_bounds``: intervals, then linear relaxations carried back through the transposed maps):

- drops a subdomain where some target row is proven violated on its bounding box;
- keeps a subdomain as one piece where every target row is proven met (whatever patterns it holds);
- fixes the units of layer l whose sign the bounds decide; when every unit is fixed, the pattern grows by
  one layer, the next layer's map is composed, and the target's rows on it become rows of P;
- otherwise splits: the box in two along the input coordinate that the undecided rows are most sensitive to
  (low input dimensions), or P by one unstable unit of layer l (``z <= 0`` / ``z >= 0``), chosen where the
  relaxation is loosest. An LP over P first asks whether the unit is unstable on P itself.

When the last layer is passed, P is a piece: the set of inputs of the subdomain that meet the target. The
children of a split share only their boundary, so pieces never overlap in volume. Without a bounded domain
(``domain=None``) nothing is bounded by boxes: every decision is taken by LPs over P, layer by layer.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import settings as _settings
from .._io import write_atomic
from ..errors import EmptyDomainError, Infeasible, PreimageError, ShapeError, Unbounded
from ..geometry import Box, Polytope, solve_lp
from ..geometry.cells import Cell
from ..network import AffineMap, Network
from ..network.layers import IDENTITY
from .bounds import Stage, stack_bounds
from .pieces import _disjoint_pieces, _fingerprint, _from_cell, _RawPiece
from .subspace import flat_coordinates
from .targets import compile_target, satisfies

__all__ = ["Budget", "preimage"]

# Inputs of at most this dimension, in a bounded box, are searched with the vertices of every subdomain.
_CELL_DIM = 8
_CELL_ROUNDING = 64.0 * np.finfo(np.float64).eps


@dataclass(frozen=True)
class Budget:
    """Limits of one search; None means no limit.

    seconds : wall time of the search. pieces : pieces found. subdomains : subdomains processed.
    """

    seconds: float | None = None
    pieces: int | None = None
    subdomains: int | None = None

    def __post_init__(self):
        for name in ("seconds", "pieces", "subdomains"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise ValueError(f"Budget {name} must be a nonnegative number or None, got {value!r}")


# ----------------------------------------------------------------------------------------------- problem

@dataclass(frozen=True, eq=False)
class _Rows:
    """Target rows on one stage's pre-activation: ``A z <= b``, ``E z = f``; phases they imply."""

    A: np.ndarray
    b: np.ndarray
    E: np.ndarray
    f: np.ndarray
    on: np.ndarray
    off: np.ndarray

    @property
    def empty(self) -> bool:
        return self.A.shape[0] == 0 and self.E.shape[0] == 0


def _stages(net: Network) -> list[Stage]:
    """The network's layers, with an identity stage appended when the output itself has a kink."""
    stages = [Stage(layer.affine, layer.activation) for layer in net.layers]
    if net.layers[-1].activation.has_kink:
        stages.append(Stage(AffineMap.identity(net.output_dim), IDENTITY))
    return stages


def _stage_rows(net: Network, stages, conjunction) -> list[_Rows]:
    """The conjunction's rows per stage; output rows land on the last stage (the output's pre-activation)."""
    out = []
    last = len(stages) - 1
    for k, stage in enumerate(stages):
        units = stage.affine.out_features
        A, b = np.zeros((0, units)), np.zeros(0)
        E, f = np.zeros((0, units)), np.zeros(0)
        on = np.zeros(units, dtype=bool)
        off = np.zeros(units, dtype=bool)
        rows = conjunction.rows_of(k) if k < len(net.layers) else None
        if rows is not None:
            A, b, E, f = rows.A, rows.b, rows.E, rows.f
            if stage.activation.has_kink:
                on, off = rows.fixed_on.copy(), rows.fixed_off.copy()
        if k == last:
            A = np.vstack([A, conjunction.output_A])
            b = np.concatenate([b, conjunction.output_b])
            E = np.vstack([E, conjunction.output_E])
            f = np.concatenate([f, conjunction.output_f])
        out.append(_Rows(np.ascontiguousarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64),
                         np.ascontiguousarray(E, dtype=np.float64), np.asarray(f, dtype=np.float64), on, off))
    return out


def _domain_parts(domain, d: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The domain as ``(lo, hi, A, b)`` parts: a box (infinite sides allowed) and rows ``A x <= b``."""
    if domain is None:
        return [(np.full(d, -np.inf), np.full(d, np.inf), np.zeros((0, d)), np.zeros(0))]
    if isinstance(domain, (Box, Polytope)):
        domain = [domain]
    if not isinstance(domain, (list, tuple)) or not domain:
        raise TypeError("domain must be a Box, a Polytope, a non-empty sequence of them, or None "
                        f"(all of the input space); got {type(domain).__name__}")
    parts = []
    for i, part in enumerate(domain):
        if isinstance(part, Box):
            if part.dim != d:
                raise ShapeError(f"domain box {i} has {part.dim} coordinates; the network takes {d} inputs")
            parts.append((np.array(part.lo), np.array(part.hi), np.zeros((0, d)), np.zeros(0)))
        elif isinstance(part, Polytope):
            if part.dim_ambient != d:
                raise ShapeError(f"domain polytope {i} lives in R^{part.dim_ambient}; the network takes {d} inputs")
            if part.n_eq:
                A = np.vstack([part.A, part.E, -part.E])
                b = np.concatenate([part.b, part.f, -part.f])
            else:
                A, b = np.array(part.A), np.array(part.b)
            lo, hi = _bounding_box(A, b, np.zeros((0, d)), np.zeros(0), np.full(d, -np.inf), np.full(d, np.inf))
            if lo is None:
                raise EmptyDomainError(f"domain polytope {i} is empty")
            parts.append((lo, hi, A, b))
        else:
            raise TypeError(f"domain part {i} is a {type(part).__name__}; expected a Box or a Polytope")
    return parts


def _bounding_box(A, b, E, f, lo, hi):
    """The tightest box around ``{A x <= b, E x = f, lo <= x <= hi}`` by 2d LPs; (None, None) when empty."""
    d = lo.size
    new_lo, new_hi = lo.copy(), hi.copy()
    for j in range(d):
        c = np.zeros(d)
        c[j] = 1.0
        for sign, target in ((1.0, new_lo), (-1.0, new_hi)):
            try:
                result = solve_lp(sign * c, A, b, E if E.shape[0] else None, f if E.shape[0] else None, lo, hi)
            except Infeasible:
                return None, None
            except Unbounded:
                continue
            target[j] = result.x[j]
    return np.minimum(new_lo, new_hi), np.maximum(new_lo, new_hi)


# ----------------------------------------------------------------------------------------------- subdomains

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
    cell: Cell | None = None      # the polytope with its vertices (bounded, low-dimensional inputs)
    empty: bool = False           # known to be empty

    def set_cell(self, cell: Cell | None) -> None:
        """Hold ``cell`` (None: proven empty) and shrink the box to the cell's bounding box."""
        if cell is None:
            self.cell, self.empty = None, True
            return
        self.cell = cell
        pad = cell.tolerance()
        self.lo = np.maximum(self.lo, cell.lo() - pad)
        self.hi = np.minimum(self.hi, cell.hi() + pad)
        self.feasible = True

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


@dataclass
class _State:
    """Everything a resumed search needs."""

    fingerprint: str
    queue: list
    pieces: list
    processed: int = 0
    lps: int = 0
    seconds: float = 0.0
    decided: float = 0.0
    dropped: int = 0
    roots: int = 1
    first_piece: float | None = None


# ----------------------------------------------------------------------------------------------- search

class _Search:
    def __init__(self, net: Network, conjunctions, parts, *, one_pattern: bool, input_split, batch: int):
        self.net = net
        self.d = net.input_dim
        self.stages = _stages(net)
        self.rows = [_stage_rows(net, self.stages, c) for c in conjunctions]
        self.conjunctions = conjunctions
        self.one_pattern = one_pattern
        self.batch = batch
        self.tol = _settings.current().feasibility_tol
        self.first_dense = None
        self.input_split = input_split
        self.lps = 0

    # -- set-up ---------------------------------------------------------------------------------------
    def roots(self, parts) -> list[_Node]:
        nodes = []
        for j, conj in enumerate(self.conjunctions):
            if conj.trivially_empty:
                continue
            has_eq = any(r.E.shape[0] for r in self.rows[j])
            for lo, hi, A, b in parts:
                A = np.vstack([A, conj.input_A])
                b = np.concatenate([b, conj.input_b])
                node = _Node(j, lo.copy(), hi.copy(), A, b, np.zeros((0, self.d)), np.zeros(0), 0, None, None,
                             np.zeros(self.stages[0].affine.out_features, dtype=np.int8))
                node.bisect = self._may_bisect(node, has_eq)
                node.feasible = A.shape[0] == 0
                if self._may_hold_cell(node, has_eq):
                    # Exact ranges over the vertices decide more than halving the box: bisect only on request.
                    node.bisect = bool(self.input_split)
                    node.set_cell(Cell.box(lo, hi).clip_rows(A, b))
                    if node.empty:
                        continue
                node = self._enter_stage(node)
                if node is not None and not node.empty:
                    nodes.append(node)
        return nodes

    def _may_bisect(self, node: _Node, has_eq: bool) -> bool:
        if self.one_pattern or has_eq or not node.bounded:
            return False
        if self.input_split is not None:
            return bool(self.input_split)
        return self.d <= 12

    def _may_hold_cell(self, node: _Node, has_eq: bool) -> bool:
        """Vertices are kept for bounded full-dimensional boxes of low dimension without equality targets."""
        return (not has_eq and node.bounded and self.d <= _CELL_DIM and bool(np.all(node.hi > node.lo)))

    def _first_rows(self, index=None) -> np.ndarray:
        """Rows of the first layer's W as a dense array (all rows, or ``index``)."""
        affine = self.stages[0].affine
        if index is None:
            if self.first_dense is None:
                self.first_dense = affine.dense()
            return self.first_dense
        if self.first_dense is not None:
            return self.first_dense[index]
        return affine.rows(np.atleast_1d(index)).dense()

    def _map(self, node: _Node):
        """``(M, c)`` of the node's stage, dense."""
        if node.M is None:
            return self._first_rows(), self.stages[0].affine.bias
        return node.M, node.c

    def _enter_stage(self, node: _Node) -> _Node | None:
        """Add the target's rows on the node's stage to its polytope, and the phases they imply."""
        rows = self.rows[node.conj][node.stage]
        if rows.empty:
            node.phases[rows.on] = 1
            node.phases[rows.off] = -1
            return node
        M, c = self._map(node)
        if rows.A.shape[0]:
            node.A = np.vstack([node.A, rows.A @ M])
            node.b = np.concatenate([node.b, rows.b - rows.A @ c])
            if node.cell is not None:
                node.set_cell(_clip_or_keep(node.cell, rows.A @ M, rows.b - rows.A @ c))
        if rows.E.shape[0]:
            node.cell = None
            node.E = np.vstack([node.E, rows.E @ M])
            node.f = np.concatenate([node.f, rows.f - rows.E @ c])
        node.phases[rows.on] = 1
        node.phases[rows.off] = -1
        node.feasible = False
        return node

    # -- LPs ------------------------------------------------------------------------------------------
    def _lp(self, node: _Node, objective):
        self.lps += 1
        E = node.E if node.E.shape[0] else None
        f = node.f if node.E.shape[0] else None
        A = node.A if node.A.shape[0] else None
        b = node.b if node.A.shape[0] else None
        return solve_lp(objective, A, b, E, f, node.lo, node.hi)

    def _feasible(self, node: _Node) -> bool:
        if node.empty:
            return False
        if node.feasible or node.cell is not None:
            return True
        try:
            self._lp(node, np.zeros(self.d))
        except Infeasible:
            return False
        node.feasible = True
        return True

    def _unit_range(self, node: _Node, w: np.ndarray, c: float):
        """``min`` and ``max`` of ``w . x + c`` over the node's polytope (inf when unbounded); None if empty."""
        values = []
        for sign in (1.0, -1.0):
            try:
                result = self._lp(node, sign * w)
            except Infeasible:
                return None
            except Unbounded:
                values.append(-np.inf)
                continue
            values.append(sign * (w @ result.x) + c * sign)
        low, high = values[0], -values[1]
        return low, high

    # -- one round ------------------------------------------------------------------------------------
    def process(self, nodes: list[_Node]):
        """Decide, advance or split each node; returns ``(children, pieces, decided weight, dropped)``."""
        children, pieces = [], []
        decided = 0.0
        dropped = 0
        live = []
        for node in nodes:
            if self._feasible(node):
                live.append(node)
            else:
                decided += node.weight
                dropped += 1
        groups: dict = {}
        for node in live:
            key = (node.conj, node.stage, node.M is None, node.bounded)
            groups.setdefault(key, []).append(node)
        for (conj, stage, first_layer, bounded), group in groups.items():
            bounds = self._bounds(group, conj, stage, first_layer) if bounded else None
            for i, node in enumerate(group):
                verdict = self._verdict(node, bounds, i) if bounds is not None else None
                if verdict == "out":
                    decided += node.weight
                    dropped += 1
                    continue
                if verdict == "in":
                    pieces.append(self._piece(node, complete_pattern=False))
                    decided += node.weight
                    continue
                if bounds is not None:
                    lower, upper = bounds.lower[0][i], bounds.upper[0][i]
                    kink = self.stages[stage].activation.has_kink
                    if kink:
                        node.phases[(lower >= 0.0) & (node.phases == 0)] = 1
                        node.phases[(upper <= 0.0) & (node.phases == 0)] = -1
                    else:
                        node.phases[:] = 1
                elif not self.stages[stage].activation.has_kink:
                    node.phases[:] = 1
                result = self._advance_or_split(node, bounds, i)
                for kind, item in result:
                    if kind == "node":
                        children.append(item)
                    elif kind == "piece":
                        pieces.append(item)
                        decided += node.weight if len(result) == 1 else 0.0
                    else:
                        decided += item
                        dropped += 1
        return children, pieces, decided, dropped

    def _bounds(self, group, conj, stage, first_layer):
        stages = self.stages[stage:]
        lo = np.stack([n.lo for n in group])
        hi = np.stack([n.hi for n in group])
        first = None
        if not first_layer:
            first = (np.stack([n.M for n in group]), np.stack([n.c for n in group]))
        phases = np.stack([n.phases for n in group])
        exact = None
        if any(n.cell is not None for n in group):
            units = phases.shape[1]
            exact = (np.full((len(group), units), -np.inf), np.full((len(group), units), np.inf))
            for i, n in enumerate(group):
                if n.cell is not None:
                    M, c = self._map(n)
                    exact[0][i], exact[1][i] = n.cell.range(M, c)
        rows = {}
        for k in range(stage + 1, len(self.stages)):
            r = self.rows[conj][k]
            if not r.empty:
                rows[k - stage] = np.vstack([r.A, r.E])
        vertices = None
        if all(n.cell is not None for n in group):
            most = max(n.cell.n_vertices for n in group)
            vertices = np.empty((len(group), most, self.d))
            for i, n in enumerate(group):
                V = n.cell.V
                vertices[i, : V.shape[0]] = V
                vertices[i, V.shape[0]:] = V[0]
        return stack_bounds(stages, lo, hi, first=first, phases=phases, rows=rows, first_bounds=exact,
                            vertices=vertices)

    def _verdict(self, node: _Node, bounds, i: int):
        """"out" when a row is violated on the box, "in" when every row is met, else None."""
        met = True
        for k in range(node.stage + 1, len(self.stages)):
            r = self.rows[node.conj][k]
            if r.empty:
                continue
            up = bounds.rows_upper[k - node.stage][i]
            low = bounds.rows_lower[k - node.stage][i]
            m = r.A.shape[0]
            rhs = np.concatenate([r.b, r.f])
            scale = self.tol * (1.0 + np.abs(rhs) + np.maximum(np.abs(up), np.abs(low)))
            if np.any(low[:m] > r.b + scale[:m]):
                return "out"
            if r.E.shape[0]:
                if np.any(low[m:] > r.f + scale[m:]) or np.any(up[m:] < r.f - scale[m:]):
                    return "out"
                met = False
            if np.any(up[:m] > r.b):
                met = False
        if not met or self.one_pattern:
            return None
        for k in range(len(bounds.lower)):
            if self.stages[node.stage + k].activation.has_kink:
                lower, upper = bounds.lower[k][i], bounds.upper[k][i]
                if k == 0:
                    undecided = (lower < 0.0) & (upper > 0.0) & (node.phases == 0)
                else:
                    undecided = (lower < 0.0) & (upper > 0.0)
                if np.any(undecided):
                    return "in"
        return None  # every unit is stable: advancing gives the piece with its pattern

    def _advance_or_split(self, node: _Node, bounds, i: int):
        free = np.flatnonzero(node.phases == 0)
        if free.size == 0:
            return self._advance(node)
        if node.bisect and bounds is not None and self._worth_bisecting(node, bounds, i):
            return [("node", child) for child in self._bisect(node, bounds, i)]
        M, c = self._map(node)
        if node.cell is not None:
            return self._split_cell(node, M, c, free)
        if bounds is not None:
            lower, upper = bounds.lower[0][i][free], bounds.upper[0][i][free]
            order = free[np.argsort(-np.minimum(-lower, upper) * 1.0, kind="stable")]
        else:
            order = free
        for unit in order:
            w, cu = M[unit], c[unit]
            found = self._unit_range(node, w, cu)
            if found is None:
                return [("dropped", node.weight)]
            low, high = found
            scale = self.tol * (1.0 + abs(cu) + np.linalg.norm(w) * (1.0 + _extent(node)))
            if high <= scale:
                node.phases[unit] = -1
                continue
            if low >= -scale:
                node.phases[unit] = 1
                continue
            # Unstable on P: split.
            off = _child(node, w[None, :], np.array([-cu]), unit, -1)
            on = _child(node, -w[None, :], np.array([cu]), unit, 1)
            return [("node", off), ("node", on)]
        return self._advance(node)

    def _split_cell(self, node: _Node, M, c, free):
        """Fix the free units whose sign the vertices decide; split by the most balanced of the rest."""
        low, high = node.cell.range(M[free], c[free])
        scale = node.cell.tolerance() * np.linalg.norm(M[free], axis=1) + _CELL_ROUNDING * np.abs(c[free])
        off = high <= scale
        on = (low >= -scale) & ~off
        node.phases[free[off]] = -1
        node.phases[free[on]] = 1
        open_ = ~(off | on)
        if not open_.any():
            return self._advance(node)
        candidates = free[open_]
        unit = int(candidates[np.argmax(np.minimum(-low[open_], high[open_]))])
        w, cu = M[unit], c[unit]
        below, above = node.cell.split(w, -cu)
        kids = []
        for part, a, beta, phase in ((below, w, -cu, -1), (above, -w, cu, 1)):
            if part is None:
                kids.append(("dropped", node.weight / 2.0))
                continue
            kid = _child(node, a[None, :], np.array([beta]), unit, phase)
            kid.set_cell(part)
            kids.append(("node", kid))
        return kids

    def _worth_bisecting(self, node: _Node, bounds, i: int) -> bool:
        unstable = sum(int(np.sum((bounds.lower[k][i] < 0) & (bounds.upper[k][i] > 0)))
                       for k in range(len(bounds.lower)) if self.stages[node.stage + k].activation.has_kink)
        return unstable > 8 * self.d and node.depth < 40 * self.d

    def _bisect(self, node: _Node, bounds, i: int):
        radius = 0.5 * (node.hi - node.lo)
        score = radius.copy()
        for k, X in enumerate(bounds.input_weights):
            if X is None:
                continue
            r = self.rows[node.conj][node.stage + k]
            up = bounds.rows_upper[k][i]
            open_rows = up[: r.A.shape[0]] > r.b
            if np.any(open_rows):
                score = np.abs(X[i][: r.A.shape[0]][open_rows]).sum(axis=0) * radius
                break
        axis = int(np.argmax(score))
        if score[axis] <= 0.0:
            axis = int(np.argmax(radius))
        mid = 0.5 * (node.lo[axis] + node.hi[axis])
        kids = []
        for side in (0, 1):
            lo, hi = node.lo.copy(), node.hi.copy()
            if side == 0:
                hi[axis] = mid
            else:
                lo[axis] = mid
            kid = _Node(node.conj, lo, hi, node.A, node.b, node.E, node.f, node.stage, node.M, node.c,
                        node.phases.copy(), node.pattern, node.weight / 2.0, node.depth + 1, node.bisect,
                        node.feasible and node.A.shape[0] == 0 and node.E.shape[0] == 0)
            if node.cell is not None:
                normal = np.zeros(self.d)
                normal[axis] = 1.0 if side == 0 else -1.0
                kid.set_cell(node.cell.clip(normal, mid if side == 0 else -mid))
                if kid.empty:
                    continue
            kids.append(kid)
        return kids

    def _advance(self, node: _Node):
        """Every unit of the stage is fixed: compose the next stage, or emit the piece after the last."""
        stage = self.stages[node.stage]
        M, c = self._map(node)
        slope = np.where(node.phases > 0, 1.0, stage.activation.slope) if stage.activation.has_kink else None
        pattern = node.pattern + ((node.phases > 0).copy(),) if (stage.activation.has_kink
                                                                  and node.stage < len(self.net.layers)) else node.pattern
        if node.stage == len(self.stages) - 1:
            out_M = M if slope is None else slope[:, None] * M
            out_c = c if slope is None else slope * c
            node.pattern = pattern
            return [("piece", self._piece(node, complete_pattern=True, affine=(out_M, out_c)))]
        DM = M if slope is None else slope[:, None] * M
        Dc = c if slope is None else slope * c
        nxt = self.stages[node.stage + 1].affine
        new_M = np.ascontiguousarray(nxt.linear(np.ascontiguousarray(DM.T)).T)
        new_c = nxt(Dc[None, :])[0]
        kid = _Node(node.conj, node.lo, node.hi, node.A, node.b, node.E, node.f, node.stage + 1, new_M, new_c,
                    np.zeros(nxt.out_features, dtype=np.int8), pattern, node.weight, node.depth, node.bisect,
                    node.feasible, node.cell)
        kid = self._enter_stage(kid)
        if kid.empty:
            return [("dropped", node.weight)]
        return [("node", kid)]

    def _piece(self, node: _Node, *, complete_pattern: bool, affine=None) -> _RawPiece:
        return _RawPiece(node.conj, node.A, node.b, node.E, node.f, node.lo, node.hi,
                         node.pattern if complete_pattern else None, affine if complete_pattern else None, node.cell)


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
                 True)


# ----------------------------------------------------------------------------------------------- results

def _raw_polytope(raw) -> Polytope:
    node = _Node(raw.conj, raw.lo, raw.hi, raw.A, raw.b, raw.E, raw.f, 0, None, None, np.zeros(0, np.int8))
    return node.polytope()


# ----------------------------------------------------------------------------------------------- entry point

def preimage(net, target, domain=None, *, budget: Budget | None = None, one_pattern_per_piece: bool = False,
             progress: bool | None = None, checkpoint=None, checkpoint_every: float = 60.0, resume: bool = False,
             input_split: bool | None = None, batch: int = 256):
    """The exact set of inputs in ``domain`` whose activity meets ``target``, as a union of convex pieces.

    Parameters
    ----------
    net : a ``Network`` (or anything ``pim.load`` accepts).
    target : a target of ``preimages.targets`` (``Activity``, ``Pattern``, ``ArgMax``, ``OutputPolytope``,
        ``NeuronRange``, ``InputPolytope``, ``AnyOf``) or a list of them (all of them).
    domain : a ``Box``, a ``Polytope``, a sequence of them (their union; parts meet only on boundaries), or
        None for the whole input space (pieces may then be unbounded).
    budget : ``Budget(seconds=, pieces=, subdomains=)``; when it stops the search the result has
        ``complete=False`` and its ``inner`` / ``outer`` bound the true preimage.
    one_pattern_per_piece : split until every piece has one activation pattern (linear regions).
    progress : show a progress bar (True), never (False), or only when stderr is a terminal (None).
    checkpoint : a file the search state is written to (atomically) every ``checkpoint_every`` seconds and
        when it stops; ``resume=True`` continues from it, giving the same pieces as an uninterrupted run.
        The file is a pickle written by this function: load only checkpoints you wrote.
    input_split : bisect the input box while many units are unstable (default: bounded domains of inputs
        of dimension 9 to 12 without equality targets; lower dimensions are searched with the vertices
        of every subdomain, where ReLU splits alone are faster).
    batch : subdomains bounded together in one round.

    Returns
    -------
    PreimageSet. Ctrl-C during the search returns the certified partial result (``complete=False``).
    """
    from .preimage_set import Piece, PreimageSet
    from ..network.load import load

    if not isinstance(net, Network):
        net = load(net)
    if budget is not None and not isinstance(budget, Budget):
        raise TypeError(f"budget must be a pim.Budget, got {type(budget).__name__}")
    budget = budget or Budget()
    conjunctions = compile_target(target, net)
    parts = _domain_parts(domain, net.input_dim)
    flat = flat_coordinates(parts, net.input_dim)
    search_net, search_conj, search_parts = net, conjunctions, parts
    if flat is not None:
        search_net = flat.network(net)
        search_conj = [flat.conjunction(conj) for conj in conjunctions]
        search_parts = [flat.part(part) for part in parts]
    search = _Search(search_net, search_conj, search_parts, one_pattern=one_pattern_per_piece,
                     input_split=input_split, batch=int(batch))
    fingerprint = _fingerprint(search_net, search_conj, search_parts, one_pattern_per_piece)
    state = None
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs the checkpoint file to resume from")
        path = Path(checkpoint)
        if path.exists():
            with open(path, "rb") as handle:
                state = pickle.load(handle)
            if not isinstance(state, _State) or state.fingerprint != fingerprint:
                raise PreimageError(f"checkpoint {path} was written for another network, target or domain")
    if state is None:
        roots = search.roots(search_parts)
        state = _State(fingerprint, roots[::-1], [], roots=max(1, len(roots)))
    complete = _run(search, state, budget, progress, checkpoint, checkpoint_every)

    pieces = []
    unchecked = 0
    kept: list[tuple[int, Polytope | None, _RawPiece]] = []
    for raw in state.pieces:
        if raw.cell is not None and len(search_conj) == 1:
            kept.append((raw.conj, None, raw))
            continue
        polytope = _raw_polytope(raw)
        if raw.cell is None and polytope.is_empty():
            continue
        kept.append((raw.conj, polytope, raw))
    if len(search_conj) > 1:
        kept = _disjoint_pieces(kept, search_net.input_dim)
    found = []
    for conj, polytope, raw in kept:
        minimal, point = _from_cell(raw.cell, search_net.input_dim)
        if minimal is None:
            minimal = (polytope if polytope is not None else _raw_polytope(raw)).minimal()
            point = minimal.relative_interior_point()
        if flat is not None:
            minimal, point = flat.polytope(minimal), flat.point(point)
        found.append((conj, minimal, point, raw))
    checked = np.ones(len(found), dtype=bool)
    for j, conj in enumerate(conjunctions):
        index = [i for i, item in enumerate(found) if item[0] == j]
        if index:
            X = np.stack([found[i][2] for i in index])
            checked[index] = satisfies(conj, net, X, tol=max(1e-6, _settings.current().feasibility_tol))
    for (conj, minimal, point, raw), ok in zip(found, checked):
        unchecked += 0 if ok else 1
        pattern = None if raw.pattern is None else np.concatenate(raw.pattern) if raw.pattern else np.zeros(0, bool)
        affine = None if raw.affine is None else AffineMap(raw.affine[0], raw.affine[1])
        if flat is not None and affine is not None:
            affine = flat.affine(net, pattern)
        pieces.append(Piece(minimal, point, bool(ok), pattern, affine, conj))
    undecided = [n.polytope() for n in state.queue] if not complete else []
    if flat is not None:
        undecided = [flat.polytope(P) for P in undecided]
    stats = {"seconds": state.seconds, "subdomains": state.processed, "lps": state.lps + search.lps,
             "dropped": state.dropped, "witnesses_off_target": unchecked,
             "first_piece_seconds": state.first_piece}
    return PreimageSet(pieces, net=net, target=target, domain=domain, complete=complete, undecided=undecided,
                       stats=stats)


def _run(search: _Search, state: _State, budget: Budget, progress, checkpoint, checkpoint_every) -> bool:
    """Run the search on ``state`` until done or out of budget; True when complete."""
    import sys

    from tqdm.auto import tqdm

    show = progress if progress is not None else sys.stderr.isatty()
    bar = tqdm(total=1.0, disable=not show, unit="", bar_format="{l_bar}{bar}| {postfix}", leave=False)
    start = time.perf_counter() - state.seconds
    last_save = time.perf_counter()
    complete = True
    try:
        while state.queue:
            elapsed = time.perf_counter() - start
            if ((budget.seconds is not None and elapsed >= budget.seconds)
                    or (budget.pieces is not None and len(state.pieces) >= budget.pieces)
                    or (budget.subdomains is not None and state.processed >= budget.subdomains)):
                complete = False
                break
            take = search.batch
            if budget.subdomains is not None:
                take = max(1, min(take, int(budget.subdomains) - state.processed))
            nodes = state.queue[-take:]
            try:
                children, pieces, decided, dropped = search.process(nodes)
            except KeyboardInterrupt:
                complete = False
                break
            del state.queue[-take:]
            state.queue.extend(children[::-1])
            state.pieces.extend(pieces)
            if pieces and state.first_piece is None:
                state.first_piece = time.perf_counter() - start
            state.processed += len(nodes)
            state.decided += decided
            state.dropped += dropped
            state.seconds = time.perf_counter() - start
            bar.n = min(1.0, state.decided / state.roots)
            bar.set_postfix_str(f"{len(state.pieces)} pieces, {len(state.queue)} open, {state.seconds:.1f} s")
            if checkpoint is not None and time.perf_counter() - last_save >= checkpoint_every:
                _save_state(state, search, checkpoint)
                last_save = time.perf_counter()
    except KeyboardInterrupt:
        complete = False
    finally:
        bar.close()
    state.seconds = time.perf_counter() - start
    if checkpoint is not None:
        _save_state(state, search, checkpoint)
    return complete and not state.queue


def _save_state(state: _State, search: _Search, path) -> None:
    lps = state.lps
    state.lps = lps + search.lps
    search.lps = 0
    write_atomic(path, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
