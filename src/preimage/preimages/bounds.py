"""Bounds of a network's pre-activations over a stack of input boxes: intervals, then linear relaxations.

The relaxation is the one of CROWN / DeepPoly: an unstable unit ``a = act(z)`` with ``l < 0 < u`` is
bounded above by the chord through ``(l, act(l))`` and ``(u, u)`` and below by the line of slope 1 or
``slope`` through the origin, whichever is closer (slope 1 when ``u >= -l``). A linear function of a
layer's pre-activation is bounded by carrying its coefficients back through the transposed maps
(``AffineMap.transpose_apply``: sparse convolutions stay sparse) to the input, where its extremes over a box
are ``c . centre +- |c| . radius``. Everything is batched: one array operation per layer for the whole stack.

A search hands in *stages*: the layers from some layer ``l`` on, the first of which may be replaced by one
affine map per box (``first``: the network up to ``l`` with its activation pattern fixed is affine in x),
and ``phases`` fixing units of that first stage on or off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..network import AffineMap
from ..network.layers import Activation

__all__ = ["Stage", "StackBounds", "stack_bounds"]


@dataclass(frozen=True, eq=False)
class Stage:
    """One affine map and the activation applied to its output."""

    affine: AffineMap
    activation: Activation


@dataclass(frozen=True, eq=False)
class StackBounds:
    """Bounds over a stack of n boxes.

    Attributes
    ----------
    lower, upper : one (n, units) array per stage: bounds of its pre-activations (phases applied).
    rows_upper : one (n, m) array per stage that was given rows: upper bounds of ``rows @ z`` (``rows_lower``
        the lower bounds), or None for a stage without rows.
    input_weights : one (n, m, d) array per stage with rows: the input coefficients of the upper bound of each
        row (its sensitivity to each input coordinate, used to choose where to split a box).
    input_offsets : one (n, m) array per stage with rows: with ``input_weights``, the affine upper bound
        ``rows @ z <= W x + o`` that holds on the whole box (or hull of vertices).
    lower_weights, lower_offsets : the same for the affine lower bound ``rows @ z >= W x + o``.
    """

    lower: list
    upper: list
    rows_upper: list
    rows_lower: list
    input_weights: list
    input_offsets: list
    lower_weights: list
    lower_offsets: list


def _apply_phases(lower, upper, phases):
    if phases is None:
        return lower, upper
    on = phases > 0
    off = phases < 0
    return np.where(on, np.maximum(lower, 0.0), lower), np.where(off, np.minimum(upper, 0.0), upper)


def _relaxation(activation: Activation, lower: np.ndarray, upper: np.ndarray):
    """Slopes and intercepts ``(su, tu, sl, tl)`` with ``sl z + tl <= act(z) <= su z + tu`` on [lower, upper]."""
    ones = np.ones_like(lower)
    if not activation.has_kink:
        zeros = np.zeros_like(lower)
        return ones, zeros, ones, zeros
    s = activation.slope
    on = lower >= 0.0
    off = upper <= 0.0
    unstable = ~(on | off)
    width = np.where(unstable, upper - lower, 1.0)
    chord = np.where(unstable, (upper - s * lower) / width, 1.0)
    su = np.where(off, s, np.where(on, 1.0, chord))
    tu = np.where(unstable, s * lower - chord * lower, 0.0)
    sl = np.where(off, s, np.where(on, 1.0, np.where(upper >= -lower, 1.0, s)))
    tl = np.zeros_like(lower)
    return su, tu, sl, tl


def _first_linear(first, stage0: Stage, L: np.ndarray) -> np.ndarray:
    """Coefficients on x of ``L z_0``: L (n, m, units) -> (n, m, d)."""
    if first is not None:
        return np.matmul(L, first[0])
    return stage0.affine.transpose_apply(L)


def _first_bias(first, stage0: Stage, L: np.ndarray) -> np.ndarray:
    if first is not None:
        return np.einsum("nmu,nu->nm", L, first[1])
    return L @ stage0.affine.bias


def _first_dense(first, stage0: Stage):
    """Stage 0's map as ``(M (n or 1, units, d), c (n or 1, units))``; None for a first layer too large to
    hold densely (convolutions of large inputs stay sparse)."""
    if first is not None:
        return first
    affine = stage0.affine
    if affine.in_features * affine.out_features > _DENSE_FIRST:
        return None
    return affine.dense()[None], affine.bias[None]


# The largest first layer (entries) whose relaxed product is taken densely, factored (see ``_backward``).
_DENSE_FIRST = 1 << 20


def _backward(stages, first, relax, k: int, L: np.ndarray, centre, radius, vertices=None, needed=None):
    """Upper bounds of ``L z_k`` (L (n, m, units_k)) over the boxes (or the hulls of ``vertices``), and the affine
    bound ``L z_k <= X x + const`` they maximise: ``(upper, X, const)``. With ``vertices``, ``needed`` (n, m)
    bool restricts the maximisation to the rows each box needs (the others' upper bounds are +inf)."""
    n = centre.shape[0]
    if L.ndim == 2:
        # The same rows for every box: the first product through the weights is shared by the stack.
        if k == 0:
            const = np.zeros((n, L.shape[0]))
            L = np.broadcast_to(L, (n,) + L.shape)
        else:
            const = np.tile(L @ stages[k].affine.bias, (n, 1))
            L = stages[k].affine.transpose_apply(L)
    else:
        const = np.zeros(L.shape[:2])
    X = None
    for j in range(k, 0, -1):
        if L.ndim == 3:
            const += L @ stages[j].affine.bias
            L = stages[j].affine.transpose_apply(L)
        su, tu, sl, tl = relax[j - 1]
        pos = np.maximum(L, 0.0)
        neg = np.minimum(L, 0.0)
        const += tu @ pos.T if pos.ndim == 2 else np.einsum("nmu,nu->nm", pos, tu)
        const += tl @ neg.T if neg.ndim == 2 else np.einsum("nmu,nu->nm", neg, tl)
        dense = _first_dense(first, stages[0]) if j == 1 and L.ndim == 2 else None
        if dense is not None:
            # Rows shared by the stack meet the first map factored, (pos su + neg sl) M = pos (su M) + neg (sl M):
            # batched products, never the (n, m, units) relaxed rows.
            M, c = dense
            X = np.matmul(pos, su[:, :, None] * M) + np.matmul(neg, sl[:, :, None] * M)
            const += (su * c) @ pos.T + (sl * c) @ neg.T
            break
        L = pos * su[:, None, :] + neg * sl[:, None, :]
    if X is None:
        const += _first_bias(first, stages[0], L)
        X = _first_linear(first, stages[0], L)
    if vertices is not None:
        upper = np.full(const.shape, np.inf)
        for i, V in enumerate(vertices):
            rows = slice(None) if needed is None else np.flatnonzero(needed[i])
            upper[i, rows] = const[i, rows] + np.max(X[i, rows] @ V.T, axis=1)
    else:
        upper = const + np.einsum("nmd,nd->nm", X, centre) + np.einsum("nmd,nd->nm", np.abs(X), radius)
    return upper, X, const


def stack_bounds(stages, lo, hi, *, first=None, phases=None, rows=None, linear: bool = True,
                 linear_width: int = 512, first_bounds=None, vertices=None) -> StackBounds:
    """Bounds of every stage's pre-activations, and of given rows, over the boxes ``lo <= x <= hi``.

    Parameters
    ----------
    stages : sequence of ``Stage``.
    lo, hi : (n, d) finite boxes.
    first : optional ``(M, c)`` with M (n, units_0, d), c (n, units_0): stage 0's map for each box, replacing
        ``stages[0].affine``.
    phases : optional (n, units_0) int8: +1 unit on (``z >= 0``), -1 off (``z <= 0``), 0 free.
    rows : optional dict ``stage index -> (m, units)`` array of rows to bound at that stage.
    linear : carry linear relaxations back (CROWN); False gives interval bounds only.
    linear_width : stages wider than this get interval bounds only for their own units (rows are still
        bounded linearly).
    first_bounds : optional ``(lower, upper)``, each (n, units_0): known bounds of stage 0's pre-activation
        (e.g. exact ranges over a polytope inside the box), intersected with the box's.
    vertices : optional sequence of n arrays (v_i, d): for each box, points whose convex hull holds the set to
        bound; linear relaxations are then maximised over these points instead of the box.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    n = lo.shape[0]
    centre = 0.5 * (lo + hi)
    radius = 0.5 * (hi - lo)
    rows = rows or {}
    lowers, uppers, relax = [], [], []
    for k, stage in enumerate(stages):
        if k == 0:
            if first is not None:
                M, c = first
                mid = np.einsum("nud,nd->nu", M, centre) + c
                spread = np.einsum("nud,nd->nu", np.abs(M), radius)
                zl, zu = mid - spread, mid + spread
            else:
                zl, zu = stage.affine.interval(lo, hi)
            if first_bounds is not None:
                zl = np.maximum(zl, first_bounds[0])
                zu = np.minimum(zu, first_bounds[1])
            zl, zu = _apply_phases(zl, zu, phases)
        else:
            al = stages[k - 1].activation(lowers[-1])
            au = stages[k - 1].activation(uppers[-1])
            zl, zu = stage.affine.interval(al, au)
            units = stage.affine.out_features
            if linear and units <= linear_width and stages[k - 1].activation.has_kink:
                # Only units that the intervals leave unstable in some box gain from the relaxation.
                open_units = np.flatnonzero(np.any((zl < 0.0) & (zu > 0.0), axis=0))
                if open_units.size:
                    eye = np.eye(units)[open_units]
                    both = np.concatenate([eye, -eye], axis=0)
                    unstable = (zl[:, open_units] < 0.0) & (zu[:, open_units] > 0.0)
                    up, _, _ = _backward(stages, first, relax, k, both, centre, radius, vertices,
                                         np.concatenate([unstable, unstable], axis=1))
                    zu[:, open_units] = np.minimum(zu[:, open_units], up[:, :open_units.size])
                    zl[:, open_units] = np.maximum(zl[:, open_units], -up[:, open_units.size:])
        lowers.append(zl)
        uppers.append(zu)
        relax.append(_relaxation(stage.activation, zl, zu))
    rows_upper, rows_lower, weights, offsets, lower_weights, lower_offsets = [], [], [], [], [], []
    for k in range(len(stages)):
        R = rows.get(k)
        if R is None or R.shape[0] == 0:
            for out in (rows_upper, rows_lower, weights, offsets, lower_weights, lower_offsets):
                out.append(None)
            continue
        m = R.shape[0]
        both = np.concatenate([R, -R], axis=0)
        if linear:
            up, X, const = _backward(stages, first, relax, k, both, centre, radius, vertices)
        else:
            up = np.concatenate([_interval_rows(R, lowers[k], uppers[k]), _interval_rows(-R, lowers[k], uppers[k])],
                                axis=1)
            X = const = None
        # Rows are never looser than the interval bound of the stage's own units.
        iv = np.concatenate([_interval_rows(R, lowers[k], uppers[k]), _interval_rows(-R, lowers[k], uppers[k])], axis=1)
        up = np.minimum(up, iv)
        rows_upper.append(up[:, :m])
        rows_lower.append(-up[:, m:])
        weights.append(None if X is None else X[:, :m])
        offsets.append(None if X is None else const[:, :m])
        lower_weights.append(None if X is None else -X[:, m:])
        lower_offsets.append(None if X is None else -const[:, m:])
    return StackBounds(lowers, uppers, rows_upper, rows_lower, weights, offsets, lower_weights, lower_offsets)


def _interval_rows(R: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Upper bounds of ``R z`` over the boxes ``lower <= z <= upper``: (n, m)."""
    centre = 0.5 * (lower + upper)
    radius = 0.5 * (upper - lower)
    return centre @ R.T + radius @ np.abs(R).T
