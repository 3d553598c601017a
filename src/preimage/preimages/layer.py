"""Preimages of one layer's activity (Carlsson et al. 2017; Behrmann et al. 2018).

For a ReLU layer ``y = relu(W x + b)`` the preimage of ``y`` is the polytope

    { x : W_j x + b_j = y_j  for the active units (y_j > 0),
          W_j x + b_j <= 0   for the inactive units (y_j = 0) },

equalities for the active units and inequalities for the inactive ones. When W is square and
invertible it is the affine cone ``apex + cone(-e_j : j inactive)`` with ``e_j`` the columns of
``W^-1`` and apex ``W^-1 (y - b)`` (Carlsson et al., Figure 1). For a LeakyReLU or identity layer every
unit is invertible, so the preimage is the affine set ``W x + b = z`` with ``z`` the de-activated y.

Classification (empty / point / bounded / unbounded, and the affine dimension) uses the geometry of
the system: the rank of the active rows, the rows tight at a known member, and omnidirectionality of
the inactive rows restricted to the null space of the active ones (Behrmann et al., Theorem 2-4). LPs
are asked only when that geometry leaves the answer open.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

import numpy as np

from .. import settings as _settings
from .._parallel import map_tasks
from ..errors import ShapeError
from ..geometry import Polytope, is_omnidirectional
from ..geometry import linalg
from ..network.layers import Layer

__all__ = [
    "ConeForm", "LayerPreimage", "LayerClassification", "SingletonTest",
    "layer_preimage", "layer_preimages", "classify_layer", "singleton_test",
]

KINDS = ("empty", "point", "bounded", "unbounded")


@dataclass(frozen=True)
class ConeForm:
    """The generator form of a layer preimage for a square invertible W (Carlsson et al.).

    The preimage is ``{apex - sum_j t_j basis[:, j] : t_j >= 0 for j in inactive}``.

    Attributes
    ----------
    apex : (d,) ``W^-1 (y - b)``, the single point reached when every inactive unit sits at 0.
    basis : (d, d) the vectors e_i, columns of ``W^-1``; moving along ``e_i`` changes unit i only.
    inactive : (r,) indices of the inactive units; the cone's rays are ``-basis[:, inactive]``.
    """

    apex: np.ndarray
    basis: np.ndarray
    inactive: np.ndarray

    @property
    def rays(self) -> np.ndarray:
        """(d, r) the extreme rays ``-e_j`` of the inactive units."""
        return -self.basis[:, self.inactive]

    def points(self, t: np.ndarray) -> np.ndarray:
        """The points ``apex + rays @ t`` for coefficients t (n, r) >= 0 -> (n, d)."""
        t = np.atleast_2d(np.asarray(t, dtype=np.float64))
        return self.apex + t @ self.rays.T

    def coefficients(self, X: np.ndarray, W: np.ndarray) -> np.ndarray:
        """The coordinates ``t`` of points X (n, d) in the cone: ``t = -(W (x - apex))[inactive]``."""
        return -((np.atleast_2d(X) - self.apex) @ W.T)[:, self.inactive]


@dataclass(frozen=True)
class SingletonTest:
    """Behrmann et al.'s singleton test of a preimage at a member x.

    The preimage is the single point x iff the active rows have full column rank, or the rows of the
    inactive units that are tight at x (pre-activation 0), restricted to the null space of the active
    rows, are omnidirectional.
    """

    singleton: bool
    active_rank: int
    nullity: int
    tight: np.ndarray
    omnidirectional: bool | None


def _as_activity(layer: Layer, y) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if y.shape != (layer.out_features,):
        raise ShapeError(f"activity has {y.size} entries; layer {layer.name!r} has {layer.out_features} units")
    if not np.all(np.isfinite(y)):
        raise ShapeError("activity contains NaN or infinite values")
    return y


def _dense_rows(layer: Layer, index: np.ndarray) -> np.ndarray:
    rows = layer.W[index]
    return rows.toarray() if hasattr(rows, "toarray") else np.asarray(rows)


class LayerPreimage:
    """The set ``{x : activation(W x + b) = y}`` of one layer, with its classification.

    Parameters
    ----------
    layer : the layer (W (m, d), b (m,), activation).
    y : (m,) the activity.
    witness : optional (d,) input known to produce y (speeds classification up; checked).

    Attributes (computed lazily)
    ----------------------------
    polytope : the preimage as a ``Polytope`` in R^d (H-form: equalities for the active units).
    kind : "empty", "point", "bounded" or "unbounded".
    dim : affine dimension (-1 when empty).
    cone_form : the ``ConeForm`` when W is square and invertible (ReLU layers), else None.
    """

    def __init__(self, layer: Layer, y, *, witness=None):
        self.layer = layer
        self.y = _as_activity(layer, y)
        self.y.setflags(write=False)
        tol = _settings.current().activity_tol
        act = layer.activation
        if act.kind == "relu":
            self.active = self.y > tol
            self._negative = bool(np.any(self.y < -tol))
        elif act.slope <= 0:
            raise ValueError(f"layer {layer.name!r}: {act} is not injective; its preimages are not supported")
        else:
            self.active = np.ones(layer.out_features, dtype=bool)
            self._negative = False
        self.active.setflags(write=False)
        self.witness = None
        if witness is not None:
            x = np.asarray(witness, dtype=np.float64).reshape(-1)
            if x.shape != (layer.in_features,):
                raise ShapeError(f"witness has {x.size} entries; layer takes {layer.in_features}")
            if not self._holds(x):
                raise ValueError("the witness does not produce the activity y")
            self.witness = x

    # -- the set ---------------------------------------------------------------------------------
    @cached_property
    def _target(self) -> np.ndarray:
        """Pre-activation values demanded of the active units (all units for invertible activations)."""
        act = self.layer.activation
        if act.kind == "relu" or act.slope == 1.0:
            return self.y
        return np.where(self.y > 0, self.y, self.y / act.slope)

    def _holds(self, x: np.ndarray) -> bool:
        """Whether x gives y, up to the feasibility tolerance relative to the size of each term."""
        layer = self.layer
        z = layer.preactivation(x[None, :])[0]
        scale = np.abs(layer.affine.abs_weight @ np.abs(x)) + np.abs(layer.b) + np.abs(self.y)
        tol = _settings.current().feasibility_tol
        return bool(np.all(np.abs(layer.activation(z) - self.y) <= tol * np.maximum(scale, 1.0)))

    @cached_property
    def polytope(self) -> Polytope:
        """The preimage as ``{x : A x <= b, E x = f}`` in R^d (rows normalised by Polytope)."""
        d = self.layer.in_features
        if self._negative:
            return Polytope(np.zeros((1, d)), np.array([-1.0]))
        act = self.active
        f = self._target[act] - self.layer.b[act]
        return Polytope(self._inactive_rows, -self.layer.b[~act], self._active_rows, f)

    def contains(self, X, tol: float | None = None):
        """Whether the points X (n, d) (or one (d,)) lie in the preimage, to the feasibility tolerance."""
        return self.polytope.contains(X, tol)

    # -- classification ----------------------------------------------------------------------------
    @cached_property
    def _classification(self) -> tuple[str, int]:
        if self._negative:
            return "empty", -1
        if self.witness is None:
            return self.polytope.kind, self.polytope.dim
        return self._classify_at_witness()

    def _classify_at_witness(self) -> tuple[str, int]:
        """Classification from a member x: rank of active rows, tight rows, omnidirectionality."""
        k = self.layer.in_features - self._active_rank
        if k == 0:
            return "point", 0
        tight = self._tight
        if not tight.any():
            dim = k
        else:
            restricted = linalg.restrict_rows(self._inactive_rows[tight], self._null_basis)
            dim = Polytope(restricted, np.zeros(restricted.shape[0])).dim
        if dim == 0:
            return "point", 0
        # Omnidirectional rows in R^k number at least k + 1; fewer inactive rows leave a recession direction.
        if self._inactive_rows.shape[0] < k + 1:
            return "unbounded", dim
        bounded = is_omnidirectional(linalg.restrict_rows(self._inactive_rows, self._null_basis))
        return ("bounded" if bounded else "unbounded"), dim

    @cached_property
    def _active_rows(self) -> np.ndarray:
        """(a, d) the rows of W of the active units, dense."""
        return _dense_rows(self.layer, np.flatnonzero(self.active))

    @cached_property
    def _inactive_rows(self) -> np.ndarray:
        """(m - a, d) the rows of W of the inactive units, dense."""
        return _dense_rows(self.layer, np.flatnonzero(~self.active))

    @cached_property
    def _active_rank(self) -> int:
        return linalg.rank(self._active_rows)

    @cached_property
    def _null_basis(self) -> np.ndarray:
        """(d, k) orthonormal basis of the null space of the active rows."""
        return linalg.null_space(self._active_rows)

    @cached_property
    def _tight(self) -> np.ndarray:
        """(m - a,) bool: the inactive units whose pre-activation at the witness is 0.

        Zero means: the witness lies within ``feasibility_tol`` of the unit's hyperplane (the distance
        ``z / |w|``, so a short row is judged like a long one, as the polytope judges its unit rows), or
        within the rounding of computing z (a few units in the last place of ``|w| |x| + |b|``).
        """
        rows = self._inactive_rows
        bias = self.layer.b[~self.active]
        z = rows @ self.witness + bias
        tol = _settings.current().feasibility_tol
        rounding = 8.0 * np.finfo(np.float64).eps * (np.abs(rows) @ np.abs(self.witness) + np.abs(bias))
        return z >= -(tol * linalg.row_norms(rows) + rounding)

    @property
    def kind(self) -> str:
        """"empty", "point", "bounded" or "unbounded"."""
        return self._classification[0]

    @property
    def dim(self) -> int:
        """Affine dimension of the preimage (-1 when empty, 0 for a point)."""
        return self._classification[1]

    @property
    def is_singleton(self) -> bool:
        return self.kind == "point"

    @cached_property
    def cone_form(self) -> ConeForm | None:
        """Carlsson et al.'s form ``apex + cone(-e_j)`` when W is square and invertible, else None."""
        layer = self.layer
        if layer.activation.kind != "relu" or layer.in_features != layer.out_features or self._negative:
            return None
        W = layer.affine.dense()
        if linalg.rank(W) < W.shape[0]:
            return None
        basis = np.linalg.inv(W)
        apex = basis @ (np.where(self.active, self.y, 0.0) - layer.b)
        return ConeForm(apex, basis, np.flatnonzero(~self.active))

    def point(self) -> np.ndarray:
        """A point of the preimage: the witness if given, else a relative-interior point (raises if empty)."""
        if self.witness is not None:
            return self.witness
        return self.polytope.relative_interior_point()

    def __repr__(self) -> str:
        return f"LayerPreimage({self.layer.name!r}, kind={self.kind!r}, dim={self.dim})"


def layer_preimage(layer: Layer, y, *, witness=None) -> LayerPreimage:
    """The preimage ``{x : activation(W x + b) = y}`` of the activity ``y`` (m,) of ``layer``."""
    return LayerPreimage(layer, y, witness=witness)


def layer_preimages(layer: Layer, X) -> Iterator[LayerPreimage]:
    """For each layer input x in X (n, d), the preimage of its own activity, with x as witness."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    Y = layer(X)
    for x, y in zip(X, Y):
        yield LayerPreimage(layer, y, witness=x)


@dataclass(frozen=True)
class LayerClassification:
    """The preimages of many inputs' activities at one layer, classified.

    Attributes
    ----------
    kind : (n,) str array, "empty" / "point" / "bounded" / "unbounded" (never "empty" here: each input
        lies in its own preimage).
    dim : (n,) int array, affine dimensions.
    active : (n,) int array, active units of each input.
    """

    kind: np.ndarray
    dim: np.ndarray
    active: np.ndarray

    def counts(self) -> dict[str, int]:
        """How many preimages of each kind."""
        return {kind: int(np.count_nonzero(self.kind == kind)) for kind in KINDS if np.any(self.kind == kind)}


def classify_layer(layer: Layer, X, *, workers: int | None = None, progress: bool = False) -> LayerClassification:
    """Kind and dimension of the preimage of each input's own activity, for inputs X (n, d) of ``layer``.

    Each input is the witness of its preimage (see ``LayerPreimage``); the inputs are spread over
    ``workers`` threads (default: all cores) with one BLAS thread each.
    """
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    Y = layer(X)

    def classify(i: int) -> tuple[str, int]:
        pre = LayerPreimage(layer, Y[i], witness=X[i])
        return pre.kind, pre.dim

    results = map_tasks(classify, range(len(X)), workers=workers, progress=progress, desc=f"layer {layer.name}")
    kinds = np.array([kind for kind, _ in results], dtype="<U9")
    dims = np.array([dim for _, dim in results], dtype=np.int64)
    active = np.count_nonzero(Y > _settings.current().activity_tol, axis=1) if layer.activation.kind == "relu" \
        else np.full(len(X), layer.out_features)
    return LayerClassification(kinds, dims, active)


def singleton_test(layer: Layer, x) -> SingletonTest:
    """Behrmann et al.'s test whether the preimage of ``layer``'s activity at ``x`` (d,) is {x}.

    Singleton iff the active rows have full column rank, or the inactive rows tight at x, restricted to
    the null space of the active rows, are omnidirectional.
    """
    if layer.activation.kind != "relu":
        raise ValueError(f"the singleton test is for ReLU layers; layer {layer.name!r} is {layer.activation}")
    pre = LayerPreimage(layer, layer(np.asarray(x, dtype=np.float64)[None, :])[0], witness=x)
    r = pre._active_rank
    k = layer.in_features - r
    tight = np.flatnonzero(~pre.active)[pre._tight]
    if k == 0:
        return SingletonTest(True, r, 0, tight, None)
    if tight.size == 0:
        return SingletonTest(False, r, k, tight, False)
    omni = is_omnidirectional(linalg.restrict_rows(pre._inactive_rows[pre._tight], pre._null_basis))
    return SingletonTest(omni, r, k, tight, omni)
