"""Targets of a preimage, and their compilation into linear rows on a network's layers.

A target names a set of activities; its preimage is the set of inputs whose activity lies in it.

- ``Activity(layer, y)``: the post-activation of ``net.layers[layer]`` equals ``y`` (Carlsson et al.);
- ``Pattern(bits, layer=None)``: a full or partial activation pattern (bit 1: pre-activation > 0);
- ``ArgMax(c)``: output ``c`` is the largest (ties count as inside);
- ``OutputPolytope(C, d)``: ``C y <= d`` on the network output;
- ``NeuronRange(layer, unit, lo, hi)``: ``lo <= z <= hi`` on one unit's pre-activation;
- ``InputPolytope(A, b)``: ``A x <= b`` on the flattened input;
- a list or tuple of targets: all of them (an intersection); ``AnyOf([...])``: at least one (a union).

``compile_target(target, net)`` turns any of these into disjunctive normal form: a list of
``Conjunction``, each a set of linear rows on the input, on the pre-activations of some layers and on
the output. The preimage of the target is the union over the conjunctions of the inputs meeting every
row. ``satisfies`` evaluates compiled rows on concrete inputs through the network's forward pass.

Compiled inequality and equality rows have unit 2-norm. Rows with an infinite right-hand side
(``hi = inf``) are left out. A conjunction that cannot be met by construction (a negative ReLU activity,
a zero row with a negative right-hand side, ``b = -inf``) carries the row ``0 <= -1`` on the input and
``Conjunction.trivially_empty`` is True; it is kept, so that the preimage is the empty set.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import numpy as np

from .. import settings as _settings
from ..errors import ModelError, ShapeError
from ..patterns.packed import Patterns

__all__ = [
    "Activity", "Pattern", "ArgMax", "OutputPolytope", "NeuronRange", "InputPolytope", "AnyOf",
    "LayerRows", "Conjunction", "compile_target", "satisfies",
]

logger = logging.getLogger(__name__)


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


def _layer_index(net, layer: int, what: str) -> int:
    """``layer`` as an index into ``net.layers`` (negative counts from the end); ShapeError if out of range."""
    count = len(net.layers)
    if not -count <= layer < count:
        raise ShapeError(f"{what}: layer {layer} is out of range for a network of {count} layers")
    return layer % count


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


# --------------------------------------------------------------------------- compilation

class _Rows:
    """A mutable conjunction under construction: lists of row blocks per place."""

    def __init__(self, net):
        self.net = net
        self.input = ([], [])
        self.output = ([], [])
        self.output_eq = ([], [])
        self.layers: dict[int, dict] = {}
        self.empty = False

    def layer(self, index: int) -> dict:
        if index not in self.layers:
            units = self.net.layers[index].out_features
            self.layers[index] = {"A": [], "b": [], "E": [], "f": [],
                                  "on": np.zeros(units, dtype=bool), "off": np.zeros(units, dtype=bool)}
        return self.layers[index]

    def build(self) -> Conjunction:
        net = self.net
        tol = _settings.current().feasibility_tol
        empty = self.empty
        input_A, input_b, bad = _normalised(self.input, net.input_dim, tol)
        empty |= bad
        output_A, output_b, bad = _normalised(self.output, net.output_dim, tol)
        empty |= bad
        output_E, output_f, bad = _normalised(self.output_eq, net.output_dim, tol, equality=True)
        empty |= bad
        layer_rows = []
        for index in sorted(self.layers):
            entry = self.layers[index]
            units = net.layers[index].out_features
            A, b, bad_a = _normalised((entry["A"], entry["b"]), units, tol)
            E, f, bad_e = _normalised((entry["E"], entry["f"]), units, tol, equality=True)
            empty |= bad_a or bad_e
            layer_rows.append(LayerRows(index, A, b, E, f, entry["on"], entry["off"]))
        if empty:
            marker = np.zeros((1, net.input_dim))
            input_A = np.vstack([input_A, marker])
            input_b = np.concatenate([input_b, [-1.0]])
        return Conjunction(input_A, input_b, tuple(layer_rows), output_A, output_b, output_E, output_f)


def _normalised(blocks, width: int, tol: float, equality: bool = False):
    """Stack row blocks and scale rows to unit norm; returns (M, v, unsatisfiable).

    Inequalities: rows with ``v = inf`` and zero rows with ``v >= -tol`` are dropped; a zero row with
    ``v < -tol`` or ``v = -inf`` makes the system unsatisfiable. Equalities: zero rows with
    ``|v| <= tol`` are dropped, other zero rows make it unsatisfiable.
    """
    matrices, vectors = blocks
    if not matrices:
        return np.zeros((0, width)), np.zeros(0), False
    M = np.vstack(matrices)
    v = np.concatenate(vectors)
    norms = np.linalg.norm(M, axis=1)
    zero = norms == 0.0
    if equality:
        bad = bool(np.any(zero & (np.abs(v) > tol))) or bool(np.any(~np.isfinite(v)))
        keep = ~zero & np.isfinite(v)
    else:
        bad = bool(np.any(zero & (v < -tol))) or bool(np.any(v == -np.inf))
        keep = ~zero & np.isfinite(v)
    return M[keep] / norms[keep, None], v[keep] / norms[keep], bad


def _is_output(net, index: int) -> bool:
    """True for the last layer when its activation is affine: its pre-activation is the network output."""
    return index == len(net.layers) - 1 and not net.layers[index].activation.has_kink


def _place(rows: _Rows, index: int, A, b, on=None, off=None) -> None:
    """Inequalities ``A z <= b`` on layer ``index``'s pre-activations; the output when that layer is affine and last."""
    if _is_output(rows.net, index):
        rows.output[0].append(A)
        rows.output[1].append(b)
        return
    entry = rows.layer(index)
    entry["A"].append(A)
    entry["b"].append(b)
    if on is not None:
        entry["on"] |= on
    if off is not None:
        entry["off"] |= off


def _place_equalities(rows: _Rows, index: int, E, f, on=None, off=None) -> None:
    if _is_output(rows.net, index):
        rows.output_eq[0].append(E)
        rows.output_eq[1].append(f)
        return
    entry = rows.layer(index)
    entry["E"].append(E)
    entry["f"].append(f)
    if on is not None:
        entry["on"] |= on
    if off is not None:
        entry["off"] |= off


def _activity(rows: _Rows, target: Activity) -> None:
    net = rows.net
    index = _layer_index(net, target.layer, "Activity")
    layer = net.layers[index]
    units = layer.out_features
    y = target.y
    if y.shape != (units,):
        raise ShapeError(f"Activity y has {y.size} entries; layer {index} ({layer.name!r}) has {units} units")
    act = layer.activation
    eye = np.eye(units)
    if not act.has_kink:
        _place_equalities(rows, index, eye, y.copy())
        return
    if act.slope < 0.0:
        raise ModelError(f"Activity on layer {index} ({layer.name!r}): {act} is not injective; "
                         f"its activity preimages are not supported")
    tol = _settings.current().activity_tol
    if act.slope == 0.0:
        on = y > tol
        off = ~on
        if np.any(y < -tol):
            unit = int(np.argmax(y < -tol))
            logger.debug("Activity on layer %d: unit %d has activity %r < 0 under a ReLU; the preimage is empty",
                         index, unit, y[unit])
            rows.empty = True
        _place_equalities(rows, index, eye[on], y[on], on=on)
        _place(rows, index, eye[off], np.zeros(int(off.sum())), off=off)
        return
    on = y > 0.0
    off = ~on
    z = np.where(on, y, y / act.slope)
    _place_equalities(rows, index, eye, z, on=on, off=off)


def _pattern(rows: _Rows, target: Pattern) -> None:
    net = rows.net
    if target.layer is None:
        hidden = net.hidden
        if target.source_layers is not None and tuple(target.source_layers) != tuple(hidden):
            raise ShapeError(f"Pattern covers layers {tuple(target.source_layers)}; the network's layers with a "
                             f"kink are {tuple(hidden)}")
        units = [net.layers[i].out_features for i in hidden]
        if target.bits.size != sum(units):
            raise ShapeError(f"Pattern has {target.bits.size} bits; the network's layers with a kink {tuple(hidden)} "
                             f"have {sum(units)} units")
        starts = np.cumsum([0] + units)
        pieces = [(i, target.bits[starts[k]:starts[k + 1]]) for k, i in enumerate(hidden)]
    else:
        index = _layer_index(net, target.layer, "Pattern")
        units = net.layers[index].out_features
        if target.bits.size != units:
            raise ShapeError(f"Pattern has {target.bits.size} bits; layer {index} "
                             f"({net.layers[index].name!r}) has {units} units")
        pieces = [(index, target.bits)]
    for index, bits in pieces:
        on, off = bits == 1, bits == 0
        if not (on.any() or off.any()):
            continue
        eye = np.eye(bits.size)
        A = np.vstack([-eye[on], eye[off]]) + 0.0
        _place(rows, index, A, np.zeros(A.shape[0]), on=on, off=off)


def _argmax(rows: _Rows, target: ArgMax) -> None:
    n = rows.net.output_dim
    if target.c >= n:
        raise ShapeError(f"ArgMax class {target.c} is out of range for a network with {n} outputs")
    A = np.eye(n)
    A[:, target.c] -= 1.0
    A = np.delete(A, target.c, axis=0)
    rows.output[0].append(A)
    rows.output[1].append(np.zeros(n - 1))


def _output_polytope(rows: _Rows, target: OutputPolytope) -> None:
    n = rows.net.output_dim
    if target.C.shape[1] != n:
        raise ShapeError(f"OutputPolytope C has {target.C.shape[1]} columns; the network has {n} outputs")
    rows.output[0].append(target.C)
    rows.output[1].append(target.d)


def _neuron_range(rows: _Rows, target: NeuronRange) -> None:
    net = rows.net
    index = _layer_index(net, target.layer, "NeuronRange")
    units = net.layers[index].out_features
    if target.unit >= units:
        raise ShapeError(f"NeuronRange unit {target.unit} is out of range for layer {index} "
                         f"({net.layers[index].name!r}) with {units} units")
    e = np.zeros(units)
    e[target.unit] = 1.0
    A, b = [], []
    if target.hi < np.inf:
        A.append(e)
        b.append(target.hi)
    if target.lo > -np.inf:
        A.append(-e)
        b.append(-target.lo)
    if not A:
        return
    on = np.zeros(units, dtype=bool)
    off = np.zeros(units, dtype=bool)
    on[target.unit] = target.lo >= 0.0
    off[target.unit] = target.hi <= 0.0
    _place(rows, index, np.array(A) + 0.0, np.array(b), on=on, off=off)


def _input_polytope(rows: _Rows, target: InputPolytope) -> None:
    d = rows.net.input_dim
    if target.A.shape[1] != d:
        raise ShapeError(f"InputPolytope A has {target.A.shape[1]} columns; the network takes {d} inputs")
    rows.input[0].append(target.A)
    rows.input[1].append(target.b)


def _conjunction(rows: _Rows, target: Conjunction) -> None:
    net = rows.net
    if target.input_A.shape[1] != net.input_dim or target.output_A.shape[1] != net.output_dim \
            or target.output_E.shape[1] != net.output_dim:
        raise ShapeError(f"Conjunction has rows on {target.input_A.shape[1]} inputs and {target.output_A.shape[1]} "
                         f"outputs; the network has {net.input_dim} and {net.output_dim}")
    rows.input[0].append(target.input_A)
    rows.input[1].append(target.input_b)
    rows.output[0].append(target.output_A)
    rows.output[1].append(target.output_b)
    rows.output_eq[0].append(target.output_E)
    rows.output_eq[1].append(target.output_f)
    for layer_rows in target.layer_rows:
        index = _layer_index(net, layer_rows.layer, "Conjunction")
        if layer_rows.units != net.layers[index].out_features:
            raise ShapeError(f"Conjunction rows on layer {index} have {layer_rows.units} units; the layer has "
                             f"{net.layers[index].out_features}")
        _place(rows, index, layer_rows.A, layer_rows.b, on=layer_rows.fixed_on, off=layer_rows.fixed_off)
        _place_equalities(rows, index, layer_rows.E, layer_rows.f)


_SINGLE = {
    Activity: _activity, Pattern: _pattern, ArgMax: _argmax, OutputPolytope: _output_polytope,
    NeuronRange: _neuron_range, InputPolytope: _input_polytope, Conjunction: _conjunction,
}


def _dnf(target, net) -> list[list]:
    """The target as a list of alternatives, each a list of single targets (all of them)."""
    if isinstance(target, AnyOf):
        return [alternative for member in target.targets for alternative in _dnf(member, net)]
    if isinstance(target, (list, tuple)):
        alternatives: list[list] = [[]]
        for member in target:
            member_dnf = _dnf(member, net)
            alternatives = [a + b for a, b in itertools.product(alternatives, member_dnf)]
        return alternatives
    if type(target) in _SINGLE:
        return [[target]]
    raise ShapeError(f"not a target: {type(target).__name__} (expected Activity, Pattern, ArgMax, OutputPolytope, "
                     f"NeuronRange, InputPolytope, AnyOf or a list of them)")


def compile_target(target, net) -> list[Conjunction]:
    """The target in disjunctive normal form on ``net``: one ``Conjunction`` per alternative, never ``[]``.

    target : a target, a list/tuple of targets (all of them) or ``AnyOf`` (any of them); a
        ``Conjunction`` passes through (checked against the net).
    Raises ShapeError naming the target when it does not fit the network (layer out of range, sizes),
    ModelError for an ``Activity`` on a non-injective activation.
    """
    conjunctions = []
    for alternative in _dnf(target, net):
        rows = _Rows(net)
        for single in alternative:
            _SINGLE[type(single)](rows, single)
        conjunctions.append(rows.build())
    return conjunctions


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
