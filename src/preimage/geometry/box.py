"""Axis-aligned boxes ``{x : lo <= x <= hi}``: the usual input domain of a network."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EmptyDomainError, ShapeError
from ..settings import current
from .polytope import Polytope, as_generator

__all__ = ["Box"]


@dataclass(frozen=True, eq=False)
class Box:
    """The box ``{x in R^d : lo <= x <= hi}``.

    Parameters
    ----------
    lo, hi : (d,) array_like, finite, d >= 1. ``lo == hi`` on a coordinate is allowed (a flat box).

    Raises
    ------
    ShapeError : lo and hi are not 1-D of one length. ValueError : NaN or infinite bounds.
    EmptyDomainError : ``lo > hi`` on some coordinate (the first one is named).
    """

    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self):
        lo = np.array(self.lo, dtype=np.float64)
        hi = np.array(self.hi, dtype=np.float64)
        if lo.ndim != 1 or lo.shape != hi.shape or lo.size == 0:
            raise ShapeError(f"Box needs lo and hi of one shape (d,), d >= 1; got {lo.shape} and {hi.shape}")
        for name, bound in (("lo", lo), ("hi", hi)):
            bad = np.flatnonzero(~np.isfinite(bound))
            if bad.size:
                raise ValueError(f"Box {name}[{bad[0]}] is {bound[bad[0]]!r}; bounds must be finite numbers")
        crossed = np.flatnonzero(lo > hi)
        if crossed.size:
            j = int(crossed[0])
            raise EmptyDomainError(f"Box is empty: lo[{j}] = {lo[j]!r} > hi[{j}] = {hi[j]!r}")
        lo.setflags(write=False)
        hi.setflags(write=False)
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def dim(self) -> int:
        """d."""
        return self.lo.size

    @property
    def centre(self) -> np.ndarray:
        """(d,) midpoint."""
        return (self.lo + self.hi) / 2.0

    @property
    def radius(self) -> np.ndarray:
        """(d,) half-widths."""
        return (self.hi - self.lo) / 2.0

    def contains(self, X, tol: float | None = None):
        """``lo - tol <= x <= hi + tol`` (default tol: ``feasibility_tol``). X (n, d) -> (n,) bool; (d,) -> bool."""
        tol = current().feasibility_tol if tol is None else float(tol)
        X = np.asarray(X, dtype=np.float64)
        single = X.ndim == 1
        points = X[None, :] if single else X
        if points.ndim != 2 or points.shape[1] != self.dim:
            raise ShapeError(f"points must have shape (n, {self.dim}) or ({self.dim},), got {X.shape}")
        inside = np.all((points >= self.lo - tol) & (points <= self.hi + tol), axis=1)
        return bool(inside[0]) if single else inside

    def volume(self) -> float:
        """The d-dimensional volume, the product of the widths."""
        return float(np.prod(self.hi - self.lo))

    def sample(self, n: int, rng=None) -> np.ndarray:
        """``n`` points (n, d) uniform in the box; rng: Generator, int seed, or None (seed 0)."""
        n = int(n)
        if n < 0:
            raise ValueError(f"number of samples must be >= 0, got {n}")
        return as_generator(rng).uniform(self.lo, self.hi, size=(n, self.dim))

    def to_polytope(self) -> Polytope:
        """The box as a Polytope: rows ``x_j <= hi_j`` then ``-x_j <= -lo_j``."""
        identity = np.eye(self.dim)
        return Polytope(np.vstack([identity, -identity]), np.concatenate([self.hi, -self.lo]))

    def split(self, axis: int, at: float | None = None) -> tuple["Box", "Box"]:
        """Cut along coordinate ``axis`` at ``at`` (default: the midpoint): (lower part, upper part)."""
        axis = int(axis)
        if not 0 <= axis < self.dim:
            raise IndexError(f"axis {axis} out of range for a box in R^{self.dim}")
        at = float(self.centre[axis]) if at is None else float(at)
        if not self.lo[axis] <= at <= self.hi[axis]:
            raise ValueError(f"split point {at!r} lies outside [{self.lo[axis]!r}, {self.hi[axis]!r}] on axis {axis}")
        upper_of_lower = self.hi.copy()
        upper_of_lower[axis] = at
        lower_of_upper = self.lo.copy()
        lower_of_upper[axis] = at
        return Box(self.lo, upper_of_lower), Box(lower_of_upper, self.hi)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Box):
            return NotImplemented
        return bool(np.array_equal(self.lo, other.lo) and np.array_equal(self.hi, other.hi))

    def __hash__(self) -> int:
        return hash((self.lo.tobytes(), self.hi.tobytes()))

    def __repr__(self) -> str:
        if self.dim <= 4:
            return f"Box(lo={self.lo.tolist()}, hi={self.hi.tolist()})"
        return f"Box(d={self.dim}, lo in [{self.lo.min()!r}, {self.lo.max()!r}], hi in [{self.hi.min()!r}, {self.hi.max()!r}])"
