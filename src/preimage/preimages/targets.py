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

import numpy as np

from .. import settings as _settings
from ..errors import ModelError, ShapeError
from .conjunction import Conjunction, LayerRows, satisfies
from .target_types import Activity, AnyOf, ArgMax, InputPolytope, NeuronRange, OutputPolytope, Pattern

__all__ = [
    "Activity", "Pattern", "ArgMax", "OutputPolytope", "NeuronRange", "InputPolytope", "AnyOf",
    "LayerRows", "Conjunction", "compile_target", "satisfies",
]

logger = logging.getLogger(__name__)


def _layer_index(net, layer: int, what: str) -> int:
    """``layer`` as an index into ``net.layers`` (negative counts from the end); ShapeError if out of range."""
    count = len(net.layers)
    if not -count <= layer < count:
        raise ShapeError(f"{what}: layer {layer} is out of range for a network of {count} layers")
    return layer % count


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
