"""The polytope ``{x in R^d : A x <= b, E x = f}``: an immutable H-form with lazily computed facts.

Every fact that needs an LP (emptiness, affine hull, Chebyshev ball, boundedness, minimal form) is
computed on first use and cached; the object itself never changes. Lower-dimensional polytopes are
handled through their affine hull ``{x0 + Z w}``: there the inequalities form a full-dimensional
system in ``w``, on which vertices, volume and sampling work.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .._rng import as_generator
from ..errors import EmptyDomainError, Infeasible, ShapeError
from ..settings import current
from . import linalg, sampling, volume
from .cones import recession_cone_is_trivial
from .polytope_hull import AffineHull, affine_hull_of, chebyshev_ball, least_feasible
from .polytope_rows import (
    _empty_system, _finite_matrix, _normalise_equalities, _normalise_inequalities, _right_hand_side,
)
from .redundancy import minimal_system

__all__ = ["Polytope", "AffineHull", "Volume", "as_generator"]

# A slack computed from data of size |v| carries rounding of a few units in the last place of |v|.
_NOISE_ULPS = 8.0


@dataclass(frozen=True)
class Volume:
    """A volume with its evidence: ``value``, its standard error, and whether it is exact.

    ``float(v)`` gives the value. ``exact`` volumes have ``stderr == 0.0``.
    """

    value: float
    stderr: float
    exact: bool

    def __float__(self) -> float:
        return float(self.value)


class Polytope:
    """The set ``{x in R^d : A x <= b, E x = f}``, immutable, float64.

    Parameters
    ----------
    A : (m, d) array_like, finite. b : (m,) array_like; ``+inf`` entries drop their row, ``-inf``
        makes the set empty, NaN is refused.
    E : (p, d) array_like, finite, or None. f : (p,) array_like, finite, or None (both or neither).

    On construction every row of A is scaled to unit Euclidean norm (b with it), likewise E and f.
    A zero row ``0 <= b_i`` is dropped when met (``b_i >= -feasibility_tol``) and otherwise makes the
    set empty; a zero row of E likewise with ``|f_i| <= feasibility_tol``. A set found empty this way
    is stored as the canonical empty system ``x_1 <= -1, -x_1 <= -1``, so that ``(A, b, E, f)``
    always describes the set exactly.

    Attributes
    ----------
    A : (m, d), b : (m,), E : (p, d), f : (p,): read-only float64 arrays, rows normalised.
    dim_ambient : d. n_ineq : m. n_eq : p.

    Facts found by LPs use the settings in force when they are first asked for, and are then cached.
    A polytope made from a cell of known vertices (the pieces of the engine's vertex search) keeps them
    and measures its volume as their convex hull, with no LP.
    """

    def __init__(self, A, b, E=None, f=None):
        A = _finite_matrix(A, "A")
        d = A.shape[1]
        if d < 1:
            raise ShapeError(f"A must have at least one column (the ambient dimension), got shape {A.shape}")
        b = _right_hand_side(b, A.shape[0], "b", "A", A.shape)
        if (E is None) != (f is None):
            raise ShapeError("E and f must be given together (or both left None)")
        if E is None:
            E, f = np.zeros((0, d)), np.zeros(0)
        E = _finite_matrix(E, "E")
        if E.shape[1] != d:
            raise ShapeError(f"E must have {d} columns like A {A.shape}, got shape {E.shape}")
        f = _right_hand_side(f, E.shape[0], "f", "E", E.shape)
        if not np.all(np.isfinite(f)):
            raise ValueError(f"f contains {f[~np.isfinite(f)][0]!r} at index {int(np.argmax(~np.isfinite(f)))}")
        tol = current().feasibility_tol
        A, b, empty_a = _normalise_inequalities(A, b, tol)
        E, f, empty_e = _normalise_equalities(E, f, tol)
        if empty_a or empty_e:
            A, b, E, f = _empty_system(d)
        self._set_arrays(A, b, E, f, empty_a or empty_e)

    def _set_arrays(self, A, b, E, f, empty: bool) -> None:
        for array in (A, b, E, f):
            array.setflags(write=False)
        self.__dict__.update(A=A, b=b, E=E, f=f, _empty_by_construction=empty)

    def __setattr__(self, name, value):
        raise AttributeError(f"Polytope is immutable; cannot set {name!r}")

    def __delattr__(self, name):
        raise AttributeError(f"Polytope is immutable; cannot delete {name!r}")

    def __reduce__(self):
        return _restore, (self.A, self.b, self.E, self.f, self._empty_by_construction)

    @property
    def dim_ambient(self) -> int:
        """d, the dimension of the space the polytope lives in."""
        return self.A.shape[1]

    @property
    def n_ineq(self) -> int:
        """m, the number of inequality rows."""
        return self.A.shape[0]

    @property
    def n_eq(self) -> int:
        """p, the number of equality rows."""
        return self.E.shape[0]

    def __repr__(self) -> str:
        state = ", empty" if self._empty_by_construction else ""
        return f"Polytope(d={self.dim_ambient}, n_ineq={self.n_ineq}, n_eq={self.n_eq}{state})"

    # ----------------------------------------------------------------- facts decided by LPs

    def is_empty(self) -> bool:
        """True iff no point satisfies the constraints (one feasibility LP, cached)."""
        return self._feasible_point is None

    # Every fact beyond emptiness is computed on P in its own frame ``y = (x - shift) / scale``, where
    # shift is a feasible point and scale the size of the set seen from it, and mapped back: a set means
    # the same after a translation by 1e7 or a scaling by 1e-6, and the data's own rounding (a few units
    # in the last place of |b| and |A| |x|) is allowed on every row, so no slack is read from noise.

    @cached_property
    def _normal(self) -> "Polytope":
        """P in its frame (see above), as a Polytope whose frame is the identity; P itself when empty."""
        if self.__dict__.get("_frame") is not None or self._feasible_point is None:
            self.__dict__.setdefault("_frame", (np.zeros(self.dim_ambient), 1.0))
            return self
        shift = self._feasible_point
        slack = self.b - self.A @ shift
        noise_a = self._row_noise(self.A, self.b, shift)
        noise_e = self._row_noise(self.E, self.f, shift)
        clear = slack[np.isfinite(slack) & (slack > 2.0 * noise_a + current().feasibility_tol)]
        # The smallest clear slack: the set's extent from its feasible point along its nearest facet,
        # never a far row's (a row at 1e10 next to a unit box must not make the box look small).
        scale = float(np.min(clear)) if clear.size else 1.0
        if not np.isfinite(scale) or scale <= 0.0:
            scale = 1.0
        normal = _restore(self.A, slack / scale, self.E, (self.f - self.E @ shift) / scale, False)
        normal.__dict__.update(_frame=(np.zeros(self.dim_ambient), 1.0), _noise_a=noise_a / scale,
                               _noise_e=noise_e / scale, _feasible_point=np.zeros(self.dim_ambient))
        self.__dict__["_frame"] = (shift, scale)
        return normal

    @property
    def _shift_scale(self) -> tuple[np.ndarray, float]:
        """``(shift, scale)`` of P's frame: ``x = shift + scale * y``."""
        self._normal  # noqa: B018 (computes the frame)
        return self.__dict__["_frame"]

    def _row_noise(self, M: np.ndarray, v: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(r,) the rounding a slack ``v - M x`` of these rows may carry, plus what P's frame inherited."""
        inherited = self.__dict__.get("_noise_a" if M is self.A else "_noise_e", 0.0)
        with np.errstate(invalid="ignore", over="ignore"):
            own = _NOISE_ULPS * np.finfo(np.float64).eps * (np.abs(v) + np.abs(M) @ np.abs(x))
        return inherited + np.where(np.isfinite(own), own, 0.0)

    @cached_property
    def _equality_frame(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(x_p, Z)`` with ``{E x = f} = {x_p + Z w}``, Z (d, k) orthonormal; None if inconsistent.

        The equalities are eliminated here, by least squares and an SVD under the one rank rule, before
        any LP sees the system: an overdetermined E that is consistent only up to round-off (the active
        units of a wide layer) is then never declared infeasible by the solver's presolve.
        """
        d = self.dim_ambient
        if self.n_eq == 0:
            return np.zeros(d), np.eye(d)
        x_p, residual = linalg.least_squares(self.E, self.f)
        allowed = current().feasibility_tol * max(1.0, float(np.max(np.abs(x_p))))
        if residual > allowed + float(np.max(self._row_noise(self.E, self.f, x_p))):
            return None
        return x_p, linalg.null_space(self.E)

    @cached_property
    def _reduced(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """P on the flat ``{E x = f}``: ``(x_p, Z, A_r, b_r, flat)`` with ``P = {x_p + Z w : A_r w <= b_r}``.

        ``flat`` marks the rows of A that are constant on the flat (normal in the span of E); they are
        zero rows of A_r. None if the equalities are inconsistent.
        """
        frame = self._equality_frame
        if frame is None:
            return None
        x_p, Z = frame
        A_r = linalg.restrict_rows(self.A, Z)
        b_r = self.b - self.A @ x_p
        return x_p, Z, A_r, b_r, ~A_r.any(axis=1)

    @cached_property
    def _feasible_point(self) -> np.ndarray | None:
        if self._empty_by_construction or self._reduced is None:
            return None
        x_p, Z, A_r, b_r, flat = self._reduced
        # Each row may miss by its own rounding: the data cannot place it more precisely.
        b_r = b_r + self._row_noise(self.A, self.b, x_p)
        if np.any(b_r[flat] < -current().feasibility_tol):
            return None
        if Z.shape[1] == 0 or np.all(flat):
            return x_p
        try:
            w = least_feasible(A_r[~flat], b_r[~flat])
        except Infeasible:
            return None
        return x_p + Z @ w

    def affine_hull(self) -> AffineHull:
        """The affine hull of P with P's inequalities in its coordinates; EmptyDomainError if P is empty."""
        hull = self._hull
        if hull is None:
            raise EmptyDomainError(f"{self!r} is empty: it has no affine hull")
        return hull

    @cached_property
    def _hull(self) -> AffineHull | None:
        """The affine hull found in P's frame, mapped back; None if P is empty."""
        normal = self._normal
        hull = normal._hull_here
        if hull is None or normal is self:
            return hull
        shift, scale = self._shift_scale
        arrays = (shift + scale * hull.point, hull.basis, hull.A, scale * hull.b, hull.rows, hull.implicit)
        for array in arrays:
            array.setflags(write=False)
        return AffineHull(*arrays)

    @cached_property
    def _hull_here(self) -> AffineHull | None:
        """The affine hull, or None if P is empty; found with two LPs (see ``polytope_hull.implicit_rows``)."""
        return affine_hull_of(self)

    @property
    def dim(self) -> int:
        """The affine dimension of P; -1 if P is empty."""
        hull = self._hull
        return -1 if hull is None else hull.dim

    def is_bounded(self) -> bool:
        """True iff P is bounded (the empty set is). Decided by the recession cone ``{A v <= 0, E v = 0}``."""
        return self._bounded

    @cached_property
    def _bounded(self) -> bool:
        if self.is_empty():
            return True
        return recession_cone_is_trivial(self.A, self.E)

    @property
    def kind(self) -> str:
        """One of "empty", "point", "bounded", "unbounded"."""
        if self.is_empty():
            return "empty"
        if self.dim == 0:
            return "point"
        return "bounded" if self.is_bounded() else "unbounded"

    @cached_property
    def _ball(self) -> tuple[np.ndarray, float]:
        """Chebyshev centre (k,) and radius of the reduced system ``A w <= b`` of the affine hull."""
        return chebyshev_ball(self)

    def chebyshev(self) -> tuple[np.ndarray, float]:
        """The centre (d,) and radius of the largest ball inside P within the affine set ``{E x = f}``.

        The ball's radius is measured along that affine set (rows of A projected on null(E)).
        Radius 0.0 when P is lower-dimensional than ``{E x = f}`` (the centre is then a relative-interior
        point); ``np.inf`` when P holds balls of every radius (the centre is then some interior point).
        Raises EmptyDomainError if P is empty.
        """
        hull = self.affine_hull()
        normal = self._normal
        shift, scale = self._shift_scale
        centre, radius = normal._ball
        point = shift + scale * normal.affine_hull().to_ambient(centre[None, :])[0]
        if hull.dim < self._equality_dim:
            return point, 0.0
        return point, scale * radius

    @cached_property
    def _equality_dim(self) -> int:
        """The dimension of the affine set ``{E x = f}``: d - rank(E)."""
        return self.dim_ambient - linalg.rank(self.E)

    def relative_interior_point(self) -> np.ndarray:
        """A point (d,) of P's relative interior: the Chebyshev centre within the affine hull.

        For a single point (dim 0) it is that point. Raises EmptyDomainError if P is empty.
        """
        self.affine_hull()
        normal = self._normal
        shift, scale = self._shift_scale
        return shift + scale * normal.affine_hull().to_ambient(normal._ball[0][None, :])[0]

    # ----------------------------------------------------------------- minimal H-form

    def minimal(self) -> "Polytope":
        """An equivalent polytope in minimal H-form (cached).

        Implicit equalities become equalities, the equalities are reduced to independent rows (of
        ``[E; implicit rows of A]``, chosen by pivoted QR), and redundant inequalities are removed. Exact
        duplicate rows are merged first (the tightest kept), and rows that rays shot from a relative-interior
        point prove to be facets are kept without an LP. Every other candidate row i is relaxed and
        ``a_i . x`` maximised on one warm-started LPModel; the row is redundant iff that maximum is
        ``<= b_i + feasibility_tol``, and a redundant row is dropped before the next is tested, so of several
        copies of a facet exactly one remains. A row whose LP ends without a proof is kept (the set stays
        exact). The empty set gives the canonical empty system. See ``redundancy.minimal_system``.
        """
        return self._minimal_form

    @cached_property
    def _minimal_form(self) -> "Polytope":
        if self.is_empty():
            return _restore(*_empty_system(self.dim_ambient), True)
        A, b, E, f = minimal_system(self._normal)
        shift, scale = self._shift_scale
        if self._normal is not self:
            b, f = scale * b + A @ shift, scale * f + E @ shift
        result = _restore(A, b, E, f, False)
        result.__dict__["_minimal_form"] = result
        return result

    # ----------------------------------------------------------------- membership and set operations

    def contains(self, X, tol: float | None = None):
        """Membership within ``tol`` (default ``feasibility_tol``), relative to the size of the set.

        Tested in P's frame ``y = (x - shift) / scale`` (see ``_normal``): ``A y <= b' + tol + noise``,
        ``|E y - f'| <= tol + noise``, where the noise is the rounding that the data and the coordinates
        of x carry (a few units in the last place), so that a vertex or a sample of a set far from the
        origin is inside it. X : (n, d) -> (n,) bool, or (d,) -> bool. This tests the H-form (no LP
        beyond the one feasibility LP that places the frame).
        """
        tol = current().feasibility_tol if tol is None else float(tol)
        X = np.asarray(X, dtype=np.float64)
        single = X.ndim == 1
        points = X[None, :] if single else X
        if points.ndim != 2 or points.shape[1] != self.dim_ambient:
            raise ShapeError(f"points must have shape (n, {self.dim_ambient}) or ({self.dim_ambient},), "
                             f"got {X.shape}")
        normal = self._normal
        shift, scale = self._shift_scale
        Y = (points - shift) / scale
        rounding = _NOISE_ULPS * np.finfo(np.float64).eps * (np.abs(points) + np.abs(shift)) / scale
        noise_a = normal._row_noise(normal.A, normal.b, np.zeros(self.dim_ambient)) + rounding @ np.abs(self.A.T)
        noise_e = normal._row_noise(normal.E, normal.f, np.zeros(self.dim_ambient)) + rounding @ np.abs(self.E.T)
        inside = np.all(Y @ self.A.T <= normal.b + tol + noise_a, axis=1)
        inside &= np.all(np.abs(Y @ self.E.T - normal.f) <= tol + noise_e, axis=1)
        return bool(inside[0]) if single else inside

    def intersect(self, other: "Polytope") -> "Polytope":
        """The intersection with another Polytope in the same space."""
        if not isinstance(other, Polytope):
            raise TypeError(f"can only intersect with a Polytope, got {type(other).__name__}")
        if other.dim_ambient != self.dim_ambient:
            raise ShapeError(f"cannot intersect polytopes in R^{self.dim_ambient} and R^{other.dim_ambient}")
        return self.with_constraints(other.A, other.b, other.E, other.f)

    def with_constraints(self, A2, b2, E2=None, f2=None) -> "Polytope":
        """P with the extra rows ``A2 x <= b2`` (A2: (r, d)) and ``E2 x = f2`` (E2: (q, d), optional)."""
        d = self.dim_ambient
        A2 = _finite_matrix(A2, "A2")
        if A2.shape[1] != d:
            raise ShapeError(f"A2 must have {d} columns, got shape {A2.shape}")
        if (E2 is None) != (f2 is None):
            raise ShapeError("E2 and f2 must be given together (or both left None)")
        E2 = np.zeros((0, d)) if E2 is None else _finite_matrix(E2, "E2")
        f2 = np.zeros(0) if f2 is None else f2
        if E2.shape[1] != d:
            raise ShapeError(f"E2 must have {d} columns, got shape {E2.shape}")
        b2 = _right_hand_side(b2, A2.shape[0], "b2", "A2", A2.shape)
        f2 = _right_hand_side(f2, E2.shape[0], "f2", "E2", E2.shape)
        return Polytope(np.vstack([self.A, A2]), np.concatenate([self.b, b2]),
                        np.vstack([self.E, E2]), np.concatenate([self.f, f2]))

    # ----------------------------------------------------------------- vertices, volume, samples

    def vertices(self) -> np.ndarray:
        """The vertices (v, d) of a bounded P of dimension <= ``max_vertex_dim``; (0, d) if P is empty.

        Raises ValueError for an unbounded P or one of too high dimension.
        """
        if self.is_empty():
            return np.zeros((0, self.dim_ambient))
        if not self.is_bounded():
            raise ValueError(f"{self!r} is unbounded: it has no finite vertex description")
        normal = self._normal
        if normal is not self:
            shift, scale = self._shift_scale
            return shift + scale * normal.vertices()
        hull = self.affine_hull()
        limit = current().max_vertex_dim
        if hull.dim > limit:
            raise ValueError(f"vertex enumeration refused: P has dimension {hull.dim} > max_vertex_dim = {limit}")
        if hull.dim == 0:
            return hull.point[None, :].copy()
        return hull.to_ambient(volume.vertices(hull.A, hull.b, self._ball[0]))

    def volume(self, relative: bool = False, rng=None) -> Volume:
        """The volume of P, with its standard error.

        relative=False: the d-dimensional Lebesgue volume (0.0 when dim < d). relative=True: the
        dim-dimensional volume within P's affine hull (1.0 for a point). Exact (vertices and convex hull)
        when dim <= ``exact_volume_dim`` (falling back to the estimate, ``exact=False``, on the rare
        vertex sets whose hull qhull cannot build), else the Monte Carlo estimate seeded by ``rng`` (see
        :func:`as_generator`). Unbounded P: ``inf`` (0.0 when dim < d and not relative). Empty: 0.0.
        """
        if self.is_empty():
            return Volume(0.0, 0.0, True)
        k = self.dim
        if not relative and k < self.dim_ambient:
            return Volume(0.0, 0.0, True)
        if not self.is_bounded():
            return Volume(np.inf, 0.0, True)
        if k == 0:
            return Volume(1.0, 0.0, True)
        known = self.__dict__.get("_vertex_set")
        if known is not None and k == self.dim_ambient <= current().exact_volume_dim:
            try:
                return Volume(volume.hull_volume(known), 0.0, True)
            except volume.HullError:
                pass  # the LP path below
        normal = self._normal
        if normal is not self:
            found = normal.volume(relative=relative, rng=rng)
            factor = self._shift_scale[1] ** (k if relative else self.dim_ambient)
            return Volume(found.value * factor, found.stderr * factor, found.exact)
        hull = self.affine_hull()
        centre, radius = self._ball
        if k <= current().exact_volume_dim:
            try:
                return Volume(volume.exact_volume(hull.A, hull.b, centre), 0.0, True)
            except volume.HullError:
                pass  # the estimate below, with its standard error, is the answer that exists
        estimate, stderr = volume.estimate_volume(hull.A, hull.b, centre, radius, as_generator(rng))
        return Volume(estimate, stderr, False)

    def sample(self, n: int, rng=None) -> np.ndarray:
        """``n`` points (n, d), uniform on P (also when P is lower-dimensional), by hit-and-run.

        rng: a numpy Generator, an int seed, or None (seed 0; see :func:`as_generator`).
        The chains start at the Chebyshev centre and walk as long as
        :func:`~preimage.geometry.sampling.walk_length` says for P's dimension k: by default
        ``max(200, 2 k**2)`` steps of burn-in and ``max(10, 2 k)`` between kept points. The rows come from
        ``c = min(n, hit_and_run_chains)`` independent chains, draw by draw, so for n a multiple of c
        ``X.reshape(n // c, c, d)`` is the (draws, chains, d) layout that
        :func:`~preimage.geometry.sampling.effective_sample_size` reads.
        Raises EmptyDomainError if P is empty, ValueError if P is unbounded.
        """
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            if not (isinstance(n, (float, np.floating)) and float(n).is_integer()):
                raise ValueError(f"number of samples must be a whole number, got {n!r}")
        n = int(n)
        if n < 0:
            raise ValueError(f"number of samples must be >= 0, got {n}")
        hull = self.affine_hull()
        if not self.is_bounded():
            raise ValueError(f"{self!r} is unbounded: there is no uniform distribution to sample")
        if hull.dim == 0:
            return np.tile(hull.point, (n, 1))
        normal = self._normal
        if normal is not self:
            shift, scale = self._shift_scale
            return shift + scale * normal.sample(n, rng)
        walks = sampling.hit_and_run(hull.A, hull.b, self._ball[0], n, as_generator(rng))
        return hull.to_ambient(walks)


# --------------------------------------------------------------------- construction helpers

def _restore(A, b, E, f, empty: bool) -> Polytope:
    """A Polytope from arrays already in normal form (no renormalisation); used by pickling."""
    polytope = Polytope.__new__(Polytope)
    polytope._set_arrays(*(np.array(array, dtype=np.float64) for array in (A, b, E, f)), bool(empty))
    return polytope
