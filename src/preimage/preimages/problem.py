"""The problem a search solves: the network as stages, the target's rows on each stage, the domain's parts.

A conjunction's rows on layer ``l`` constrain that layer's pre-activation; the search turns them into rows of
a subdomain's polytope when the subdomain reaches layer ``l`` (where the pre-activation is affine in x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EmptyDomainError, Infeasible, ShapeError, Unbounded
from ..geometry import Box, Polytope, solve_lp
from ..network import AffineMap, Network
from ..network.layers import IDENTITY
from .bounds import Stage

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

