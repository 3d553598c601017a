"""One round of the branch-and-prune search: bound a stack of subdomains together, then decide, advance or
split each (see ``engine`` for the whole algorithm).

Subdomains are grouped by (conjunction, stage) so that one ``bounds.stack_bounds`` call bounds a group. A
subdomain is dropped where a target row is proven violated, kept whole as a piece where every row is proven
met, advanced a layer where every unit of its stage is fixed, and otherwise split: by input bisection, by
the vertices of its cell, or by one unit that an LP finds unstable on its polytope.
"""

from __future__ import annotations

import numpy as np

from .. import settings as _settings
from ..errors import Infeasible, Unbounded
from ..geometry import solve_lp
from ..geometry.cells import Cell
from ..network import Network
from .bounds import stack_bounds
from .conjunction import satisfies
from .pieces import _compact, _RawPiece
from .problem import _stage_rows, _stages
from .subdomain import _CELL_ROUNDING, _child, _clip_or_keep, _cut_row, _extent, _Node, _solid

# Inputs of at most this dimension, in a bounded box, are searched with the vertices of every subdomain.
_CELL_DIM = 8
# A relaxation cut is made when it proves at least this share of the cell inside, or of it outside.
_CUT_PAYS = 0.25
# The vertices kept with the pieces of one search, in bytes (see ``_Search._piece``).
_PIECE_VERTEX_BYTES = 2 ** 30
# Cells are cut only while the bounds leave this many units unstable: near the end of a branch splitting is cheaper.
_CUT_UNSTABLE = 16


def _share(points: np.ndarray, rows, *, inside: bool) -> float:
    """The share of ``points`` meeting every row ``a.x <= beta`` (inside), or violating some (not inside)."""
    A = np.array([a for a, _ in rows])
    b = np.array([beta for _, beta in rows])
    met = np.all(points @ A.T <= b, axis=1)
    return float(np.mean(met if inside else ~met))


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
        self.vertex_bytes = 0

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
            node.restore()
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
                result = self._cut(node, bounds, i) if self._may_cut(node, bounds, i) else None
                if result is None:
                    result = self._advance_or_split(node, bounds, i)
                for kind, item in result:
                    if kind == "node":
                        children.append(item)
                    elif kind == "piece":
                        pieces.append(item)
                        decided += node.weight if len(result) == 1 else 0.0
                    elif kind == "part":
                        pieces.append(item[0])
                        decided += item[1]
                    else:
                        decided += item
                        dropped += 1
        self._probe(children)
        return children, pieces, decided, dropped

    def _probe(self, nodes: list[_Node]) -> None:
        """Mark the nodes whose cell's centroid misses the target (one batched forward pass): the queue takes
        them later (``_Node.priority``)."""
        with_cells = [node for node in nodes if node.cell is not None]
        if not with_cells:
            return
        centroids = np.stack([node.cell.centroid() for node in with_cells])
        conj = np.array([node.conj for node in with_cells])
        for j in np.unique(conj):
            index = np.flatnonzero(conj == j)
            met = satisfies(self.conjunctions[j], self.net, centroids[index])
            for i, ok in zip(index, met):
                with_cells[i].inside = bool(ok)

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
                    n.ranges = (exact[0][i], exact[1][i])
        rows = {}
        for k in range(stage + 1, len(self.stages)):
            r = self.rows[conj][k]
            if not r.empty:
                rows[k - stage] = np.vstack([r.A, r.E])
        vertices = None
        if all(n.cell is not None for n in group):
            vertices = [n.cell.V for n in group]
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

    def _may_cut(self, node: _Node, bounds, i: int) -> bool:
        return (bounds is not None and node.cell is not None and not node.cut and not self.one_pattern
                and not any(r.E.shape[0] for r in self.rows[node.conj][node.stage + 1:])
                and np.any(node.phases == 0) and self._unstable(node, bounds, i) >= _CUT_UNSTABLE
                and _solid(node.cell))

    def _cut(self, node: _Node, bounds, i: int):
        """Cut a cell by the affine bounds of the target rows; None when they prove nothing on it.

        The relaxation gives on the cell ``W_u x + o_u >= rows @ z >= W_l x + o_l`` for each row ``a.z <= b``.
        The part where some ``W_l x + o_l > b`` is outside the preimage (dropped); the part where every open
        row has ``W_u x + o_u <= b`` is inside it (a piece). The rest is cut into closed convex children, one
        per open row j: the inside cuts of the rows before j held, row j's reversed. Parts meet only on their
        boundaries, so pieces stay disjoint; a part of lower dimension lies in its neighbour and is left out.
        Each side is cut only where it pays: on at least ``_CUT_PAYS`` of the cell, judged on its vertices.
        """
        inner, outer = [], []
        for k, W in enumerate(bounds.input_weights):
            if W is None:
                continue
            r = self.rows[node.conj][node.stage + k]
            m = r.A.shape[0]
            up, low = bounds.rows_upper[k][i][:m], bounds.rows_lower[k][i][:m]
            scale = self.tol * (1.0 + np.abs(r.b) + np.maximum(np.abs(up), np.abs(low)))
            open_ = up > r.b
            inner.extend(zip(W[i][:m][open_], (r.b - bounds.input_offsets[k][i][:m])[open_]))
            outer.extend(zip(bounds.lower_weights[k][i][:m], r.b + scale - bounds.lower_offsets[k][i][:m]))
        # A cut pays where it decides much of the cell; else its parts only multiply the splits to come.
        # The share is judged on the vertices drawn halfway to their mean (no LP, no cut made yet).
        probe = 0.5 * (node.cell.V + node.cell.centroid())
        if outer and _share(probe, outer, inside=False) < _CUT_PAYS:
            outer = []
        prove = bool(inner) and _share(probe, inner, inside=True) >= _CUT_PAYS
        if not prove and not outer:
            return None
        rest, kept = node.cell, []
        for a, beta in outer:
            row = _cut_row(rest, a, beta, keep_side=True)
            if row is None:
                continue
            if row is False:
                return [("dropped", node.weight)]
            rest = rest.clip(*row)
            if rest is None:
                return [("dropped", node.weight)]
            kept.append(row)
        trimmed = rest
        parts, rows = [], list(kept)
        if not prove:
            inner, rest = [], None
        for a, beta in inner:
            row = _cut_row(rest, a, beta, keep_side=False)
            if row is None:
                continue
            if row is False:
                rest = None
                break
            below, above = rest.split(*row)
            if above is not None and _solid(above):
                parts.append((above, rows + [(-row[0], -row[1])], row))
            rows.append(row)
            rest = below
            if rest is None or not _solid(rest):
                rest = None
                break
        if rest is None:
            if not kept:
                return None
            parts = [(trimmed, kept, None)]
        share = node.weight / (len(parts) + (rest is not None))
        out = []
        for part, extra, strict in parts + ([(rest, rows, None)] if rest is not None else []):
            kid = _Node(node.conj, node.lo, node.hi, np.vstack([node.A] + [a[None, :] for a, _ in extra]),
                        np.concatenate([node.b, [beta for _, beta in extra]]), node.E, node.f, node.stage,
                        node.M, node.c, node.phases.copy(), node.pattern, share, node.depth + 1, node.bisect, True,
                        cut=True, strict=node.strict + (() if strict is None else (strict,)))
            kid.set_cell(part)
            out.append(("part", (self._piece(kid, complete_pattern=False), share)) if part is rest
                       else ("node", kid))
        return out

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
        if node.ranges is not None:
            low, high = node.ranges[0][free], node.ranges[1][free]
        else:
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

    def _unstable(self, node: _Node, bounds, i: int) -> int:
        """The units that the bounds leave unstable on the node, in its stage and every later one."""
        return sum(int(np.sum((bounds.lower[k][i] < 0) & (bounds.upper[k][i] > 0)))
                   for k in range(len(bounds.lower)) if self.stages[node.stage + k].activation.has_kink)

    def _worth_bisecting(self, node: _Node, bounds, i: int) -> bool:
        return self._unstable(node, bounds, i) > 8 * self.d and node.depth < 40 * self.d

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
                        node.feasible and node.A.shape[0] == 0 and node.E.shape[0] == 0, strict=node.strict)
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
                    node.feasible, node.cell, strict=node.strict)
        kid = self._enter_stage(kid)
        if kid.empty:
            return [("dropped", node.weight)]
        return [("node", kid)]

    def _piece(self, node: _Node, *, complete_pattern: bool, affine=None) -> _RawPiece:
        cell = node.cell
        if cell is not None:
            # Pieces keep their vertices (exact volumes without LPs) up to _PIECE_VERTEX_BYTES in all; beyond,
            # only their facets, vertex mean and box, so that long searches stay within memory.
            if self.vertex_bytes < _PIECE_VERTEX_BYTES:
                self.vertex_bytes += cell.V.nbytes
            else:
                cell = _compact(cell, self.d)
        return _RawPiece(node.conj, node.A, node.b, node.E, node.f, node.lo, node.hi,
                         node.pattern if complete_pattern else None, affine if complete_pattern else None, cell)

