"""Domains with fixed coordinates: the search runs on the free coordinates and its pieces are lifted back.

A box with ``lo == hi`` on some coordinates (ACAS Xu property 4 fixes two of its five inputs) is a flat
set: no piece of it has full dimension, so the vertex search of bounded boxes, which needs full-dimensional
subdomains, would not apply. Substituting the fixed values into the first layer gives a network of the free
coordinates alone, on a full-dimensional box; its pieces, embedded by ``x = P w + c``, are the pieces of the
flat problem, with the fixed coordinates as equality rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..geometry import Polytope
from ..network import AffineMap, Network
from ..network.local import local_maps, pattern_slopes
from .targets import Conjunction

__all__ = ["Flat", "flat_coordinates"]


@dataclass(frozen=True)
class Flat:
    """The embedding ``x = P w + c`` of the free coordinates ``w = x[free]``; ``c`` holds the fixed values."""

    free: np.ndarray
    fixed: np.ndarray
    values: np.ndarray
    d: int

    @property
    def P(self) -> np.ndarray:
        """(d, k): the columns of the identity at the free coordinates."""
        return np.eye(self.d)[:, self.free]

    @property
    def c(self) -> np.ndarray:
        c = np.zeros(self.d)
        c[self.fixed] = self.values
        return c

    def network(self, net: Network) -> Network:
        """``net`` composed with the embedding: a network of the ``k`` free coordinates."""
        first = net.layers[0]
        affine = first.affine.compose(AffineMap(self.P, self.c))
        layers = (replace(first, affine=affine, input_shape=(self.free.size,)),) + net.layers[1:]
        return Network(layers, (self.free.size,), name=net.name)

    def conjunction(self, conj: Conjunction) -> Conjunction:
        A = conj.input_A
        return replace(conj, input_A=A[:, self.free], input_b=conj.input_b - A[:, self.fixed] @ self.values)

    def part(self, part):
        lo, hi, A, b = part
        return lo[self.free], hi[self.free], A[:, self.free], b - A[:, self.fixed] @ self.values

    def point(self, w: np.ndarray) -> np.ndarray:
        x = self.c.copy()
        x[self.free] = w
        return x

    def polytope(self, Q: Polytope) -> Polytope:
        """The set ``{P w + c : w in Q}``: Q's rows on the free coordinates and ``x_i = c_i`` on the fixed ones."""
        A = np.zeros((Q.A.shape[0], self.d))
        A[:, self.free] = Q.A
        E = np.zeros((Q.E.shape[0] + self.fixed.size, self.d))
        E[: Q.E.shape[0], self.free] = Q.E
        E[np.arange(self.fixed.size) + Q.E.shape[0], self.fixed] = 1.0
        return Polytope(A, Q.b, E, np.concatenate([Q.f, self.values]))

    def affine(self, net: Network, pattern: np.ndarray | None) -> AffineMap | None:
        """The output map on a one-pattern piece, over all d inputs (the masked products of ``net``)."""
        if pattern is None:
            return None
        M, c = local_maps(net, pattern_slopes(net, pattern))[-1]
        return AffineMap(M, c)


def flat_coordinates(parts, d: int) -> Flat | None:
    """The fixed coordinates shared by every part of a box domain; None when there are none.

    Only box parts (no extra rows) qualify, all with the same fixed coordinates at the same values, and at
    least one coordinate must stay free.
    """
    if not parts or any(A.shape[0] for _, _, A, _ in parts):
        return None
    lo, hi = parts[0][0], parts[0][1]
    fixed = np.flatnonzero(np.isfinite(lo) & (lo == hi))
    if fixed.size == 0 or fixed.size == d:
        return None
    for plo, phi, _, _ in parts[1:]:
        mask = np.isfinite(plo) & (plo == phi)
        if not np.array_equal(np.flatnonzero(mask), fixed) or not np.array_equal(plo[fixed], lo[fixed]):
            return None
    free = np.setdiff1d(np.arange(d), fixed)
    return Flat(free, fixed, np.array(lo[fixed], dtype=np.float64), d)
