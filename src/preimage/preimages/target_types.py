"""The targets of a preimage: each names a set of activities of a network, checked on construction.

- ``Activity(layer, y)``: the post-activation of ``net.layers[layer]`` equals ``y`` (Carlsson et al.);
- ``Pattern(bits, layer=None)``: a full or partial activation pattern (bit 1: pre-activation > 0);
- ``ArgMax(c)``: output ``c`` is the largest (ties count as inside);
- ``OutputPolytope(C, d)``: ``C y <= d`` on the network output;
- ``NeuronRange(layer, unit, lo, hi)``: ``lo <= z <= hi`` on one unit's pre-activation;
- ``InputPolytope(A, b)``: ``A x <= b`` on the flattened input;
- ``AnyOf([...])``: at least one of several targets (a union).

Their arguments are checked here, without a network; :func:`~preimage.preimages.targets.compile_target`
checks them against one and lowers them to linear rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ShapeError
from ..patterns.packed import Patterns

__all__ = ["Activity", "Pattern", "ArgMax", "OutputPolytope", "NeuronRange", "InputPolytope", "AnyOf"]


# --------------------------------------------------------------------------- argument checks

def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _finite_vector(v, name: str) -> np.ndarray:
    """v as a read-only (n,) float64 copy; ShapeError unless 1-D and finite."""
    array = np.array(v, dtype=np.float64)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ShapeError(f"{name} must be a vector, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ShapeError(f"{name}[{bad[0]}] is {float(array[bad[0]])!r}; entries must be finite numbers")
    return _frozen(array)


def _rows_and_bounds(M, v, name_M: str, name_v: str) -> tuple[np.ndarray, np.ndarray]:
    """``M x <= v`` as read-only float64 copies: M (m, d) finite, v (m,) without NaN (+-inf allowed).

    A 1-D M is one row (then v may be a scalar).
    """
    matrix = np.array(M, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2:
        raise ShapeError(f"{name_M} must be a matrix (m, d), got shape {matrix.shape}")
    bad = np.argwhere(~np.isfinite(matrix))
    if bad.size:
        i, j = bad[0]
        raise ShapeError(f"{name_M}[{i}, {j}] is {float(matrix[i, j])!r}; entries must be finite numbers")
    bound = np.array(v, dtype=np.float64).reshape(-1)
    if bound.shape != (matrix.shape[0],):
        raise ShapeError(f"{name_v} has {bound.size} entries; {name_M} has {matrix.shape[0]} rows")
    nan = np.flatnonzero(np.isnan(bound))
    if nan.size:
        raise ShapeError(f"{name_v}[{nan[0]}] is NaN")
    return _frozen(matrix), _frozen(bound)


def _index(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ShapeError(f"{name} must be an integer, got {value!r}")
    return int(value)



# --------------------------------------------------------------------------- targets

@dataclass(frozen=True, eq=False)
class Activity:
    """The post-activation of ``net.layers[layer]`` equals ``y`` exactly.

    layer : index into ``net.layers`` (negative counts from the end). y : (units,) finite.
    With a ReLU, an entry ``y_i <= activity_tol`` (settings) means the unit is off (``z_i <= 0``), a
    positive one that it is on with ``z_i = y_i``; a negative entry cannot be met (the preimage is empty).
    """

    layer: int
    y: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "layer", _index(self.layer, "Activity layer"))
        object.__setattr__(self, "y", _finite_vector(self.y, "Activity y"))


@dataclass(frozen=True, eq=False)
class Pattern:
    """A full or partial activation pattern.

    bits : (units,) entries 1 (pre-activation > 0, compiled to its closure ``z >= 0``), 0 (``z <= 0``)
        or -1 (free); a boolean array, a masked array (masked entries free) or a one-row ``Patterns``.
    layer : None: ``bits`` is the concatenation over the layers with a kink (``net.hidden``), in order;
        else the pattern of ``net.layers[layer]`` only. A ``Patterns`` row with ``layer`` given gives the
        bits of that network layer (it must be one of ``Patterns.layers``).
    source_layers : the network layers a ``Patterns`` row covered (checked against ``net.hidden`` when
        ``layer`` is None); None for plain arrays.
    """

    bits: np.ndarray
    layer: int | None = None
    source_layers: tuple[int, ...] | None = field(default=None)

    def __post_init__(self):
        layer = None if self.layer is None else _index(self.layer, "Pattern layer")
        bits = self.bits
        if isinstance(bits, Patterns):
            if len(bits) != 1:
                raise ShapeError(f"Pattern takes one pattern; the Patterns object holds {len(bits)}")
            if layer is None:
                object.__setattr__(self, "source_layers", bits.layers)
                bits = bits.bits()[0]
            elif layer in bits.layers:
                bits = bits.layer(bits.layers.index(layer))[0]
            else:
                raise ShapeError(f"Pattern layer {layer} is not among the Patterns' layers {bits.layers}")
        if np.ma.isMaskedArray(bits):
            mask = np.ma.getmaskarray(bits).reshape(-1)
            values = np.array(np.ma.getdata(bits), dtype=np.float64).reshape(-1)
            values[mask] = -1.0
        else:
            values = np.array(bits, dtype=np.float64)
            if values.ndim == 0:
                values = values.reshape(1)
            if values.ndim != 1:
                raise ShapeError(f"Pattern bits must be a vector, got shape {values.shape}")
        bad = np.flatnonzero(~np.isin(values, (-1.0, 0.0, 1.0)))
        if bad.size:
            raise ShapeError(f"Pattern bits[{bad[0]}] is {float(values[bad[0]]):g}; bits are 1, 0 or -1 (free)")
        object.__setattr__(self, "bits", _frozen(values.astype(np.int8)))
        object.__setattr__(self, "layer", layer)


@dataclass(frozen=True, eq=False)
class ArgMax:
    """Output ``c`` is the largest: ``y_j - y_c <= 0`` for every ``j != c`` (ties count as inside)."""

    c: int

    def __post_init__(self):
        c = _index(self.c, "ArgMax class")
        if c < 0:
            raise ShapeError(f"ArgMax class must be >= 0, got {c}")
        object.__setattr__(self, "c", c)


@dataclass(frozen=True, eq=False)
class OutputPolytope:
    """``C y <= d`` on the network output ``y = net.forward(x)``. C : (m, outputs) finite; d : (m,), may hold inf."""

    C: np.ndarray
    d: np.ndarray

    def __post_init__(self):
        C, d = _rows_and_bounds(self.C, self.d, "OutputPolytope C", "OutputPolytope d")
        object.__setattr__(self, "C", C)
        object.__setattr__(self, "d", d)


@dataclass(frozen=True, eq=False)
class NeuronRange:
    """``lo <= z <= hi`` on the pre-activation ``z`` of unit ``unit`` of ``net.layers[layer]``.

    For the output layer with the identity activation, z is the output itself. ``lo = -inf`` or
    ``hi = inf`` leave that side free (both: no constraint).
    """

    layer: int
    unit: int
    lo: float = -np.inf
    hi: float = np.inf

    def __post_init__(self):
        object.__setattr__(self, "layer", _index(self.layer, "NeuronRange layer"))
        unit = _index(self.unit, "NeuronRange unit")
        if unit < 0:
            raise ShapeError(f"NeuronRange unit must be >= 0, got {unit}")
        object.__setattr__(self, "unit", unit)
        lo, hi = float(self.lo), float(self.hi)
        if np.isnan(lo) or np.isnan(hi):
            raise ShapeError(f"NeuronRange bounds must not be NaN, got lo={lo!r}, hi={hi!r}")
        if lo > hi:
            raise ShapeError(f"NeuronRange is empty: lo = {lo!r} > hi = {hi!r}")
        if lo == np.inf or hi == -np.inf:
            raise ShapeError(f"NeuronRange is empty: lo = {lo!r}, hi = {hi!r}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)


@dataclass(frozen=True, eq=False)
class InputPolytope:
    """``A x <= b`` on the flattened input x. A : (m, d) finite; b : (m,), may hold inf."""

    A: np.ndarray
    b: np.ndarray

    def __post_init__(self):
        A, b = _rows_and_bounds(self.A, self.b, "InputPolytope A", "InputPolytope b")
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "b", b)


@dataclass(frozen=True, eq=False)
class AnyOf:
    """At least one of ``targets`` (a union). An empty union is refused (ShapeError)."""

    targets: tuple

    def __post_init__(self):
        if isinstance(self.targets, (str, bytes)) or not hasattr(self.targets, "__iter__"):
            raise ShapeError(f"AnyOf takes a sequence of targets, got {type(self.targets).__name__}")
        targets = tuple(self.targets)
        if not targets:
            raise ShapeError("AnyOf needs at least one target (an empty union is the empty set)")
        object.__setattr__(self, "targets", targets)
