"""The compiled form of a target: linear rows on a network's input, pre-activations and output, and
their evaluation on concrete inputs through the forward pass.

A ``Conjunction`` holds rows on the input, one ``LayerRows`` per constrained layer, and rows on the
output; :func:`~preimage.preimages.targets.compile_target` gives a target as a list of them (its
disjunctive normal form), and :func:`satisfies` tells which inputs meet at least one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import settings as _settings
from ..errors import ShapeError
from .target_types import _frozen

__all__ = ["LayerRows", "Conjunction", "satisfies"]


# --------------------------------------------------------------------------- compiled form

def _empty_rows(width: int) -> tuple[np.ndarray, np.ndarray]:
    return _frozen(np.zeros((0, width))), _frozen(np.zeros(0))


def _matrix(M, width: int, name: str) -> np.ndarray:
    array = np.array(M, dtype=np.float64).reshape(-1, width) if np.size(M) == 0 else np.array(M, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != width:
        raise ShapeError(f"{name} must have shape (m, {width}), got {array.shape}")
    return _frozen(array)


def _vector(v, rows: int, name: str) -> np.ndarray:
    array = np.array(v, dtype=np.float64).reshape(-1)
    if array.shape != (rows,):
        raise ShapeError(f"{name} must have shape ({rows},), got {array.shape}")
    return _frozen(array)


@dataclass(frozen=True, eq=False)
class LayerRows:
    """Rows on the pre-activation z (units,) of ``net.layers[layer]``: ``A z <= b`` and ``E z = f``.

    A : (m, units), b : (m,); E : (k, units), f : (k,).
    fixed_on : (units,) bool, units the rows constrain to ``z >= 0`` (pattern bit 1, a positive activity);
    fixed_off : (units,) bool, units constrained to ``z <= 0`` (pattern bit 0, a zero ReLU activity).
    Both set on one unit means ``z = 0``.
    """

    layer: int
    A: np.ndarray
    b: np.ndarray
    E: np.ndarray
    f: np.ndarray
    fixed_on: np.ndarray
    fixed_off: np.ndarray

    def __post_init__(self):
        units = np.size(self.fixed_on)
        object.__setattr__(self, "layer", int(self.layer))
        object.__setattr__(self, "A", _matrix(self.A, units, "LayerRows A"))
        object.__setattr__(self, "b", _vector(self.b, self.A.shape[0], "LayerRows b"))
        object.__setattr__(self, "E", _matrix(self.E, units, "LayerRows E"))
        object.__setattr__(self, "f", _vector(self.f, self.E.shape[0], "LayerRows f"))
        for name in ("fixed_on", "fixed_off"):
            flags = np.array(getattr(self, name), dtype=bool).reshape(-1)
            if flags.shape != (units,):
                raise ShapeError(f"LayerRows {name} must have shape ({units},), got {flags.shape}")
            object.__setattr__(self, name, _frozen(flags))

    @property
    def units(self) -> int:
        return self.fixed_on.size


@dataclass(frozen=True, eq=False)
class Conjunction:
    """All of: ``input_A x <= input_b``; each ``LayerRows``; ``output_A y <= output_b``, ``output_E y = output_f``.

    input_A : (m0, d), input_b : (m0,) on the flattened input x (m0 may be 0).
    layer_rows : rows on pre-activations, sorted by layer, at most one entry per layer.
    output_A : (m1, outputs), output_b : (m1,); output_E : (k1, outputs), output_f : (k1,) on
    ``y = net.forward(x)``.
    """

    input_A: np.ndarray
    input_b: np.ndarray
    layer_rows: tuple[LayerRows, ...]
    output_A: np.ndarray
    output_b: np.ndarray
    output_E: np.ndarray
    output_f: np.ndarray

    def __post_init__(self):
        d = np.shape(self.input_A)[-1] if np.ndim(self.input_A) == 2 else 0
        outputs = np.shape(self.output_A)[-1] if np.ndim(self.output_A) == 2 else 0
        object.__setattr__(self, "input_A", _matrix(self.input_A, d, "Conjunction input_A"))
        object.__setattr__(self, "input_b", _vector(self.input_b, self.input_A.shape[0], "Conjunction input_b"))
        object.__setattr__(self, "output_A", _matrix(self.output_A, outputs, "Conjunction output_A"))
        object.__setattr__(self, "output_b", _vector(self.output_b, self.output_A.shape[0], "Conjunction output_b"))
        object.__setattr__(self, "output_E", _matrix(self.output_E, outputs, "Conjunction output_E"))
        object.__setattr__(self, "output_f", _vector(self.output_f, self.output_E.shape[0], "Conjunction output_f"))
        rows = tuple(self.layer_rows)
        layers = [r.layer for r in rows]
        if layers != sorted(set(layers)):
            raise ShapeError(f"Conjunction layer_rows must be sorted with one entry per layer, got layers {layers}")
        object.__setattr__(self, "layer_rows", rows)

    @property
    def trivially_empty(self) -> bool:
        """True when an input row reads ``0 <= b`` with ``b < 0``: the conjunction cannot be met."""
        zero = ~np.any(self.input_A != 0.0, axis=1)
        return bool(np.any(zero & (self.input_b < 0.0)))

    def rows_of(self, layer: int) -> LayerRows | None:
        """The rows on ``layer``'s pre-activations, or None."""
        for rows in self.layer_rows:
            if rows.layer == layer:
                return rows
        return None

    @property
    def n_rows(self) -> int:
        """Inequalities and equalities in all."""
        return (self.input_A.shape[0] + self.output_A.shape[0] + self.output_E.shape[0]
                + sum(r.A.shape[0] + r.E.shape[0] for r in self.layer_rows))


# --------------------------------------------------------------------------- evaluation

def _meets(M: np.ndarray, v: np.ndarray, V: np.ndarray, tol: float, equality: bool = False) -> np.ndarray:
    """Rows ``M u <= v`` (or ``= v``) at every row of V (n, width), within ``tol`` per unit of row norm."""
    if M.shape[0] == 0:
        return np.ones(V.shape[0], dtype=bool)
    residual = V @ M.T - v
    slack = tol * np.linalg.norm(M, axis=1)
    if equality:
        return np.all(np.abs(residual) <= slack, axis=1)
    return np.all(residual <= slack, axis=1)


def satisfies(conjunctions, net, X, tol: float | None = None):
    """Which inputs meet at least one conjunction, through the network's forward pass.

    conjunctions : a ``Conjunction`` or a sequence of them (``compile_target``'s result); an empty
        sequence is the empty union.
    X : (n, d) or (n, *input_shape); one input (d,) gives a bool.
    tol : slack per unit of row norm (default ``feasibility_tol``). Returns (n,) bool.
    """
    if isinstance(conjunctions, Conjunction):
        conjunctions = [conjunctions]
    conjunctions = list(conjunctions)
    for c in conjunctions:
        if not isinstance(c, Conjunction):
            raise TypeError(f"satisfies takes compiled conjunctions (compile_target), got {type(c).__name__}")
    tol = _settings.current().feasibility_tol if tol is None else float(tol)
    points, batched = net.as_batch(X)
    Z = net.preactivations(points)
    Y = net.layers[-1].activation(Z[-1])
    inside = np.zeros(points.shape[0], dtype=bool)
    for c in conjunctions:
        if c.input_A.shape[1] != net.input_dim or c.output_A.shape[1] != net.output_dim:
            raise ShapeError(f"conjunction has rows on {c.input_A.shape[1]} inputs and {c.output_A.shape[1]} "
                             f"outputs; the network has {net.input_dim} and {net.output_dim}")
        ok = _meets(c.input_A, c.input_b, points, tol)
        ok &= _meets(c.output_A, c.output_b, Y, tol)
        ok &= _meets(c.output_E, c.output_f, Y, tol, equality=True)
        for rows in c.layer_rows:
            ok &= _meets(rows.A, rows.b, Z[rows.layer], tol)
            ok &= _meets(rows.E, rows.f, Z[rows.layer], tol, equality=True)
        inside |= ok
    return inside if batched else bool(inside[0])
