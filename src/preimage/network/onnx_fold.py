"""Constant folding for the ONNX importer: nodes whose inputs are all constant, evaluated with numpy.

A tensor of an ONNX graph is either on the data path (see ``onnx_import``) or a *constant*: an initializer,
a Constant node, or the output of a node whose inputs are all constant. ``ConstantFolder`` holds the
constants of one graph and evaluates such nodes as they come in topological order (the operations in
``FOLDED_OPS``: Shape, Gather, Unsqueeze, Concat, Reshape, arithmetic, ...).

Batch markers. ``Shape`` of the data tensor is a constant too: its static dimensions, with 1 standing for
the batch size. Its entries are marked so that the batch size can be followed through the folding: an
entry is *the batch size* where it was copied from that axis (by Gather, Unsqueeze, Concat, Slice, ...) and
*derived from the batch size* where arithmetic used it. The importer accepts the batch size only as the
first entry of a Reshape target (``x.view(x.size(0), -1)``) and refuses every other use, which a network
of one sample cannot represent.

Floating-point constants are read as float64, and a Cast to any float type keeps float64.

The module also holds what the importer shares with it: reading nodes and tensors from the protobuf, and
ONNX's index semantics (axes, Slice, Unsqueeze, Reshape targets), which the importer applies to arrays of
positions on the data path.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelError, ShapeError, UnsupportedOperation

__all__ = [
    "FOLDED_OPS", "ConstantFolder", "node_name", "node_attributes", "tensor_to_array",
    "int_list", "optional_input", "axes_operand", "normalise_axes", "reshape_target", "slice_array",
    "unsqueeze_array",
]


# ---------------------------------------------------------------------------------------------------
# reading the protobuf


def node_name(node: onnx.NodeProto) -> str:
    """The node's name, or its first output's name when the file leaves the name empty."""
    return node.name or (node.output[0] if node.output else node.op_type)


def node_attributes(node: onnx.NodeProto) -> dict:
    """The node's attributes by name, as Python values; strings are decoded."""
    values = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
}


def tensor_to_array(tensor: onnx.TensorProto) -> np.ndarray:
    """A TensorProto as a numpy array; floating-point types become float64."""
    array = numpy_helper.to_array(tensor)
    if array.dtype.kind == "f" or tensor.data_type in _FLOAT_TYPES:
        return np.array(array, dtype=np.float64)
    return np.array(array)


# ---------------------------------------------------------------------------------------------------
# ONNX index semantics, shared with the data path


def int_list(value) -> list[int]:
    """The entries of an array (any shape) or sequence as Python ints."""
    return [int(v) for v in np.asarray(value).reshape(-1)]


def optional_input(values: list, position: int):
    """``values[position]``, or None where the node has fewer inputs."""
    return values[position] if len(values) > position else None


def axes_operand(attributes: dict, values: list, position: int = 1) -> list[int] | None:
    """Axes given as an attribute (older opsets) or as the input at ``position`` (opset 13 on); None if absent."""
    if "axes" in attributes:
        return list(attributes["axes"])
    axes = optional_input(values, position)
    return None if axes is None else int_list(axes)


def normalise_axes(axes, rank: int, what: str = "axis") -> list[int]:
    """Axes in ``[-rank, rank)`` as non-negative ints; ShapeError (naming ``what``) for one out of range."""
    out = []
    for axis in axes:
        if not -rank <= axis < rank:
            raise ShapeError(f"{what} {axis} is out of range for a tensor of rank {rank}")
        out.append(axis % rank)
    return out


def reshape_target(target, shape, allowzero=False) -> tuple[int, ...]:
    """Resolve ONNX Reshape's 0 (copy the input dimension) and -1 (infer) against ``shape``."""
    target = int_list(target)
    resolved = [shape[i] if t == 0 and not allowzero and i < len(shape) else t for i, t in enumerate(target)]
    if resolved.count(-1) > 1:
        raise ShapeError(f"reshape target {target} has more than one -1")
    total = math.prod(shape)
    if -1 in resolved:
        known = math.prod(t for t in resolved if t != -1)
        if known == 0 or total % known:
            raise ShapeError(f"cannot reshape a tensor of shape {tuple(shape)} to {target}")
        resolved[resolved.index(-1)] = total // known
    if math.prod(resolved) != total or min(resolved, default=0) < 0:
        raise ShapeError(f"cannot reshape a tensor of shape {tuple(shape)} to {target}")
    return tuple(resolved)


def slice_array(x: np.ndarray, attributes: dict, values: list) -> tuple[np.ndarray, list[int]]:
    """ONNX Slice of ``x`` (bounds as attributes before opset 10, as inputs 1-4 after); also the sliced axes."""
    if "starts" in attributes:
        starts, ends = attributes["starts"], attributes["ends"]
        axes, steps = attributes.get("axes"), None
    else:
        starts, ends = int_list(values[1]), int_list(values[2])
        axes = None if optional_input(values, 3) is None else int_list(values[3])
        steps = None if optional_input(values, 4) is None else int_list(values[4])
    axes = list(range(len(starts))) if axes is None else normalise_axes(axes, x.ndim)
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        if step == 0:
            raise ShapeError("Slice step must not be zero")
        index[axis] = slice(int(start), int(end), int(step))
    return x[tuple(index)], axes


def unsqueeze_array(x: np.ndarray, axes) -> np.ndarray:
    """ONNX Unsqueeze: ``x`` with a unit axis inserted at each of ``axes`` (axes of the output)."""
    axes = sorted(normalise_axes(axes, x.ndim + len(axes)))
    for axis in axes:
        x = np.expand_dims(x, axis)
    return x


# ---------------------------------------------------------------------------------------------------
# the folding rules: each maps (attributes, input values) to the output value


def _squeeze(x, axes):
    if axes is None:
        return x.reshape(tuple(s for s in x.shape if s != 1))
    axes = normalise_axes(axes, x.ndim)
    if any(x.shape[a] != 1 for a in axes):
        raise ShapeError(f"cannot squeeze axes {axes} of a tensor of shape {x.shape}")
    return np.squeeze(x, axis=tuple(axes))


def _integer_aware(function):
    """Elementwise arithmetic that keeps integer tensors integer (shape computations)."""
    def apply(a, b):
        result = function(a, b)
        if a.dtype.kind in "iu" and b.dtype.kind in "iu":
            return np.trunc(result).astype(np.result_type(a, b))
        return result
    return apply


def _cast(x, attributes):
    dtype = onnx.helper.tensor_dtype_to_np_dtype(attributes["to"])
    return x.astype(np.float64 if dtype.kind == "f" else dtype)


def _constant(attributes):
    for key, value in attributes.items():
        if key == "value":
            return tensor_to_array(value)
        if key in ("value_float", "value_floats"):
            return np.array(value, dtype=np.float64)
        if key in ("value_int", "value_ints"):
            return np.array(value, dtype=np.int64)
    raise ModelError(f"Constant with attributes {sorted(attributes)} holds no numeric tensor")


def _constant_of_shape(values, attributes):
    fill = tensor_to_array(attributes["value"]).reshape(-1) if "value" in attributes else np.zeros(1)
    return np.full(tuple(int_list(values[0])), fill[0], dtype=fill.dtype)


_FOLD = {
    "Constant": lambda a, v: _constant(a),
    "Identity": lambda a, v: v[0],
    "Cast": lambda a, v: _cast(v[0], a),
    "Shape": lambda a, v: np.array(v[0].shape, dtype=np.int64)[a.get("start", 0):a.get("end")],
    "Size": lambda a, v: np.array(v[0].size, dtype=np.int64),
    "Gather": lambda a, v: np.take(v[0], v[1].astype(np.int64), axis=a.get("axis", 0)),
    "Unsqueeze": lambda a, v: unsqueeze_array(v[0], axes_operand(a, v)),
    "Squeeze": lambda a, v: _squeeze(v[0], axes_operand(a, v)),
    "Concat": lambda a, v: np.concatenate([np.atleast_1d(x) for x in v if x is not None], axis=a["axis"]),
    "Slice": lambda a, v: slice_array(v[0], a, v)[0],
    "Reshape": lambda a, v: v[0].reshape(
        reshape_target(a["shape"] if "shape" in a else v[1], v[0].shape, a.get("allowzero", 0))),
    "Transpose": lambda a, v: np.transpose(v[0], a.get("perm")),
    "Flatten": lambda a, v: v[0].reshape(math.prod(v[0].shape[:a.get("axis", 1)]), -1),
    "Expand": lambda a, v: np.array(np.broadcast_to(v[0], np.broadcast_shapes(v[0].shape, tuple(int_list(v[1]))))),
    "Add": lambda a, v: np.add(v[0], v[1]),
    "Sub": lambda a, v: np.subtract(v[0], v[1]),
    "Mul": lambda a, v: np.multiply(v[0], v[1]),
    "Div": lambda a, v: _integer_aware(np.true_divide)(v[0], v[1]),
    "Neg": lambda a, v: np.negative(v[0]),
    "Sqrt": lambda a, v: np.sqrt(v[0]),
    "Reciprocal": lambda a, v: np.reciprocal(v[0]),
    "Relu": lambda a, v: np.maximum(v[0], 0),
    "ConstantOfShape": lambda a, v: _constant_of_shape(v, a),
    "Range": lambda a, v: np.arange(v[0], v[1], v[2]).astype(v[0].dtype),
}

FOLDED_OPS = tuple(sorted(_FOLD))
"""Operations evaluated when all their inputs are constant."""


# ---------------------------------------------------------------------------------------------------
# batch markers of the entries of a constant (int8 arrays of the constant's shape)

_BATCH, _DERIVED = 1, 2  # the entry is the batch size / was computed from it; 0: neither

# ops that only move entries around: a marker follows its entry (the operand positions it may come
# from; None: every operand). Cast is handled on its own (see ``_fold_markers``).
_STRUCTURAL = {
    "Identity": (0,), "Gather": (0,), "Unsqueeze": (0,), "Squeeze": (0,), "Slice": (0,),
    "Reshape": (0,), "Transpose": (0,), "Flatten": (0,), "Expand": (0,), "Concat": None,
}
_ARITHMETIC = {"Add", "Sub", "Mul", "Div", "Neg"}


class ConstantFolder:
    """The constant tensors of one graph, and the batch markers of those computed from ``Shape(data)``.

    Attributes
    ----------
    constants : dict mapping a tensor name to its value (numpy array, float64 for floating types); holds
        the initializers from the start and grows with every folded node. Read it; add to it only through
        ``fold`` and ``fold_shape_of_data``.
    """

    def __init__(self, graph: onnx.GraphProto):
        if len(graph.sparse_initializer):
            raise ModelError("sparse initializers are not supported")
        self.constants: dict[str, np.ndarray] = {tensor.name: tensor_to_array(tensor) for tensor in graph.initializer}
        self._markers: dict[str, np.ndarray] = {}  # only tensors with a marked entry

    def depends_on_batch(self, tensor: str) -> bool:
        """Whether some entry of the constant ``tensor`` is, or was computed from, the batch size."""
        return tensor in self._markers

    def batch_leads_reshape_target(self, node: onnx.NodeProto, tensor: str | None) -> bool:
        """Whether the first entry of the Reshape target ``tensor`` (None: given as an attribute) is the batch size.

        Raises UnsupportedOperation, naming ``node``, when any other entry is the batch size or an entry was
        computed from it.
        """
        markers = self._markers.get(tensor) if tensor else None
        if markers is None:
            return False
        markers = markers.reshape(-1)
        if np.any(markers[1:] != 0) or (markers.size and markers[0] == _DERIVED):
            raise UnsupportedOperation(
                "Reshape", node_name(node), "the target shape depends on the batch size beyond axis 0"
            )
        return bool(markers.size and markers[0] == _BATCH)

    def fold(self, node: onnx.NodeProto, values: list) -> None:
        """Evaluate ``node`` on its input ``values`` (arrays, None for absent inputs) and store its output.

        Raises UnsupportedOperation for an op outside ``FOLDED_OPS`` or one that computes with the batch
        size in a way a Reshape target could not use; ShapeError or ModelError, naming the node, when the
        inputs do not fit the op.
        """
        op, name = node.op_type, node_name(node)
        rule = _FOLD.get(op)
        if rule is None:
            raise UnsupportedOperation(op, name, "constant folding of this operation is not supported")
        attributes = node_attributes(node)
        try:
            with np.errstate(all="ignore"):
                result = rule(attributes, values)
        except ShapeError as error:
            raise ShapeError(f"node {name!r} ({op}): {error}") from error
        except (ValueError, IndexError, KeyError, TypeError) as error:
            raise ModelError(f"node {name!r} ({op}): cannot evaluate on constant inputs: {error}") from error
        self.constants[node.output[0]] = result
        marked = [i for i, t in enumerate(node.input) if t in self._markers]
        if marked and op not in ("Shape", "Size"):  # these read the shape only, never the marked values
            self._store_markers(node.output[0], self._fold_markers(node, attributes, values, marked, result))

    def fold_shape_of_data(self, node: onnx.NodeProto, full_shape: tuple[int, ...], batched: bool) -> None:
        """Store ``Shape`` of the data tensor, whose shape is ``full_shape`` (batch size as 1 when ``batched``)."""
        attributes = node_attributes(node)
        start, end = attributes.get("start", 0), attributes.get("end")
        markers = np.zeros(len(full_shape), dtype=np.int8)
        if batched:
            markers[0] = _BATCH
        self.constants[node.output[0]] = np.array(full_shape, dtype=np.int64)[start:end]
        self._store_markers(node.output[0], markers[start:end])

    def _store_markers(self, tensor: str, markers: np.ndarray) -> None:
        if np.any(markers):
            self._markers[tensor] = markers

    def _fold_markers(self, node, attributes, values, marked, result) -> np.ndarray:
        """The batch markers of a folded output whose inputs at positions ``marked`` carry markers."""
        op = node.op_type
        if op in _ARITHMETIC:
            return np.full(np.shape(result), _DERIVED, dtype=np.int8)
        if op == "Cast":  # folding the markers themselves could merge them (a cast to bool makes 2 into 1)
            return self._markers[node.input[0]]
        operands = _STRUCTURAL.get(op, ())
        if op not in _STRUCTURAL or (operands is not None and any(i not in operands for i in marked)):
            raise UnsupportedOperation(
                op, node_name(node), "computes with the batch size (from Shape of the data), which a per-sample "
                "network cannot represent",
            )
        marker_values = list(values)
        for i, tensor in enumerate(node.input):
            if operands is None or i in operands:
                marker_values[i] = self._markers.get(tensor, np.zeros(np.shape(values[i]), dtype=np.int8))
        return np.asarray(_FOLD[op](attributes, marker_values), dtype=np.int8)
