"""Constant folding for the ONNX importer: nodes whose inputs are all constant, evaluated as ONNX defines them.

A tensor of an ONNX graph is either on the data path (see ``onnx_import``) or a *constant*: an initializer,
a Constant node, or the output of a node whose inputs are all constant. ``ConstantFolder`` holds the
constants of one graph and evaluates such nodes as they come in topological order with onnx's reference
evaluator (``onnx.reference``), so every operator of the standard domain it implements folds (Shape,
Gather, Concat, Mod, Where, Range, ...), at the model's opset. Operators that draw random numbers are
refused: a network is a fixed function.

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
from onnx.reference import ReferenceEvaluator

from ..errors import ModelError, ShapeError, UnsupportedOperation

__all__ = [
    "ConstantFolder", "default_opset", "node_name", "node_attributes", "tensor_to_array",
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
# evaluating one node on constants

#: operators whose value is random: a graph that folds one is not a fixed function
_RANDOM_OPS = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
})


def default_opset(model: onnx.ModelProto) -> int:
    """The model's opset of the standard (``""`` / ``"ai.onnx"``) domain; the onnx library's own if undeclared."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return onnx.defs.onnx_opset_version()


def _constant(attributes):
    for key, value in attributes.items():
        if key == "value":
            return tensor_to_array(value)
        if key in ("value_float", "value_floats"):
            return np.array(value, dtype=np.float64)
        if key in ("value_int", "value_ints"):
            return np.array(value, dtype=np.int64)
    raise ModelError(f"Constant with attributes {sorted(attributes)} holds no numeric tensor")


def _single_node_model(node: onnx.NodeProto, opset: int) -> onnx.ModelProto:
    """``node`` as a one-node model at ``opset``: the reference evaluator picks the operator version from a
    model's opset imports (given a bare node it takes the newest version)."""
    inputs = [onnx.helper.make_value_info(t, onnx.TypeProto()) for t in node.input if t]
    outputs = [onnx.helper.make_value_info(t, onnx.TypeProto()) for t in node.output if t]
    graph = onnx.helper.make_graph([node], "fold", inputs, outputs)
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])


def _as_float64(value):
    """Floating-point results become float64, the precision the network is evaluated in."""
    value = np.asarray(value)
    return value.astype(np.float64) if value.dtype.kind == "f" else value


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

    def __init__(self, graph: onnx.GraphProto, opset: int):
        if len(graph.sparse_initializer):
            raise ModelError("sparse initializers are not supported")
        self.opset = opset
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
        """Evaluate ``node`` on its input ``values`` (arrays, None for absent inputs) and store its outputs.

        Raises UnsupportedOperation for an op that onnx's reference evaluator does not implement, one that
        draws random numbers, or one that computes with the batch size in a way a Reshape target could
        not use; ModelError, naming the node, when the inputs do not fit the op.
        """
        op, name = node.op_type, node_name(node)
        if op in _RANDOM_OPS:
            raise UnsupportedOperation(op, name, "it draws random numbers, so the network would not be a fixed function")
        attributes = node_attributes(node)
        results = self._evaluate(node, attributes, values)
        for output, result in zip(node.output, results):
            if output:
                self.constants[output] = result
        marked = [i for i, t in enumerate(node.input) if t in self._markers]
        if marked and op not in ("Shape", "Size"):  # these read the shape only, never the marked values
            self._store_markers(node.output[0], self._fold_markers(node, values, marked, results[0]))

    def _evaluate(self, node: onnx.NodeProto, attributes: dict, values: list) -> list[np.ndarray]:
        """The outputs of ``node`` on ``values``: Constant and Cast read in float64, the rest by onnx.reference."""
        op, name = node.op_type, node_name(node)
        if op == "Constant":
            return [_constant(attributes)]
        if op == "Cast" and onnx.helper.tensor_dtype_to_np_dtype(attributes["to"]).kind == "f":
            return [np.asarray(values[0]).astype(np.float64)]
        try:
            evaluator = ReferenceEvaluator(_single_node_model(node, self.opset))
        except Exception as error:  # the reference evaluator reports an unknown operator or version in its own way
            raise UnsupportedOperation(
                op, name, f"onnx's reference evaluator cannot compute it on constants ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''})"
            ) from error
        feeds = {tensor: np.asarray(value) for tensor, value in zip(node.input, values) if tensor}
        try:
            with np.errstate(all="ignore"):
                results = evaluator.run(None, feeds)
        except Exception as error:  # numpy inside the reference operators fails on unfit inputs in any way
            raise ModelError(f"node {name!r} ({op}): cannot evaluate on constant inputs: {type(error).__name__}: "
                             f"{error}") from error
        return [_as_float64(result) for result in results]

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

    def _fold_markers(self, node, values, marked, result) -> np.ndarray:
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
            if tensor and (operands is None or i in operands):
                marker_values[i] = self._markers.get(tensor, np.zeros(np.shape(values[i]), dtype=np.int8))
        return np.asarray(self._evaluate(node, node_attributes(node), marker_values)[0], dtype=np.int8)
